#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check/cap
# The engine restarts under a live mount. Without live-restore the
# container dies with the engine, so this is container loss: pending and
# new operations get EIO, the mount is removed, dockerfuse exits 3 with a
# message naming the container; the engine must answer again afterwards
# (the scenario waits for it, so runs after this one are not hurt).
# Part 2: the container restarts with the engine (--restart always) and
# the mount was made with --reconnect: the process and the mount stay, and
# reading works again once the engine has started the container again.
# The restart is lib.sh's engine_restart (systemctl where systemd runs the
# engine, dockerd run again with its own command line elsewhere). Run it
# last.
# Environment: DOCKERFUSE, CONTAINER (running), WORKDIR.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR

MNT=$WORKDIR/mnt-restart
export MNT
mkdir -p "$MNT"
ms() { date +%s%3N; }
engine_answers() { timeout 5 docker info >/dev/null 2>&1; }
running() { [ "$(docker inspect -f '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" = true ]; }
reads_again() { timeout 5 cat "$MNT/etc/hostname" >/dev/null 2>&1; }

log "part 1: no --reconnect, the engine restarts"

mount_fg "$MNT"
wait_mounted "$MNT" "$DF_PID" || abort "mount before the engine restart"
check "reading works before the restart" test -s "$MNT/etc/passwd"
t0=$(ms)
engine_restart || abort "could not restart the engine"
rc=0
if wait_until 30 pid_gone "$DF_PID"; then
	wait "$DF_PID" || rc=$?
	log "time engine restart->exit: $(($(ms) - t0)) ms"
	assert_eq "exit status 3 when the engine restarts" 3 "$rc"
else
	fail "dockerfuse exits when the engine restarts"
fi
assert_match "the message names the container" "$CONTAINER" "$(cat "$DF_OUT")"
check "the mount is gone" not_mounted "$MNT"
check "an ls on the old mount point returns" timeout 5 ls -A "$MNT"
check "the engine answers again (60 s)" wait_until 60 engine_answers

log "part 2: --restart always, --reconnect, the engine restarts"
check "docker start" timeout 60 docker start "$CONTAINER"
check "docker update --restart always" timeout 60 docker update --restart always "$CONTAINER"
check "the container runs" wait_until 10 running
mount_daemon "$MNT" --reconnect --reconnect-timeout 120
if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
	fail "dockerfuse --reconnect mounts $MNT (exit $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	show_file "dockerfuse log" "$DF_LOG"
	stop_here
fi
pass "dockerfuse --reconnect mounts $MNT"
want=$(cat "$MNT/etc/passwd")
t0=$(ms)
engine_restart || abort "could not restart the engine"
check "the engine answers again (60 s)" wait_until 60 engine_answers
if wait_until 60 reads_again; then
	pass "reads work again after the engine restart"
	log "time engine restart->reads again: $(($(ms) - t0)) ms"
else
	fail "reads work again after the engine restart"
	show_file "dockerfuse log" "$DF_LOG"
fi
check "the process (pid $DF_PID) is still alive" pid_alive "$DF_PID"
check "$MNT is still mounted" is_fuse_mounted "$MNT"
assert_eq "cat of a file by path gives its content" "$want" "$(cat "$MNT/etc/passwd" 2>&1)"
check "a write by path works" run_sh 'echo written >"$MNT/tmp/engine-restart.txt"'
assert_eq "the container sees the write" written "$(dx cat /tmp/engine-restart.txt 2>&1)"
check "unmount after the reconnect" dfit_unmount "$MNT" "$DF_PIDFILE"
check "the daemon is gone after the unmount" wait_until 10 pid_gone "$DF_PID"
check "docker update --restart no" timeout 60 docker update --restart no "$CONTAINER"
finish
