#!/usr/bin/env bash
# shellcheck disable=SC2016 # quoted code runs in a child shell
# Differential scenario: a seeded random sequence of file operations is
# applied in lockstep through the mount and directly (from the host, through
# /proc/<pid>/root) to twin directories in the SAME container; every
# operation's result and errno, and at the end of each sequence the whole
# trees, must be identical. See integration/difftest.py for the operations
# and the comparison; a divergence prints the seed and the shortest failing
# operation list it found (delta debugging).
#
# Environment:
#   DOCKERFUSE, CONTAINER, SATELLITE_ARCH, WORKDIR   as for core.sh (required)
#   DFIT_DIFF_OPS     operations in total (default 10000: about 20-40 s on
#                     amd64; the arm64 satellite under qemu is about as fast)
#   DFIT_DIFF_SEED    first seed (default 1; sequences use SEED, SEED+1, ...)
#   DFIT_DIFF_SEQ     operations per sequence (fresh twins each; default 250)
#   DFIT_DIFF_TIMEOUT bound on each run in s (default 900)
#   DFIT_DIFF_ID_OPS  operations of the second run, with identities
#                     (default 4000; 0 skips it): a mount with --allow-other,
#                     operations as uid 3000 gid 3000 with supplementary
#                     groups 2000 and 2001 on both twins, mixed with root's
#                     (setuid/setgid files, group-owned setgid directories,
#                     chown/chgrp to own and foreign groups)
#   DFIT_DIFF_THIRD_OPS, DFIT_DIFF_THIRD_EVERY, DFIT_DIFF_SETTLE  a third run of
#                     2000 operations (seed SEED+1000) with a third-party change
#                     to both twins, made directly, every 10 operations; the
#                     mount gets 0.2 s to see each (the change feed)
#   DFIT_DIFF_RACE_EVERY  in that third run, every N operations (default 5;
#                     0: none) a third party makes a name right after the
#                     mount's create of it returned, before it may have
#                     reached the container (creates sent behind): exactly
#                     one of them may win, the mount's loss shows as EEXIST
#                     at its create, write, close or the directory's fsync,
#                     and the trees then agree (difftest.py race())
# Must run as root (it reads /proc/<pid>/root). Writes only below
# /tmp/dfit-diff-<pid> in the container, removed at the end.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER SATELLITE_ARCH WORKDIR
running='' cpid='' out='' # set by cap

OPS=${DFIT_DIFF_OPS:-10000}
SEED=${DFIT_DIFF_SEED:-1}
SEQ=${DFIT_DIFF_SEQ:-250}
RUN_TIMEOUT=${DFIT_DIFF_TIMEOUT:-900}
ID_OPS=${DFIT_DIFF_ID_OPS:-4000}
ID_USER=3000:3000:2000,2001
THIRD_OPS=${DFIT_DIFF_THIRD_OPS:-2000}
THIRD_EVERY=${DFIT_DIFF_THIRD_EVERY:-10}
SETTLE=${DFIT_DIFF_SETTLE:-0.2}
RACE_EVERY=${DFIT_DIFF_RACE_EVERY:-5}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MNT=$WORKDIR/mnt-diff
T=/tmp/dfit-diff-$$
mkdir -p "$MNT"

[ "$(id -u)" -eq 0 ] || abort "must run as root (reads /proc/<pid>/root)"
require_tools python3
cap running docker inspect -f '{{.State.Running}}' "$CONTAINER"
[ "$running" = true ] || abort "container $CONTAINER is not running ($running)"
cap cpid docker inspect -f '{{.State.Pid}}' "$CONTAINER"
[ -d "/proc/$cpid/root/tmp" ] || abort "cannot reach the container's root at /proc/$cpid/root"
log "container $CONTAINER, satellite $SATELLITE_ARCH, $OPS ops from seed $SEED, $SEQ per sequence"

on_exit "$(printf 'dx rm -rf %q >/dev/null 2>&1' "$T")"
check "twin directories created in the container" dx mkdir -p "$T/m" "$T/d"

# difftest_run MNT LABEL OPS [DIFFTEST_ARGS...]: one difftest run on a
# mount made by the caller, reported as passes/failures.
difftest_run() {
	local mnt=$1 label=$2 ops=$3 rc=0 summary report races
	shift 3
	report=$WORKDIR/difftest-$label.out
	timeout -k 10 "$RUN_TIMEOUT" python3 "$HERE/difftest.py" \
		--mount-dir "$mnt$T/m" --direct-dir "/proc/$cpid/root$T/d" \
		--seed "$SEED" --ops "$ops" --seq-len "$SEQ" "$@" >"$report" 2>&1 || rc=$?
	summary=$(grep -E '^difftest: ' "$report" | tail -n 1 || true)
	log "$label: ${summary:-no summary line}"
	races=$(grep -E '^ +race-won-by ' "$report" || true)
	[ -z "$races" ] || log "$label: races ${races#*race-won-by }"
	case "$rc" in
	0) pass "$label: no divergence between the mount and direct access (${summary#difftest: })" ;;
	1)
		fail "$label: the mount diverges from direct access (seed $SEED; ${summary#difftest: })"
		cut -c1-400 "$report" | detail
		;;
	124 | 137)
		fail "$label: difftest timed out after ${RUN_TIMEOUT}s"
		tail -n 20 "$report" | detail
		stop_here
		;;
	*)
		fail "$label: difftest failed to run (exit $rc)"
		tail -n 20 "$report" | detail
		;;
	esac
}

# mount_or_stop MNT [ARGS...]
mount_or_stop() {
	mount_daemon "$@"
	if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$1"; then
		fail "dockerfuse -daemonize $* mounts (exit $DF_STATUS)"
		show_file "dockerfuse output" "$DF_OUT"
		show_file "dockerfuse log" "$DF_LOG"
		stop_here
	fi
	pass "dockerfuse -daemonize mounts ${*:2}"
}

mount_or_stop "$MNT"
difftest_run "$MNT" root "$OPS"
# Third-party changes: every THIRD_EVERY operations a random change is made
# to both twins directly (behind the mount's back, as a process in the
# container would); after SETTLE seconds the mount must see it, or the next
# operations diverge.
if [ "$THIRD_OPS" -gt 0 ]; then
	difftest_run "$MNT" third-party "$THIRD_OPS" \
		--third-party-dir "/proc/$cpid/root$T/m" --third-party-every "$THIRD_EVERY" \
		--settle "$SETTLE" --race-every "$RACE_EVERY" --seed "$((SEED + 1000))" --stats
fi
check "fusermount3 -u" fusermount3 -u "$MNT"
check "dockerfuse exits after the unmount" wait_until 20 pid_gone "$DF_PID"

if [ "$ID_OPS" -gt 0 ]; then
	# The user works in the twins themselves: make them everyone's.
	check "twin directories opened to everyone" dx chmod 0777 "$T/m" "$T/d"
	MNT_ID=$WORKDIR/mnt-diff-id
	mkdir -p "$MNT_ID"
	mount_or_stop "$MNT_ID" --allow-other
	difftest_run "$MNT_ID" "as-user" "$ID_OPS" --as-user "$ID_USER"
	check "fusermount3 -u (--allow-other)" fusermount3 -u "$MNT_ID"
	check "dockerfuse exits after the unmount (--allow-other)" wait_until 20 pid_gone "$DF_PID"
fi

cap out dx sh -c "ls -A '$T/m' '$T/d' | grep -v '^$T' | grep -c . || true"
assert_eq "both twins empty afterwards" 0 "$out"
finish
