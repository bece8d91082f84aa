#!/usr/bin/env bash
# Prepare this machine for dockerfuse's integration tests, idempotently:
#   1. install the Debian packages the tests need (unless DOCKERFUSE_SKIP_INSTALL=1,
#      e.g. in the NixOS VM, which has no apt);
#   2. make a Docker engine answer: start dockerd in the background when
#      `docker info` fails (log: $DOCKERFUSE_DOCKERD_LOG, default
#      /var/log/dockerfuse-dockerd.log) and wait up to 60 s for it;
#   3. make /dev/fuse and fusermount3 usable;
#   4. mount binfmt_misc and register qemu-user with the F flag for every
#      foreign architecture the tests run (aarch64 on an x86_64 host, and
#      arm, ppc64le, riscv64, s390x; x86_64 and i386 on an aarch64 one), so
#      such containers run under qemu-user (the F flag makes the kernel open
#      the interpreter now, so it works inside a container's mount
#      namespace);
#   5. build/load the test images and check each one runs with the right
#      `uname -m` (integration/images.sh, usable on its own).
# Every step either works or stops the script with a non-zero status and a
# message saying what is wrong; nothing is skipped silently.
# Runs as root (or with sudo available). A second run takes a few seconds.
set -euo pipefail

say() { printf '[setup-engine] %s\n' "$*" >&2; }
die() {
	printf '[setup-engine] ERROR: %s\n' "$*" >&2
	exit 1
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# (procps: dockerd runs the host's `ps` for `docker top`; curl: alpine
# tarballs when no local copy; the rest of what the scripts use is essential)
PACKAGES=(docker.io fuse3 qemu-user-static busybox-static binfmt-support
	procps ca-certificates curl
	python3 git rsync sqlite3 # differential and programs scenarios
	openssl                   # real-tls certificates
	jq                        # cli-plugin, list-unmount: JSON answers
	systemd                   # mount-helper: systemd-fstab-generator
	zsh fish man-db           # completions scenario
	openssh-server            # ssh-engine scenario (its own sshd)
	uidmap rootlesskit        # rootless-podman, rootless-docker: subuid maps, dockerd-rootless.sh
	shellcheck)               # test.sh checks every script
# Installed with their recommended packages, as they were tested.
PACKAGES_WITH_RECOMMENDS=(podman) # real-podman's engine
DOCKERD_LOG=${DOCKERFUSE_DOCKERD_LOG:-/var/log/dockerfuse-dockerd.log}
BINFMT_DIR=/proc/sys/fs/binfmt_misc

if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || die "must run as root (or with sudo available)"
	exec sudo -n -E bash "${BASH_SOURCE[0]}" "$@"
fi

install_packages() {
	if [ "${DOCKERFUSE_SKIP_INSTALL:-0}" = 1 ]; then
		say "DOCKERFUSE_SKIP_INSTALL=1: not installing packages"
		return
	fi
	command -v apt-get >/dev/null 2>&1 ||
		die "apt-get not found: install ${PACKAGES[*]} yourself and set DOCKERFUSE_SKIP_INSTALL=1"
	local missing=() missing_rec=() p
	for p in "${PACKAGES[@]}"; do
		[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] ||
			missing+=("$p")
	done
	for p in "${PACKAGES_WITH_RECOMMENDS[@]}"; do
		[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] ||
			missing_rec+=("$p")
	done
	if [ "${#missing[@]}" -eq 0 ] && [ "${#missing_rec[@]}" -eq 0 ]; then
		say "packages present"
		return
	fi
	say "installing: ${missing[*]} ${missing_rec[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt_install --no-install-recommends "${missing[@]}"
	apt_install "${missing_rec[@]}"
}

# apt_install [--no-install-recommends] PACKAGE...: install, tolerating a
# mirror that is mid-sync: a failed `apt-get update` is a warning (the
# lists already on the machine may do), and the install is tried again
# after a fresh update, three times in all, before it counts as failed.
apt_install() {
	local opts=() try
	if [ "${1:-}" = --no-install-recommends ]; then
		opts+=("$1")
		shift
	fi
	[ "$#" -gt 0 ] || return 0
	for try in 1 2 3; do
		apt-get -o DPkg::Lock::Timeout=300 update -qq ||
			say "WARNING: apt-get update failed (try $try of 3; a mirror may be syncing): going on with the lists there are"
		if apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${opts[@]}" "$@"; then
			return 0
		fi
		say "WARNING: apt-get install $* failed (try $try of 3)"
		sleep $((try * 10))
	done
	die "apt-get install $* failed three times"
}

need_commands() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "required command '$c' not found"
	done
}

engine_up() { timeout 20 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

start_engine() {
	if engine_up; then
		say "docker engine up ($(docker info --format '{{.ServerVersion}} {{.Architecture}}'))"
		return
	fi
	case "${DOCKER_HOST:-unix:///var/run/docker.sock}" in
	unix:///var/run/docker.sock | unix:///run/docker.sock) ;;
	*) die "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local dockerd for a remote engine" ;;
	esac
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		say "starting docker.service"
		systemctl start docker.service || say "systemctl start docker failed; starting dockerd by hand"
	fi
	local pid=
	if ! engine_up; then
		need_commands dockerd
		if [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
			pid=$(cat /var/run/docker.pid)
			say "dockerd already running (pid $pid); waiting for it"
		else
			say "starting dockerd (log: $DOCKERD_LOG)"
			mkdir -p "$(dirname "$DOCKERD_LOG")"
			# setsid: dockerd outlives this script and its process group
			# (Ctrl-C on the test run must not take the engine down).
			setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
			pid=$!
		fi
	fi
	local i
	for ((i = 0; i < 60; i++)); do
		engine_up && break
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			tail -n 30 "$DOCKERD_LOG" >&2 || true
			die "dockerd exited during startup (log above, full log: $DOCKERD_LOG)"
		fi
		sleep 1
	done
	if ! engine_up; then
		tail -n 30 "$DOCKERD_LOG" >&2 2>/dev/null || true
		die "docker engine not answering after 60 s (log: $DOCKERD_LOG)"
	fi
	say "docker engine up ($(docker info --format '{{.ServerVersion}} {{.Architecture}}'))"
}

ensure_fuse() {
	need_commands fusermount3
	if [ ! -c /dev/fuse ]; then
		modprobe fuse 2>/dev/null || true
		[ -c /dev/fuse ] || die "/dev/fuse missing and 'modprobe fuse' did not create it"
	fi
	say "fuse ok"
}

# binfmt_entry_for MACHINE: print the binfmt_misc entry file matching ELF
# executables of MACHINE (qemu's names), whatever its name (Debian says
# qemu-aarch64, NixOS aarch64-linux).
binfmt_entry_for() {
	local head f
	# ELF class and byte order, e_type EXEC and e_machine, in file order.
	case "$1" in
	aarch64) head=02010100:0200b700 ;;
	x86_64) head=02010100:02003e00 ;;
	i386) head=01010100:02000300 ;;
	arm) head=01010100:02002800 ;;
	ppc64le) head=02010100:02001500 ;;
	riscv64) head=02010100:0200f300 ;;
	s390x) head=02020100:00020016 ;;
	*) die "no binfmt magic known for $1" ;;
	esac
	for f in "$BINFMT_DIR"/*; do
		case "${f##*/}" in register | status) continue ;; esac
		if grep -Eq "^magic 7f454c46${head%%:*}[0-9a-f]{16}${head#*:}\$" "$f" 2>/dev/null; then
			printf '%s\n' "$f"
			return
		fi
	done
}

ensure_binfmt() {
	local host m machines
	host=$(uname -m)
	case "$host" in
	# i386 binaries run natively on an x86_64 kernel.
	x86_64) machines=(aarch64 arm ppc64le riscv64 s390x) ;;
	aarch64) machines=(x86_64 i386 ppc64le riscv64 s390x) ;;
	*) die "unsupported host architecture $host" ;;
	esac
	if [ ! -e "$BINFMT_DIR/register" ]; then
		modprobe binfmt_misc 2>/dev/null || true
		mount -t binfmt_misc binfmt_misc "$BINFMT_DIR" ||
			die "cannot mount binfmt_misc on $BINFMT_DIR"
	fi
	[ "$(cat "$BINFMT_DIR/status")" = enabled ] || echo 1 >"$BINFMT_DIR/status"
	for m in "${machines[@]}"; do
		ensure_binfmt_for "$m"
	done
}

# ensure_binfmt_for MACHINE: qemu-MACHINE is registered, enabled, with F.
ensure_binfmt_for() {
	local foreign=$1 entry conf line name type offset magic mask interp flags
	entry=$(binfmt_entry_for "$foreign")
	if [ -n "$entry" ]; then
		if ! grep -qx enabled "$entry"; then
			say "enabling ${entry##*/}"
			echo 1 >"$entry"
		fi
		if grep -Eq '^flags: .*F' "$entry"; then
			say "binfmt ok: ${entry##*/} ($(grep '^interpreter' "$entry"), $(grep '^flags' "$entry"))"
			return
		fi
		# Without F the interpreter path is looked up inside the container,
		# where it does not exist: re-register from the package's file.
		say "${entry##*/} lacks the F flag; re-registering it"
	fi
	conf=/usr/lib/binfmt.d/qemu-$foreign.conf
	[ -f "$conf" ] ||
		die "qemu-$foreign is not registered in binfmt_misc and $conf is missing (install qemu-user-static, or register it with the F flag)"
	line=$(grep -Ev '^[[:space:]]*(#|$)' "$conf" | head -n 1)
	IFS=: read -r _ name type offset magic mask interp flags <<<"$line"
	[ -x "$interp" ] || interp=$(command -v "qemu-$foreign-static" || true)
	[ -x "${interp:-/nonexistent}" ] || die "no qemu-$foreign interpreter found (from $conf or qemu-$foreign-static)"
	case "$flags" in *F*) ;; *) flags="${flags}F" ;; esac
	[ -z "$entry" ] || echo -1 >"$entry"
	[ ! -e "$BINFMT_DIR/$name" ] || echo -1 >"$BINFMT_DIR/$name"
	printf ':%s:%s:%s:%s:%s:%s:%s' "$name" "$type" "$offset" "$magic" "$mask" "$interp" "$flags" |
		cat >"$BINFMT_DIR/register" ||
		die "registering $name in binfmt_misc failed"
	entry=$(binfmt_entry_for "$foreign")
	grep -Eqs '^flags: .*F' "${entry:-/nonexistent}" ||
		die "qemu-$foreign registration did not take effect"
	say "binfmt ok: registered $name ($interp, flags $flags)"
}

# README's run command starts `alpine`: where no registry answers, the
# local test image of this machine's arch stands in (never over one pulled).
name_alpine() {
	docker image inspect alpine:latest >/dev/null 2>&1 && return 0
	if timeout 60 docker pull -q alpine:latest >/dev/null 2>&1; then
		return 0
	fi
	local arch
	case $(uname -m) in
	x86_64) arch=amd64 ;;
	aarch64) arch=arm64 ;;
	*) return 0 ;;
	esac
	docker tag "dockerfuse-test/alpine:$arch" alpine:latest &&
		say "no registry: alpine:latest is the local dockerfuse-test/alpine:$arch"
}

main() {
	install_packages
	need_commands docker timeout sha256sum tar gzip
	start_engine
	ensure_fuse
	ensure_binfmt
	bash "$HERE/images.sh"
	name_alpine
	say "engine ready"
}

main "$@"
