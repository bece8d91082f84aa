#!/usr/bin/env bash
# Real containers, Podman (setup-engine.sh installs it): `podman system service` on a
# unix socket, with its own --root/--runroot/--tmpdir in the scratch
# directory, answers the Docker API; dockerfuse mounts a podman container
# through it with -H and with DOCKER_HOST:
#   a plain container          the satellite is uploaded to /tmp
#   --read-only                podman adds exec-able tmpfs on /tmp, /run,
#                              /var/tmp; the satellite is written to /tmp
#                              through /bin/sh
# Each mount reads and writes, unmounts, and `docker diff` (through the
# podman socket) is clean. The service, its containers, their conmon
# processes and the storage are removed on every exit path.
# Needs podman (apt-get install podman). Containers run with small ulimits:
# podman's default RLIMIT_NOFILE is above what an unprivileged-looking
# sandbox allows.
# Environment: DOCKERFUSE, WORKDIR, CARCH (amd64|arm64).
# shellcheck disable=SC2317 # helpers run via check/on_exit
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=SCRIPTDIR/../real-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../real-lib.sh"
require_env DOCKERFUSE WORKDIR CARCH
got='' before=''
require_tools podman curl

P=$WORKDIR/podman
mkdir -p "$P/tmp"
P=$(cd "$P" && pwd)
PO=(podman --root "$P/root" --runroot "$P/run" --tmpdir "$P/tmp" --cgroup-manager=cgroupfs --events-backend=file)
SOCK=unix://$P/podman.sock
SVC=

podman_down() {
	local pid m
	timeout 60 "${PO[@]}" rm -f -a -t 0 >/dev/null 2>&1 || true
	[ -z "$SVC" ] || kill "$SVC" 2>/dev/null || true
	[ -z "$SVC" ] || wait_until 10 pid_gone "$SVC" || kill -9 "$SVC" 2>/dev/null || true
	# conmon keeps exec sessions' monitors for minutes (--exit-delay): ours
	# are the ones naming our storage.
	grep -ls -- "$P/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3 | while read -r pid; do
		if [ "$pid" != "$$" ] && [ "$pid" != "$BASHPID" ]; then
			kill -9 "$pid" 2>/dev/null || true
		fi
	done
	awk -v b="$P/" 'index($2, b) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf --one-file-system "$P" 2>/dev/null || true
}
on_exit podman_down

check "podman load $CARCH alpine" run_sh "docker save dockerfuse-test/alpine:$CARCH | $(printf '%q ' "${PO[@]}") load -q"
"${PO[@]}" system service --time=0 "$SOCK" >"$WORKDIR/podman-service.log" 2>&1 </dev/null &
SVC=$!
svc_up() { curl -sf --unix-socket "$P/podman.sock" http://d/_ping >/dev/null 2>&1; }
if wait_until 30 svc_up; then
	pass "podman system service answers on $SOCK"
else
	fail "podman system service answers on $SOCK"
	show_file "podman service" "$WORKDIR/podman-service.log"
	stop_here
fi
export DOCKER_HOST=$SOCK # the scenario's docker commands go to podman
MNT=$WORKDIR/mnt-podman
for ro in "" --read-only; do
	name=dfreal-podman-$CARCH${ro:+-ro}-$$
	if ! out=$(timeout 120 "${PO[@]}" run -d --name "$name" --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 $ro \
		"dockerfuse-test/alpine:$CARCH" sleep infinity 2>&1); then
		fail "podman container $name ${ro:-(plain)} started"
		printf '%s\n' "$out" | detail
		continue
	fi
	pass "podman container $name ${ro:-(plain)} started"
	CONTAINER=$name
	cap before timeout 30 docker diff "$CONTAINER"
	if real_mount "$MNT" -H "$SOCK"; then
		if [ -n "$ro" ]; then real_started_by "write to /tmp through /bin/sh"; else real_started_by "upload to /tmp"; fi
		cap got cat "$MNT/etc/alpine-release"
		assert_match "reads /etc/alpine-release" '^3\.' "$got"
		real_rw "$MNT" /tmp
		real_unmount "$MNT"
	fi
	real_diff_clean "$before"
done
finish
