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
#   Part 3: operations in flight. Started again and mounted (files created
#           behind: --no-passthrough), a program (integration/inflight.py)
#           creates and writes files answered on the host, fsyncing some,
#           while the container is `docker kill`ed: dockerfuse exits 3
#           without a hang, the program's next operation fails (ENOTCONN or
#           EIO) rather than succeeding, and after `docker start` every file
#           fsynced or closed is whole; the others are missing, short or
#           whole, never holding a wrong byte (docs/SEMANTICS.md, "creates
#           sent behind").
#   Part 4: part 3 with --close-behind: every file fsynced is whole, the
#           others (closed or not) missing, short or whole, never holding
#           a wrong byte (docs/SEMANTICS.md, "closes sent behind").
# Environment: DOCKERFUSE, CONTAINER (running; it is stopped and restarted
# here, so give this scenario its own), WORKDIR; SATELLITE_ARCH optional.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR
require_tools python3
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

# --- part 3: creates and writes in flight, docker kill ---------------------------------
# inflight LABEL KEPT FLAGS...: a mount with FLAGS, the program, docker
# kill; KEPT: "closed" (every file fsynced or closed must be whole) or
# "fsynced" (only those fsynced: --close-behind).
inflight() {
	local label=$1 kept=$2 D FLOG status wrc last rc out t0 t1
	shift 2
	log "$label: creates and writes sent behind, fsynced in part, then docker kill"
	check "docker start ($label)" timeout 60 docker start "$CONTAINER"
	D=/tmp/dfit-inflight-$$-$kept
	FLOG=$WORKDIR/inflight-$kept.log
	: >"$FLOG"
	on_exit "$(printf 'docker exec %q rm -rf %q >/dev/null 2>&1' "$CONTAINER" "$D")"
	mount_fg "$MNT" --no-passthrough "$@"
	if ! wait_mounted "$MNT" "$DF_PID"; then
		fail "dockerfuse mounts $MNT ($label)"
		show_file "dockerfuse output" "$DF_OUT"
		stop_here
	fi
	python3 "$HERE/inflight.py" write "$MNT$D" "$FLOG" >"$WORKDIR/inflight.out" 2>&1 &
	WRITER=$!
	on_exit "kill $WRITER 2>/dev/null"
	wait_until 10 grep -q '^fsynced' "$FLOG" || true
	sleep 0.5
	check "docker kill with creates and writes in flight ($label)" timeout 60 docker kill "$CONTAINER"
	t0=$(date +%s%3N)
	if wait_until 10 pid_gone "$DF_PID"; then
		pass "dockerfuse exits within 10 s of the kill ($label)"
	else
		fail "dockerfuse exits within 10 s of the kill ($label)"
		kill -TERM "$DF_PID" 2>/dev/null || true
		wait_until 5 pid_gone "$DF_PID" || kill -KILL "$DF_PID" 2>/dev/null || true
	fi
	status=0
	wait "$DF_PID" || status=$?
	assert_eq "exit status is 3 (container lost with operations in flight, $label)" 3 "$status"
	if wait_until 10 pid_gone "$WRITER"; then
		pass "the program in the mount ends within 10 s of the mount ($label)"
	else
		fail "the program in the mount ends within 10 s of the mount (it hangs, $label)"
		kill -KILL "$WRITER" 2>/dev/null || true
	fi
	wrc=0
	wait "$WRITER" || wrc=$?
	t1=$(date +%s%3N)
	log "$label: time kill->program's error: $((t1 - t0)) ms; $(grep -c '^fsynced' "$FLOG") files fsynced, $(grep -c '^closed' "$FLOG") closed"
	last=$(tail -n 1 "$FLOG")
	assert_eq "the program ran until an error (exit $wrc, $label)" 0 "$wrc"
	assert_match "its next operation failed with ENOTCONN or EIO, not success ($label)" '^error [a-z]+ f[0-9]+ (ENOTCONN|EIO)$' "$last"
	show_file "program output" "$WORKDIR/inflight.out"
	check "docker start after the kill ($label)" timeout 60 docker start "$CONTAINER"
	rm -rf "$WORKDIR/inflight-copy"
	if docker cp "$CONTAINER:$D" "$WORKDIR/inflight-copy" >/dev/null 2>&1; then
		pass "docker cp of $D out of the container"
		rc=0
		out=$(python3 "$HERE/inflight.py" check "$WORKDIR/inflight-copy" "$FLOG" "$kept" 2>&1) || rc=$?
		log "$label: $(printf '%s\n' "$out" | head -n 1)"
		check "every $kept file is whole; no file holds a wrong byte ($label)" test "$rc" -eq 0
		[ "$rc" -eq 0 ] || printf '%s\n' "$out" | head -n 20 | detail
	else
		fail "docker cp of $D out of the container"
	fi
	docker exec "$CONTAINER" rm -rf "$D" >/dev/null 2>&1 || true
}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
inflight "part 3" closed
# --- part 4: the same with --close-behind: what is lost is what was not fsynced ----------
inflight "part 4 (--close-behind)" fsynced --close-behind

finish
