#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check/cap
# Fault matrix: what happens to a live mount when something fails.
#   pause      docker pause: operations wait up to --op-timeout, then EIO;
#              after docker unpause the mount works again
#   satellite  the satellite is killed inside the container: EIO, the mount
#              is removed, exit 3 with a message naming the container
#   sigkill    the client is killed with SIGKILL: the satellite exits on its
#              own, nothing is left in the container, fusermount3 -u frees
#              the mount point
#   sigterm    SIGTERM during a large write: the write completes with all
#              its data in the container, or fails visibly; never silent loss
#   lazy       umount -l under the process: it exits 0 and leaves nothing
#   full       a write into a full file system in the container fails
#              with ENOSPC (at write(2) or, written behind, at close)
# Detection times are printed as "# time ..." lines.
# Environment: DOCKERFUSE, CONTAINER (running, alpine), WORKDIR; SATELLITE_ARCH optional.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR
want='' got='' # set by cap

MNT=$WORKDIR/mnt-faults
mkdir -p "$MNT"
ms() { date +%s%3N; }
satellites_in_container() { dx ps -o args 2>/dev/null | grep -c '[d]ockerfuse-satellite' || true; }
diff_before=$(docker diff "$CONTAINER" | sort)

# --- pause --------------------------------------------------------------------
log "pause: operations wait --op-timeout (2 s), then EIO; unpause resumes"
mount_daemon "$MNT" --op-timeout 2 --ttl 0
[ "$DF_STATUS" -eq 0 ] || abort "mount for the pause test (exit $DF_STATUS: $(cat "$DF_OUT"))"
on_exit "$(printf 'docker unpause %q >/dev/null 2>&1' "$CONTAINER")"
docker pause "$CONTAINER" >/dev/null
t0=$(ms)
rc=0
timeout -k 2 20 cat "$MNT/etc/hostname" >/dev/null 2>"$WORKDIR/pause.err" || rc=$?
t1=$(ms)
log "time pause->EIO: $((t1 - t0)) ms"
assert_eq "a read on a paused container fails (not a hang)" 1 "$rc"
assert_match "the failure is EIO" "input/output error" "$(cat "$WORKDIR/pause.err")"
check "it failed after the 2 s limit, within 6 s" test "$((t1 - t0))" -ge 1900 -a "$((t1 - t0))" -le 6000
docker unpause "$CONTAINER" >/dev/null
cap want dx cat /etc/hostname
cap got cat "$MNT/etc/hostname"
assert_eq "after unpause the mount works again" "$want" "$got"
# Pause and unpause within the limit: the operation just waits.
docker pause "$CONTAINER" >/dev/null
(sleep 1 && docker unpause "$CONTAINER" >/dev/null) &
cap got cat "$MNT/etc/hostname"
wait
assert_eq "a pause shorter than the limit only delays" "$want" "$got"
check "fusermount3 -u ends the pause test mount" fusermount3 -u "$MNT"
check "the process exits" wait_until 10 pid_gone "$DF_PID"

# --- satellite killed ---------------------------------------------------------------
log "satellite killed inside the container"
mount_fg "$MNT"
wait_mounted "$MNT" "$DF_PID" || abort "mount for the satellite test"
check "a satellite runs in the container" test "$(satellites_in_container)" -ge 1
t0=$(ms)
dx pkill -9 -f dockerfuse-satellite || true
rc=0
wait_until 10 pid_gone "$DF_PID" || true
t1=$(ms)
if pid_alive "$DF_PID"; then
	fail "dockerfuse exits when its satellite dies"
else
	wait "$DF_PID" || rc=$?
	log "time satellite kill->exit: $((t1 - t0)) ms"
	assert_eq "exit status 3 when the satellite dies" 3 "$rc"
fi
assert_match "the message names the container" "$CONTAINER" "$(cat "$DF_OUT")"
check "the mount is gone" not_mounted "$MNT"

# --- client SIGKILL ----------------------------------------------------------------
log "client killed with SIGKILL"
mount_daemon "$MNT"
[ "$DF_STATUS" -eq 0 ] || abort "mount for the SIGKILL test"
check "reading works" test -s "$MNT/etc/passwd"
kill -KILL "$DF_PID"
t0=$(ms)
check "the satellite exits on its own" wait_until 10 test "$(satellites_in_container)" -eq 0
log "time client kill->satellite gone: $(($(ms) - t0)) ms"
check "the mount point is dead, not hanging" bash -c "! timeout 5 ls $(printf %q "$MNT") 2>/dev/null"
check "fusermount3 -u frees the mount point" fusermount3 -u "$MNT"
check "the mount point is reusable" not_mounted "$MNT"

# --- SIGTERM during a large write --------------------------------------------------
log "SIGTERM during a 128 MiB write"
mount_daemon "$MNT"
[ "$DF_STATUS" -eq 0 ] || abort "mount for the SIGTERM test"
(
	trap - EXIT INT TERM HUP ERR
	rc=0
	dd if=/dev/zero of="$MNT/tmp/dfit-sigterm.bin" bs=1M count=128 conv=fsync 2>/dev/null || rc=$?
	echo "$rc" >"$WORKDIR/dd.rc"
) &
ddjob=$!
sleep 0.5
kill -TERM "$DF_PID"
wait "$ddjob" || true
check "the process exits after SIGTERM" wait_until 15 pid_gone "$DF_PID"
ddrc=$(cat "$WORKDIR/dd.rc")
size= # set by cap
cap size dx stat -c %s /tmp/dfit-sigterm.bin
if [ "$ddrc" -eq 0 ]; then
	assert_eq "dd reported success, so all 128 MiB are in the container" 134217728 "$size"
else
	pass "the interrupted write failed visibly (dd exit $ddrc; $size bytes arrived)"
fi
check "the mount is gone after SIGTERM" not_mounted "$MNT"
dx rm -f /tmp/dfit-sigterm.bin

# --- umount -l under the process ----------------------------------------------------
log "umount -l under a running dockerfuse"
mount_fg "$MNT"
wait_mounted "$MNT" "$DF_PID" || abort "mount for the lazy unmount test"
umount -l "$MNT"
rc=0
if wait_until 10 pid_gone "$DF_PID"; then
	wait "$DF_PID" || rc=$?
	assert_eq "dockerfuse exits 0 after umount -l" 0 "$rc"
else
	fail "dockerfuse exits after umount -l"
fi
check "no satellite left after umount -l" wait_until 5 test "$(satellites_in_container)" -eq 0

# --- a full file system in the container ---------------------------------------------
log "ENOSPC: a write into a full tmpfs in the container fails visibly"
FULL=dfit-full-$$
on_exit "$(printf 'docker rm -f %q >/dev/null 2>&1' "$FULL")"
labels=()
[ -z "${DFIT_LABEL:-}" ] || labels=(--label "$DFIT_LABEL")
image=$(docker inspect -f '{{.Config.Image}}' "$CONTAINER")
if docker run -d --name "$FULL" "${labels[@]}" --network none --tmpfs /full:size=256k "$image" sleep infinity >/dev/null; then
	pass "a container with a 256 KiB tmpfs at /full runs"
	CONTAINER=$FULL mount_daemon "$MNT"
	if [ "$DF_STATUS" -eq 0 ]; then
		rc=0
		out=$(dd if=/dev/zero of="$MNT/full/f" bs=4k count=256 2>&1) || rc=$?
		check "dd of 1 MiB into it fails (exit $rc)" test "$rc" -ne 0
		assert_match "dd says why" 'No space left on device' "$out"
		size=0
		cap size docker exec "$FULL" stat -c %s /full/f
		check "the file holds at most what fits ($size bytes)" test "$size" -le 262144
		check "the mount still answers after the error" ls "$MNT/full"
		check "fusermount3 -u (full tmpfs)" fusermount3 -u "$MNT"
		check "dockerfuse exits (full tmpfs)" wait_until 20 pid_gone "$DF_PID"
	else
		fail "mount of the container with the full tmpfs (exit $DF_STATUS)"
		show_file "dockerfuse output" "$DF_OUT"
	fi
else
	fail "a container with a 256 KiB tmpfs at /full runs"
fi
docker rm -f "$FULL" >/dev/null 2>&1 || true

# --- nothing left behind -------------------------------------------------------------
diff_after=$(docker diff "$CONTAINER" | sort)
assert_eq "docker diff shows nothing the tool added" "$diff_before" "$diff_after"
finish
