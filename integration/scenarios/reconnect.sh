#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check/cap
# Reconnect scenario: the container restarts under a live mount.
#   Part 1: --reconnect, `docker restart`: the process stays, the mount
#           stays; files open before the restart give EIO (on the local
#           transport with passthrough the kernel keeps using them: they
#           work); reads by path,
#           writes, ls work again; st_ino of a file is the same. Then
#           `docker stop`: an operation meanwhile waits and succeeds once
#           `docker start` has run. Then the satellite alone is killed: a
#           new one takes over at once.
#   Part 1d: --reconnect --ttl 3600: only the change feed can make a
#           change in the container visible within the hour; it is seen
#           within seconds before a `docker restart` and after it (the
#           new satellite's feed, translated into the mount's own ids).
#   Part 2: --reconnect --reconnect-timeout 2, `docker stop`: after the
#           timeout the mount ends as without --reconnect (exit 3, gone).
#   Part 3: no --reconnect, `docker restart`: exit 3 as always.
# Environment: DOCKERFUSE, CONTAINER (running; it is restarted and stopped
# here, so give this scenario its own), WORKDIR; SATELLITE_ARCH optional.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR
want='' got='' ino_before='' ino_after='' # set by cap

MNT=$WORKDIR/mnt-reconnect
export MNT
mkdir -p "$MNT"
ms() { date +%s%3N; }
reads_again() { timeout 5 cat "$MNT/etc/hostname" >/dev/null 2>&1; }
running() { [ "$(docker inspect -f '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" = true ]; }

# --- part 1: --reconnect, docker restart ----------------------------------------------
log "part 1: --reconnect, then docker restart"
mount_daemon "$MNT" --reconnect --reconnect-timeout 60 --op-timeout 10 --ttl 1
if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
	fail "dockerfuse --reconnect mounts $MNT (exit $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	show_file "dockerfuse log" "$DF_LOG"
	stop_here
fi
pass "dockerfuse --reconnect mounts $MNT"
check "prepare files in the container" dsh 'echo before >/tmp/reconnect-old.txt'
cap want dx cat /etc/passwd
cap got cat "$MNT/etc/passwd"
assert_eq "reading works before the restart" "$want" "$got"
# Open before the restart, used after: never read before, so no page
# cache can answer for the dead handle.
exec 3<"$MNT/etc/group" 4>>"$MNT/tmp/reconnect-old.txt"
on_exit "exec 3<&- 4>&-"
# The open descriptor pins the inode: the kernel keeps its node id (an
# unused one may be forgotten at any time and then gets a new number,
# with or without a restart).
cap ino_before stat -c %i "$MNT/etc/group"
cd_pid=''
(cd "$MNT/etc" && exec sleep 1000) &
cd_pid=$!
on_exit "kill $cd_pid 2>/dev/null"

t0=$(ms)
check "docker restart -t 1" timeout 60 docker restart -t 1 "$CONTAINER"
if wait_until 30 reads_again; then
	pass "reads by path work again within 30 s of the restart"
	log "time docker restart->reads again: $(($(ms) - t0)) ms"
else
	fail "reads by path work again within 30 s of the restart"
	show_file "dockerfuse log" "$DF_LOG"
fi
check "the process (pid $DF_PID) is still alive" pid_alive "$DF_PID"
check "$MNT is still mounted" is_fuse_mounted "$MNT"
check "the log says it reconnected" grep -q "reconnected" "$DF_LOG"
cap got cat "$MNT/etc/passwd"
assert_eq "cat of a file by path gives its content" "$want" "$got"
cap ino_after stat -c %i "$MNT/etc/group"
assert_eq "st_ino of a file held open is the same across the restart" "$ino_before" "$ino_after"
out=$(cat <&3 2>&1) && rc=0 || rc=$?
out2=$( (echo after >&4) 2>&1) && rc2=0 || rc2=$?
exec 3<&- 4>&-
if grep -q "passthrough requested" "$DF_LOG"; then
	# The kernel reads and writes a passthrough file itself, through the
	# descriptor it was given at open: the file stays usable.
	cap want dx cat /etc/group
	assert_eq "passthrough: a read through a descriptor opened before still works" "$want" "$out"
	assert_eq "passthrough: a write through a descriptor opened before still works (exit)" 0 "$rc2"
	cap got dx cat /tmp/reconnect-old.txt
	assert_eq "passthrough: the container sees that write" "$(printf 'before\nafter')" "$got"
else
	assert_match "a read through a descriptor opened before gives EIO" "input/output error" "exit $rc: $out"
	assert_match "a write through a descriptor opened before gives EIO" "input/output error" "exit $rc2: $out2"
fi
check "a write by path works" run_sh 'echo written >"$MNT/tmp/reconnect-new.txt"'
cap got dx cat /tmp/reconnect-new.txt
assert_eq "the container sees the write" "written" "$got"
cap got ls "$MNT/etc"
assert_match "ls of a directory works" "(^|[[:space:]])passwd($|[[:space:]])" "$got"
cap got ls "/proc/$cd_pid/cwd/"
assert_match "a directory held as cwd across the restart resolves again" "(^|[[:space:]])passwd($|[[:space:]])" "$got"
kill "$cd_pid" 2>/dev/null || true
wait "$cd_pid" 2>/dev/null || true

log "part 1b: docker stop, an operation meanwhile, docker start"
cap want dx cat /etc/os-release
check "docker stop -t 1" timeout 60 docker stop -t 1 "$CONTAINER"
timeout 30 cat "$MNT/etc/os-release" >"$WORKDIR/waiting.out" 2>&1 &
waiter=$!
sleep 1
check "the operation waits while the container is stopped" pid_alive "$waiter"
check "docker start" timeout 60 docker start "$CONTAINER"
rc=0
wait "$waiter" || rc=$?
assert_eq "the waiting operation succeeds once the container runs (exit)" 0 "$rc"
assert_eq "the waiting operation reads the file" "$want" "$(cat "$WORKDIR/waiting.out")"
check "the process (pid $DF_PID) is still alive" pid_alive "$DF_PID"

log "part 1c: the satellite is killed, the container runs on"
reconnects() { grep -c "satellite reconnected" "$DF_LOG" || true; }
before=$(reconnects)
third() { [ "$(reconnects)" -gt "$before" ]; }
dx pkill -9 -f dockerfuse-satellite || true
check "a new satellite takes over within 15 s" wait_until 15 third
check "reads work again after the satellite was killed" wait_until 15 reads_again
cap got cat "$MNT/tmp/reconnect-new.txt"
assert_eq "a file written before reads back" "written" "$got"
check "the process (pid $DF_PID) is still alive" pid_alive "$DF_PID"
check "unmount after the reconnect" dfit_unmount "$MNT" "$DF_PIDFILE"
check "the daemon is gone after the unmount" wait_until 10 pid_gone "$DF_PID"

# --- part 1d: --reconnect with an hour's TTL: the feed, before and after a restart --
log "part 1d: --reconnect --ttl 3600: changes in the container are seen across a restart"
FD=/reconnect-feed
check "prepare a directory in the container" dsh "rm -rf $FD && mkdir -p $FD && echo one >$FD/f && chmod 644 $FD/f"
mount_daemon "$MNT" --reconnect --reconnect-timeout 60 --op-timeout 10 --ttl 3600
if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
	fail "dockerfuse --reconnect --ttl 3600 mounts $MNT (exit $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	stop_here
fi
pass "dockerfuse --reconnect --ttl 3600 mounts $MNT"
shows() { [ "$(cat "$MNT$FD/f" 2>/dev/null)" = "$1" ]; }
exists() { [ -e "$MNT$FD/$1" ]; }
size_is() { [ "$(stat -c %s "$MNT$FD/f" 2>/dev/null)" = "$1" ]; }
mode_is() { [ "$(stat -c %a "$MNT$FD/f" 2>/dev/null)" = "$1" ]; }
# What the kernel may keep for an hour: the file's attributes (a stat
# after the read, which marks the atime stale) and the absence of a name.
# The checks below only stat until the contents are compared: a read
# would make the kernel ask for the attributes again, feed or not.
cache_all() {
	cat "$MNT$FD/f" >/dev/null
	stat "$MNT$FD/f" >/dev/null
	! exists "$1"
}
check "before the restart: the file reads" shows one
check "before the restart: attributes cached, a new name absent" cache_all new1
check "change the file's size and mode, add a name in the container" dsh "echo two-longer >$FD/f && chmod 600 $FD/f && touch $FD/new1"
check "before the restart: the new size is seen within 5 s" wait_until 5 size_is 11
check "before the restart: the new mode is seen within 5 s" wait_until 5 mode_is 600
check "before the restart: the new name is seen within 5 s" wait_until 5 exists new1
check "before the restart: the new contents are read" shows two-longer
before=$(reconnects)
feeds() { grep -c "change feed resumed" "$DF_LOG" || true; }
feeds_before=$(feeds)
resumed() { [ "$(feeds)" -gt "$feeds_before" ]; }
check "docker restart -t 1" timeout 60 docker restart -t 1 "$CONTAINER"
check "the satellite reconnects within 30 s" wait_until 30 third
check "reads work again after the restart" wait_until 15 reads_again
check "after the restart: the file reads" shows two-longer
check "after the restart: attributes cached, a new name absent" cache_all new2
check "change the file's size and mode, add a name in the restarted container" dsh "echo three-longest >$FD/f && chmod 640 $FD/f && touch $FD/new2"
check "after the restart: the new size is seen within 5 s" wait_until 5 size_is 14
check "after the restart: the new mode is seen within 5 s" wait_until 5 mode_is 640
check "after the restart: the new name is seen within 5 s" wait_until 5 exists new2
check "after the restart: the new contents are read" shows three-longest
check "the log says the new satellite's feed is on" resumed
check "unmount after the reconnect" dfit_unmount "$MNT" "$DF_PIDFILE"
check "the daemon is gone after the unmount" wait_until 10 pid_gone "$DF_PID"
dsh "rm -rf $FD" || true

# --- part 2: --reconnect with a short timeout, docker stop -------------------------
log "part 2: --reconnect --reconnect-timeout 2, then docker stop"
mount_fg "$MNT" --reconnect --reconnect-timeout 2
if ! wait_mounted "$MNT" "$DF_PID"; then
	fail "dockerfuse --reconnect mounts $MNT (foreground)"
	show_file "dockerfuse output" "$DF_OUT"
	stop_here
fi
pass "dockerfuse --reconnect mounts $MNT (foreground)"
check "reading works before the stop" test -s "$MNT/etc/passwd"
t0=$(ms)
check "docker stop -t 1" timeout 60 docker stop -t 1 "$CONTAINER"
if wait_until 20 pid_gone "$DF_PID"; then
	pass "dockerfuse gives up after --reconnect-timeout"
	log "time docker stop->exit: $(($(ms) - t0)) ms"
else
	fail "dockerfuse gives up after --reconnect-timeout"
	kill -TERM "$DF_PID" 2>/dev/null || true
fi
rc=0
wait "$DF_PID" || rc=$?
assert_eq "exit status 3 when the container does not come back" 3 "$rc"
check "$MNT is no longer mounted" wait_until 5 not_mounted "$MNT"
assert_match "the message names the container" "$CONTAINER" "$(cat "$DF_OUT")"

# --- part 3: no --reconnect, docker restart ----------------------------------------
log "part 3: no --reconnect, then docker restart"
check "docker start" timeout 60 docker start "$CONTAINER"
check "the container runs" wait_until 10 running
mount_fg "$MNT"
wait_mounted "$MNT" "$DF_PID" || abort "mount without --reconnect"
check "reading works before the restart" test -s "$MNT/etc/passwd"
check "docker restart -t 1" timeout 60 docker restart -t 1 "$CONTAINER"
if wait_until 15 pid_gone "$DF_PID"; then
	pass "without --reconnect dockerfuse exits on the restart"
else
	fail "without --reconnect dockerfuse exits on the restart"
	kill -TERM "$DF_PID" 2>/dev/null || true
fi
rc=0
wait "$DF_PID" || rc=$?
assert_eq "exit status 3 without --reconnect" 3 "$rc"
check "$MNT is no longer mounted" wait_until 5 not_mounted "$MNT"
finish
