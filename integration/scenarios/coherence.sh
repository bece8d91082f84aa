#!/usr/bin/env bash
# Coherence scenario: while the host holds a directory of the mount cached
# (listed, looked up, absent names included) and a file open, the container
# (docker exec) creates, rewrites, appends to, truncates, chmods, touches,
# renames, replaces, links and removes files and directories; each change
# must show through the mount within DFIT_COHERENCE_BOUND seconds of showing
# on direct access (/proc/<pid>/root), and stay visible; a file held open
# read-only through the mount since before a rewrite in place must read the
# new contents through that descriptor within the same bound (its contents
# may have come with the open: they must not outlive the change); the feed
# run is repeated on the exec transport, where dockerfuse answers those
# reads rather than the kernel's passthrough. Prints the p50/p99
# of the change -> visible latency (integration/coherence.py). Then the same
# with the change feed off (--no-change-feed): each change must still show,
# within the 1 s TTL. Then with the feed capped at a handful of watches
# (--max-watches 2: only the root and /tmp are watched; a full
# fs.inotify.max_user_watches takes the same path):
# the nodes past the cap must be announced as unwatched and their changes
# still show within the TTL.
#
# Environment:
#   DOCKERFUSE, CONTAINER, SATELLITE_ARCH, WORKDIR   as for core.sh (required)
#   DFIT_COHERENCE_ROUNDS  rounds of 13 changes (default 10)
#   DFIT_COHERENCE_BOUND   seconds a change may take with the feed (default 0.5)
# Must run as root (it reads /proc/<pid>/root). Writes only below
# /tmp/dfit-coh-<pid> in the container, removed at the end.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER SATELLITE_ARCH WORKDIR
running='' cpid='' # set by cap

ROUNDS=${DFIT_COHERENCE_ROUNDS:-10}
BOUND=${DFIT_COHERENCE_BOUND:-0.5}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MNT=$WORKDIR/mnt-coh
T=/tmp/dfit-coh-$$
mkdir -p "$MNT"

[ "$(id -u)" -eq 0 ] || abort "must run as root (reads /proc/<pid>/root)"
command -v python3 >/dev/null 2>&1 || abort "python3 not found"
cap running docker inspect -f '{{.State.Running}}' "$CONTAINER"
[ "$running" = true ] || abort "container $CONTAINER is not running ($running)"
cap cpid docker inspect -f '{{.State.Pid}}' "$CONTAINER"
[ -d "/proc/$cpid/root/tmp" ] || abort "cannot reach the container's root at /proc/$cpid/root"
log "container $CONTAINER, satellite $SATELLITE_ARCH, $ROUNDS rounds, bound ${BOUND}s"
on_exit "$(printf 'dx rm -rf %q >/dev/null 2>&1' "$T")"

# run_coherence TITLE BOUND DIR [dockerfuse flags...]
run_coherence() {
	local title=$1 bound=$2 dir=$3 rc=0 summary report=$WORKDIR/coherence-$3.out
	shift 3
	check "test directory $T/$dir created in the container" dx mkdir -p "$T/$dir"
	mount_daemon "$MNT" "$@"
	if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
		fail "dockerfuse -daemonize mounts $title (exit $DF_STATUS)"
		show_file "dockerfuse output" "$DF_OUT"
		show_file "dockerfuse log" "$DF_LOG"
		stop_here
	fi
	pass "dockerfuse -daemonize mounts $title"
	timeout -k 10 600 python3 "$HERE/coherence.py" --container "$CONTAINER" \
		--mount-dir "$MNT$T/$dir" --container-dir "$T/$dir" --direct-dir "/proc/$cpid/root$T/$dir" \
		--rounds "$ROUNDS" --bound "$bound" >"$report" 2>&1 || rc=$?
	summary=$(grep -E '^coherence: ' "$report" | tail -n 1 || true)
	log "$title: ${summary:-no summary line}"
	if [ "$rc" -eq 0 ]; then
		pass "$title: every change in the container shows through the mount within ${bound}s (${summary#coherence: })"
	else
		fail "$title: changes in the container show late or not at all (exit $rc)"
		detail <"$report"
	fi
	check "fusermount3 -u ($title)" fusermount3 -u "$MNT"
	check "dockerfuse exits after the unmount ($title)" wait_until 20 pid_gone "$DF_PID"
}

run_coherence "with the change feed" "$BOUND" feed
run_coherence "without the change feed" 1.5 nofeed --no-change-feed
run_coherence "with the feed capped at 2 watches" 1.5 capped --max-watches 2 -debug
if grep -q 'node not watched: short TTL' "$DF_LOG"; then
	pass "with 2 watches, the nodes past the cap are reported unwatched (-debug log)"
else
	fail "with 2 watches, no node was reported unwatched"
	show_file "dockerfuse log" "$DF_LOG"
fi
# The local channel lets the kernel read open files itself (passthrough):
# reads answered by dockerfuse, from contents an open brought, need the
# exec stream. Once more there, with the feed, unless every mount is on it.
case "${DFIT_TRANSPORT:-auto}" in
exec) ;;
*) DFIT_TRANSPORT="exec" run_coherence "with the change feed, exec transport" "$BOUND" exec ;;
esac
finish
