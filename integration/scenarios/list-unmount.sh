#!/usr/bin/env bash
# shellcheck disable=SC2016 # jq programs in single quotes
# list/unmount scenario: `dockerfuse list [--json]` and `dockerfuse unmount
# DIR...|--all` on real mounts, with a runtime directory of the scenario's
# own (DOCKERFUSE_RUNTIME_DIR) so that other mounts on the machine are left
# alone: the rows (container, id, path, mount point, pid, transport,
# since), the state files (written at mount, removed at exit, a killed
# process's cleaned up by list), the filesystem type, unmount waiting for
# the process, a busy mount refused with a hint, a path that is not mounted;
# `dockerfuse stats DIR [--json]`: a fresh name's LOOKUP counted as a wait.
# Environment: DOCKERFUSE, CONTAINER (running alpine), WORKDIR.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR

export DOCKERFUSE_RUNTIME_DIR=$WORKDIR/run
A=$WORKDIR/mnt-a B=$WORKDIR/mnt-b C=$WORKDIR/mnt-c
mkdir -p "$A" "$B" "$C"
ID=$(docker inspect -f '{{.Id}}' "$CONTAINER")

# mount_at DIR SOURCE: dockerfuse SOURCE DIR -d; sets MPID (its pid).
mount_at() {
	local dir=$1 src=$2 st=0
	on_exit "$(printf 'dfit_unmount %q %q' "$dir" "$dir.pid")"
	timeout -k 5 "$DFIT_MOUNT_TIMEOUT" "$DOCKERFUSE" "$src" "$dir" -d --pid-file "$dir.pid" --transport "${DFIT_TRANSPORT:-auto}" \
		>"$dir.out" 2>&1 </dev/null || st=$?
	if [ "$st" -eq 0 ] && is_fuse_mounted "$dir"; then
		pass "mount $src on $(basename "$dir")"
	else
		fail "mount $src on $(basename "$dir") (exit $st)"
		show_file "dockerfuse output" "$dir.out"
		stop_here
	fi
	MPID=$(cat "$dir.pid")
}
mount_at "$A" "$CONTAINER:/etc"
PID_A=$MPID
mount_at "$B" "$CONTAINER"
PID_B=$MPID

assert_eq "filesystem type fuse.dockerfuse" fuse.dockerfuse "$(findmnt -n -o FSTYPE --mountpoint "$A")"
check "a state file per mount" test -f "$DOCKERFUSE_RUNTIME_DIR/$PID_A.json" -a -f "$DOCKERFUSE_RUNTIME_DIR/$PID_B.json"

# As root on a local engine the default (auto) takes the local channel.
case "${DFIT_TRANSPORT:-auto}" in
exec) TRANSPORT="exec" ;;
*) TRANSPORT="local" ;;
esac
cap LIST "$DOCKERFUSE" list
assert_match "list: a header" '^CONTAINER +ID +PATH +MOUNTPOINT +PID +TRANSPORT +SINCE$' "$LIST"
assert_match "list: the /etc mount's row" "^$CONTAINER +${ID:0:12} +/etc +$A +$PID_A +$TRANSPORT +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} UTC$" "$LIST"
assert_match "list: the / mount's row" "^$CONTAINER +${ID:0:12} +/ +$B +$PID_B +$TRANSPORT " "$LIST"

cap JSON "$DOCKERFUSE" list --json
row() { jq -c --arg m "$1" '.[] | select(.mountpoint == $m) | [.container, .container_id, .path, .pid, .transport]' <<<"$JSON"; }
assert_eq "list --json: the /etc mount" "[\"$CONTAINER\",\"$ID\",\"/etc\",$PID_A,\"$TRANSPORT\"]" "$(row "$A")"
assert_eq "list --json: the / mount" "[\"$CONTAINER\",\"$ID\",\"/\",$PID_B,\"$TRANSPORT\"]" "$(row "$B")"
AGE=$(jq --arg m "$A" '.[] | select(.mountpoint == $m) | (now - .since_epoch) | floor' <<<"$JSON")
check "list --json: since is the last few minutes ($AGE s ago)" test "$AGE" -ge 0 -a "$AGE" -lt 600

# stats: what the mount waited for the container for, from its socket
# next to the state file. A stat of a name never asked before is one
# LOOKUP sent to the container (a wait); the same stat again is answered by
# the kernel's negative entry (nothing reaches dockerfuse).
check "a stats socket next to the state file" test -S "$DOCKERFUSE_RUNTIME_DIR/$PID_B.sock"
cap S0 "$DOCKERFUSE" stats "$B" --json
check_not "stat of a fresh name fails" stat "$B/dfit-no-such-name-$$"
check_not "the same stat again fails" stat "$B/dfit-no-such-name-$$"
cap S1 "$DOCKERFUSE" stats "$B" --json
delta() { jq -n --argjson a "$S0" --argjson b "$S1" "$1"; }
assert_eq "stats --json: one LOOKUP more, and it waited" "[1,1]" \
	"$(delta '[($b.ops, $a.ops) | map(select(.op == "LOOKUP")) | (.[0] // {requests: 0, waits: 0})] | [.[0].requests - .[1].requests, .[0].waits - .[1].waits]' | jq -c .)"
assert_eq "stats --json: one Lookup sent to the satellite" 1 \
	"$(delta '[($b.sent, $a.sent) | map(select(.request == "Lookup")) | (.[0].sent // 0)] | .[0] - .[1]')"
assert_eq "stats --json: the totals add up" true \
	"$(jq '.waits == ([.ops[].waits] | add) and .requests == ([.ops[].requests] | add)' <<<"$S1")"
cap TABLE "$DOCKERFUSE" stats "$B"
assert_match "stats: a table of kernel operations" '^KERNEL OP +REQUESTS +WAITS$' "$TABLE"
assert_match "stats: the LOOKUP row" '^LOOKUP +[1-9][0-9]* +[1-9][0-9]*$' "$TABLE"
assert_match "stats: the satellite requests" '^Lookup +[1-9][0-9]*$' "$TABLE"
cap NOT "$DOCKERFUSE" stats "$WORKDIR"
assert_match "stats of a directory that is no mount: fails and says so" "^<exit 1> .*is not a dockerfuse mount" "$NOT"

# A process killed without a chance to clean up: its state file is stale.
mount_at "$C" "$CONTAINER"
PID_C=$MPID
kill -KILL "$PID_C"
check "the killed process is gone" wait_until 10 pid_gone "$PID_C"
check "its state file is still there" test -f "$DOCKERFUSE_RUNTIME_DIR/$PID_C.json"
cap JSON "$DOCKERFUSE" list --json
assert_eq "list: the killed mount has no pid any more" null \
	"$(jq --arg m "$C" '.[] | select(.mountpoint == $m) | .pid' <<<"$JSON")"
check_not "list removed the stale state file" test -e "$DOCKERFUSE_RUNTIME_DIR/$PID_C.json"
check_not "... and the killed process's stats socket" test -e "$DOCKERFUSE_RUNTIME_DIR/$PID_C.sock"
check "dockerfuse unmount of the dead mount" timeout 30 "$DOCKERFUSE" unmount "$C"
check "the dead mount is gone" not_mounted "$C"

# unmount DIR waits for the serving process.
cap OUT timeout 30 "$DOCKERFUSE" unmount "$A"
assert_eq "unmount $A: says so" "unmounted $A" "$OUT"
check "unmount: the process has exited when it returns" pid_gone "$PID_A"
check "unmount: nothing mounted" not_mounted "$A"
check_not "unmount: the state file is gone" test -e "$DOCKERFUSE_RUNTIME_DIR/$PID_A.json"
check_not "unmount: the stats socket is gone" test -e "$DOCKERFUSE_RUNTIME_DIR/$PID_A.sock"

# A busy mount: refused with a hint, and still served.
(cd "$B" && exec sleep 300) &
HOLDER=$!
on_exit "kill $HOLDER 2>/dev/null"
sleep 0.5
st=0
OUT=$(timeout 30 "$DOCKERFUSE" unmount "$B" 2>&1) || st=$?
assert_eq "unmount of a busy mount: exit status 1" 1 "$st"
assert_match "unmount of a busy mount: says busy, with a hint" 'busy.*'$'\n''hint: .*umount -l' "$OUT"
check "the busy mount still works" test -f "$B/etc/alpine-release"
kill "$HOLDER"
wait "$HOLDER" 2>/dev/null || true

cap OUT timeout 30 "$DOCKERFUSE" unmount --all
assert_match "unmount --all: unmounts $B" "^unmounted $B$" "$OUT"
check "unmount --all: the process has exited" pid_gone "$PID_B"
check "unmount --all: nothing mounted" not_mounted "$B"
cap JSON "$DOCKERFUSE" list --json
assert_eq "list: none of ours left" 0 \
	"$(jq --arg w "$WORKDIR/" '[.[] | select(.mountpoint | startswith($w))] | length' <<<"$JSON")"
check "the runtime directory is empty" test -z "$(ls -A "$DOCKERFUSE_RUNTIME_DIR")"

st=0
OUT=$(timeout 30 "$DOCKERFUSE" unmount "$A" 2>&1) || st=$?
assert_eq "unmount of a path that is not mounted: exit status 1" 1 "$st"
assert_match "unmount of a path that is not mounted: says so" '^dockerfuse: .* is not mounted' "$OUT"

finish
