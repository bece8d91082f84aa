#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check/cap
# Container-stop scenario: the container goes away under a live mount.
# Contract: operations get EIO (no hang), the mount is removed, dockerfuse
# exits 3 with a message naming the container.
#   Part 1: dockerfuse in the foreground (as a background job, so its exit
#           status can be collected), a reader looping over the mount,
#           `docker stop -t 1`.
#   Part 2: the container is started again, mounted with -daemonize and a pid
#           file, then `docker kill`ed; the process must go and the log must
#           name the container.
# Environment: DOCKERFUSE, CONTAINER (running; it is stopped and restarted
# here, so give this scenario its own), WORKDIR; SATELLITE_ARCH optional.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR
want='' got='' # set by cap

MNT=$WORKDIR/mnt-stop
export MNT
mkdir -p "$MNT"
CID=$(docker inspect -f '{{.Id}}' "$CONTAINER")
# The message must name the container: its name or (short) id.
NAMES_CONTAINER="$CONTAINER|${CID:0:12}"

# ls_bounded: `ls` on the old mount point returns (in 5 s) and shows nothing.
ls_bounded() {
	local out rc=0
	out=$(timeout -k 2 5 ls -A "$MNT" 2>&1) || rc=$?
	[ "$rc" -eq 0 ] && [ -z "$out" ] && return 0
	printf 'ls exit %s: %s\n' "$rc" "$out"
	return 1
}
ticks() { wc -l <"$WORKDIR/reader.ticks"; }
reader_progressed() { [ "$(ticks)" -gt "$before" ]; }

# --- part 1: foreground process, docker stop ------------------------------------------
log "part 1: foreground dockerfuse on $CONTAINER, then docker stop"
mount_fg "$MNT"
if ! wait_mounted "$MNT" "$DF_PID"; then
	fail "dockerfuse mounts $MNT (foreground)"
	show_file "dockerfuse output" "$DF_OUT"
	stop_here
fi
pass "dockerfuse mounts $MNT (foreground)"
cap want dx cat /etc/passwd
cap got cat "$MNT/etc/passwd"
assert_eq "reading works before the stop" "$want" "$got"

: >"$WORKDIR/reader.ticks"
(
	trap - EXIT INT TERM HUP ERR
	set +e
	while :; do
		cat "$MNT/etc/passwd" >/dev/null 2>&1
		ls -R "$MNT/etc" >/dev/null 2>&1
		echo . >>"$WORKDIR/reader.ticks"
		sleep 0.1
	done
) &
READER=$!
on_exit "kill $READER 2>/dev/null"
sleep 1

check "docker stop -t 1" timeout 60 docker stop -t 1 "$CONTAINER"
if wait_until 10 pid_gone "$DF_PID"; then
	pass "dockerfuse exits within 10 s of the stop"
else
	fail "dockerfuse exits within 10 s of the stop"
	kill -TERM "$DF_PID" 2>/dev/null || true
	wait_until 5 pid_gone "$DF_PID" || kill -KILL "$DF_PID" 2>/dev/null || true
fi
status=0
wait "$DF_PID" || status=$?
if [ "$status" -ne 0 ]; then pass "exit status is non-zero ($status)"; else fail "exit status is non-zero (got 0)"; fi
assert_eq "exit status is 3 (container lost while mounted)" 3 "$status"
out=$(cat "$DF_OUT" 2>/dev/null || true)
assert_match "stderr names the container" "$NAMES_CONTAINER" "$out"
check "$MNT is no longer mounted" wait_until 2 not_mounted "$MNT"
check "ls on the old mount point returns at once and shows nothing" ls_bounded
before=$(ticks)
if wait_until 5 reader_progressed; then
	pass "the reader loop is not stuck"
else
	fail "the reader loop is not stuck (no progress in 5 s)"
fi
kill "$READER" 2>/dev/null || true
check "the reader exits when killed" wait_until 5 pid_gone "$READER"

# --- part 2: daemonized, docker kill ----------------------------------------------------
log "part 2: docker start, dockerfuse -daemonize, then docker kill"
check "docker start" timeout 60 docker start "$CONTAINER"
mount_daemon "$MNT"
if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
	fail "dockerfuse -daemonize mounts $MNT again (exit $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	show_file "dockerfuse log" "$DF_LOG"
	stop_here
fi
pass "dockerfuse -daemonize mounts $MNT again"
check "the pid file names a live process ($DF_PID)" pid_alive "$DF_PID"
cap got cat "$MNT/etc/hostname"
assert_eq "reading works before the kill" "${CID:0:12}" "$got"
check "docker kill" timeout 60 docker kill "$CONTAINER"
check "the daemon (pid $DF_PID) exits within 10 s of the kill" wait_until 10 pid_gone "$DF_PID"
check "$MNT is no longer mounted" wait_until 2 not_mounted "$MNT"
check "ls on the old mount point returns at once and shows nothing" ls_bounded
out=$(cat "$DF_LOG" "$DF_OUT" 2>/dev/null || true)
assert_match "the log names the container" "$NAMES_CONTAINER" "$out"

finish
