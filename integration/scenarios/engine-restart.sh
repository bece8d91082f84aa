#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check/cap
# The engine restarts under a live mount. Without live-restore the
# container dies with the engine, so this is container loss: pending and
# new operations get EIO, the mount is removed, dockerfuse exits 3 with a
# message naming the container; the engine must answer again afterwards
# (the scenario waits for it, so runs after this one are not hurt).
# The restart is lib.sh's engine_restart (systemctl where systemd runs the
# engine, dockerd run again with its own command line elsewhere). Run it
# last.
# Environment: DOCKERFUSE, CONTAINER (running), WORKDIR.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR

MNT=$WORKDIR/mnt-restart
mkdir -p "$MNT"
ms() { date +%s%3N; }
engine_answers() { timeout 5 docker info >/dev/null 2>&1; }

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
finish
