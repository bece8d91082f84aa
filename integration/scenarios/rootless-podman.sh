#!/usr/bin/env bash
# Rootless Podman: a user with subuid/subgid ranges (dfu-rootless, made
# here if missing) runs `podman system service` on a socket under its own
# XDG_RUNTIME_DIR, loads the test image from a `docker save` of root's
# engine, and starts a container; dockerfuse, run as that user with
# DOCKER_HOST pointing at the socket, then passes the core scenario
# (core.sh, as the user: read, write, big files both ways, unmount,
# `docker diff` through the socket), and a mount of its own takes the
# local transport (the satellite runs in the user's own user namespace, so
# pidfd_getfd is allowed), says so in `list` and -debug, and tells how the
# container's ids map to the host; --idmap shows the container's root
# files as the user's.
# The mounts are made in a private mount namespace with a 0666 /dev/fuse
# node (see users-lib.sh: fusermount3 opens /dev/fuse with the user's
# rights; the machine's own node is left as it is). The service, the
# user's containers and their conmon monitors are removed on every exit
# path.
# Environment: DOCKERFUSE, WORKDIR, CARCH (amd64|arm64). Needs root (to make
# the user), podman, uidmap (newuidmap), slirp4netns is not needed
# (--network none).
# shellcheck disable=SC2317 # helpers run via check/on_exit
set -euo pipefail
# shellcheck source=SCRIPTDIR/../users-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../users-lib.sh"
in_fuse_namespace "$@"
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE WORKDIR CARCH
require_tools podman newuidmap newgidmap useradd usermod runuser unshare mknod getent docker
got=''

U=dfu-rootless
ensure_user "$U" "" subids
check "$U has subuid and subgid ranges" grep -q "^$U:" /etc/subuid /etc/subgid
user_binary
USER_RUNTIME=$WORKDIR/xdg-$U
user_dir "$U" "$USER_RUNTIME"
SOCK=$USER_RUNTIME/podman/podman.sock
export DOCKER_HOST=unix://$SOCK
# Storage of this run only: podman keeps the paths it first ran with in its
# database under the user's home, and a user kept from an earlier run (or
# declared, as in the NixOS VM) would otherwise be sent to that run's
# runroot, long removed.
# Its database under the user's home names an earlier run's directories
# too: a kept user starts from none.
U_HOME=$(getent passwd "$U" | cut -d: -f6)
rm -rf "$U_HOME/.local/share/containers" "$U_HOME/.config/containers"
export CONTAINERS_STORAGE_CONF=$WORKDIR/storage-$U.conf
printf '[storage]\ngraphroot = "%s"\nrunroot = "%s"\n' "$USER_RUNTIME/storage" "$USER_RUNTIME/runroot" >"$CONTAINERS_STORAGE_CONF"
chmod 0644 "$CONTAINERS_STORAGE_CONF"
USER_PASS="DOCKER_HOST CONTAINERS_STORAGE_CONF"
NAME=dfu-rootless-pod-$CARCH-$$
SVC=

podman_down() {
	local pid
	as_user "$U" timeout 60 podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
	if [ -n "$SVC" ]; then
		kill "$SVC" 2>/dev/null || true
		wait_until 10 pid_gone "$SVC" || kill -9 "$SVC" 2>/dev/null || true
	fi
	# rootless podman's pause process (it holds the user namespace)
	pid=$(cat "$USER_RUNTIME/libpod/tmp/pause.pid" 2>/dev/null || true)
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	kill_runtime_procs "$U"
	# the service's own children (conmon of an exec session) naming our
	# container or socket
	grep -lsE -- "$NAME|$SOCK" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 | while read -r pid; do
		[ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] || kill -9 "$pid" 2>/dev/null || true
	done
}
on_exit podman_down

fuse_dev_mode 0666
env -u DOCKER_HOST docker save "dockerfuse-test/alpine:$CARCH" -o "$WORKDIR/alpine.tar"
chmod 0644 "$WORKDIR/alpine.tar"
check "podman load as $U" as_user "$U" timeout 300 podman load -q -i "$WORKDIR/alpine.tar"
mkdir -p "$USER_RUNTIME/podman"
chown "$U:" "$USER_RUNTIME/podman"
as_user "$U" podman system service --time=0 "unix://$SOCK" >"$WORKDIR/podman-service.log" 2>&1 </dev/null &
SVC=$!
svc_up() { as_user "$U" curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }
if wait_until 30 svc_up; then
	pass "rootless podman system service answers on $SOCK"
else
	fail "rootless podman system service answers on $SOCK"
	show_file "podman service" "$WORKDIR/podman-service.log"
	stop_here
fi
cap got as_user "$U" timeout 60 podman info --format '{{.Host.Security.Rootless}}'
assert_eq "podman runs rootless for $U" true "$got"
if ! out=$(as_user "$U" timeout 120 podman run -d --name "$NAME" --network none \
	"localhost/dockerfuse-test/alpine:$CARCH" sleep infinity 2>&1); then
	fail "rootless podman container $NAME started"
	printf '%s\n' "$out" | detail
	stop_here
fi
pass "rootless podman container $NAME started"

rootless_core_and_local "rootless podman"
idmap_checks "$U" "$NAME" "$UW/mnt-idmap"
finish
