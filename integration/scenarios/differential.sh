#!/usr/bin/env bash
# shellcheck disable=SC2016 # quoted code runs in a child shell
# Differential scenario: a seeded random sequence of file operations is
# applied in lockstep through the mount and directly (from the host, through
# /proc/<pid>/root) to twin directories in the SAME container; every
# operation's result and errno, and at the end of each sequence the whole
# trees, must be identical; then again with third-party changes made to
# the twins behind the mount's back. See integration/difftest.py for the operations
# and the comparison; a divergence prints the seed and the shortest failing
# operation list it found (delta debugging).
#
# Environment:
#   DOCKERFUSE, CONTAINER, SATELLITE_ARCH, WORKDIR   as for core.sh (required)
#   DFIT_DIFF_OPS     operations in total (default 10000: about 20-40 s on
#                     amd64; the arm64 satellite under qemu is about as fast)
#   DFIT_DIFF_SEED    first seed (default 1; sequences use SEED, SEED+1, ...)
#   DFIT_DIFF_SEQ     operations per sequence (fresh twins each; default 250)
#   DFIT_DIFF_TIMEOUT bound on the whole run in s (default 900)
#   DFIT_DIFF_THIRD_OPS, DFIT_DIFF_THIRD_EVERY, DFIT_DIFF_SETTLE  a second run of
#                     2000 operations (seed SEED+1000) with a third-party change
#                     to both twins, made directly, every 10 operations; the
#                     mount gets 0.2 s to see each
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
THIRD_OPS=${DFIT_DIFF_THIRD_OPS:-2000}
THIRD_EVERY=${DFIT_DIFF_THIRD_EVERY:-10}
SETTLE=${DFIT_DIFF_SETTLE:-0.2}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MNT=$WORKDIR/mnt-diff
T=/tmp/dfit-diff-$$
mkdir -p "$MNT"

[ "$(id -u)" -eq 0 ] || abort "must run as root (reads /proc/<pid>/root)"
command -v python3 >/dev/null 2>&1 || abort "python3 not found"
cap running docker inspect -f '{{.State.Running}}' "$CONTAINER"
[ "$running" = true ] || abort "container $CONTAINER is not running ($running)"
cap cpid docker inspect -f '{{.State.Pid}}' "$CONTAINER"
[ -d "/proc/$cpid/root/tmp" ] || abort "cannot reach the container's root at /proc/$cpid/root"
log "container $CONTAINER, satellite $SATELLITE_ARCH, $OPS ops from seed $SEED, $SEQ per sequence"

on_exit "$(printf 'dx rm -rf %q >/dev/null 2>&1' "$T")"
check "twin directories created in the container" dx mkdir -p "$T/m" "$T/d"

mount_daemon "$MNT"
if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
	fail "dockerfuse -daemonize mounts (exit $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	show_file "dockerfuse log" "$DF_LOG"
	stop_here
fi
pass "dockerfuse -daemonize mounts"

REPORT=$WORKDIR/difftest.out
rc=0
timeout -k 10 "$RUN_TIMEOUT" python3 "$HERE/difftest.py" \
	--mount-dir "$MNT$T/m" --direct-dir "/proc/$cpid/root$T/d" \
	--seed "$SEED" --ops "$OPS" --seq-len "$SEQ" >"$REPORT" 2>&1 || rc=$?
summary=$(grep -E '^difftest: ' "$REPORT" | tail -n 1 || true)
log "${summary:-no summary line}"
case "$rc" in
0) pass "no divergence between the mount and direct access (${summary#difftest: })" ;;
1)
	fail "the mount diverges from direct access (seed $SEED; ${summary#difftest: })"
	cut -c1-400 "$REPORT" | detail
	;;
124 | 137)
	fail "difftest timed out after ${RUN_TIMEOUT}s"
	tail -n 20 "$REPORT" | detail
	stop_here
	;;
*)
	fail "difftest failed to run (exit $rc)"
	tail -n 20 "$REPORT" | detail
	;;
esac

# Third-party changes: every DFIT_DIFF_THIRD_EVERY operations a random
# change is made to both twins directly (behind the mount's back, as a
# process in the container would); after DFIT_DIFF_SETTLE seconds the mount
# must see it (the change feed), or the next operations diverge.
REPORT3=$WORKDIR/difftest-third.out
rc=0
timeout -k 10 "$RUN_TIMEOUT" python3 "$HERE/difftest.py" \
	--mount-dir "$MNT$T/m" --direct-dir "/proc/$cpid/root$T/d" \
	--third-party-dir "/proc/$cpid/root$T/m" --third-party-every "$THIRD_EVERY" --settle "$SETTLE" \
	--seed "$((SEED + 1000))" --ops "$THIRD_OPS" --seq-len "$SEQ" >"$REPORT3" 2>&1 || rc=$?
summary=$(grep -E '^difftest: ' "$REPORT3" | tail -n 1 || true)
log "third-party changes: ${summary:-no summary line}"
case "$rc" in
0) pass "no divergence with third-party changes every $THIRD_EVERY ops, ${SETTLE}s to settle (${summary#difftest: })" ;;
*)
	fail "the mount diverges after third-party changes (exit $rc; ${summary#difftest: })"
	cut -c1-400 "$REPORT3" | detail
	;;
esac
cap out dx sh -c "ls -A '$T/m' '$T/d' | grep -v '^$T' | grep -c . || true"
assert_eq "both twins empty afterwards" 0 "$out"

check "fusermount3 -u" fusermount3 -u "$MNT"
check "dockerfuse exits after the unmount" wait_until 20 pid_gone "$DF_PID"
finish
