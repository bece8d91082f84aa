#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check/cap
# The local transport and FUSE passthrough (engine on this host, root,
# kernel >= 6.9): what only that path has.
#   path         --transport local mounts; the log names the local channel
#                and says passthrough is on
#   data         a 64 MiB file read through the mount equals the container's
#                copy while the satellite does next to no work (the kernel
#                read the container's file itself); writes, an mmap write
#                and a read-only + read-write open of one file reach the
#                container
#   creates      200 files created, written and closed in a new directory
#                wait for the container at most 0.1 times per file
#                (`dockerfuse stats --json`): creates go behind with
#                passthrough too; a 16 MiB file written through its create
#                handle reads back right after a cache drop, through a
#                reopen the kernel serves from the container's file (the
#                satellite carries no data), and a write through that
#                reopen reaches the container; the next file created
#                within 10 s is written by the kernel (its create waited
#                for the container's descriptor)
#   descriptors  300 open/close cycles leave nothing open: the client's
#                descriptor count is unchanged, the satellite holds no open
#                file afterwards
#   pause        docker pause with a passthrough file open: reads on that
#                open file go on (they never reach the satellite); a new
#                open fails with EIO after --op-timeout
#   switches     --no-passthrough and --transport exec work and the log
#                says why passthrough / the local channel is off
#   clean        docker diff shows nothing the tool added
# Environment: DOCKERFUSE, CONTAINER (running, alpine), WORKDIR;
# SATELLITE_ARCH optional.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR
require_tools jq python3
want='' got='' # set by cap

# This scenario names the transport of each mount itself.
DFIT_TRANSPORT=
MNT=$WORKDIR/mnt-local
mkdir -p "$MNT"
diff_before=$(docker diff "$CONTAINER" | sort)
INIT=$(docker inspect -f '{{.State.Pid}}' "$CONTAINER")
PIDNS=$(readlink "/proc/$INIT/ns/pid")

# satellite_pid: host pid of the satellite in $CONTAINER (one).
satellite_pid() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$PIDNS" ] || continue
		tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q 'dockerfuse-satellite' || continue
		echo "${p#/proc/}"
		return 0
	done
	return 1
}
# cpu_ticks PID: user+system clock ticks used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# open_files PID: descriptors of PID that are open files (not O_PATH
# handles, sockets or pipes).
open_files() {
	local fd n=0 flags
	for fd in /proc/"$1"/fd/*; do
		[[ "$(readlink "$fd" 2>/dev/null)" == /* ]] || continue
		flags=$(awk '/^flags:/ { print $2 }' "/proc/$1/fdinfo/${fd##*/}" 2>/dev/null) || continue
		[ -n "$flags" ] || continue
		(((8#$flags & 8#10000000) == 0)) && n=$((n + 1))
	done
	echo "$n"
}
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
drop_caches() { sync && echo 3 >/proc/sys/vm/drop_caches; }

dsh 'mkdir -p /dfit-local && head -c 67108864 /dev/urandom >/dfit-local/big && echo original >/dfit-local/small'
on_exit "$(printf 'docker exec %q rm -rf /dfit-local >/dev/null 2>&1' "$CONTAINER")"

# --- path ---------------------------------------------------------------------------
log "path: --transport local"
mount_daemon "$MNT" --transport local --op-timeout 2 -debug
[ "$DF_STATUS" -eq 0 ] || abort "mount with --transport local (exit $DF_STATUS: $(cat "$DF_OUT"))"
check "the log names the local channel" grep -q 'transport: local channel' "$DF_LOG"
check "the log says passthrough is on" grep -q 'passthrough on' "$DF_LOG"
SAT=$(satellite_pid) || abort "no satellite found in the container"

# --- data ---------------------------------------------------------------------------
log "data: reads and writes through the kernel"
drop_caches
t0=$(cpu_ticks "$SAT")
cap want sha256sum <"/proc/$INIT/root/dfit-local/big"
drop_caches
cap got sha256sum <"$MNT/dfit-local/big"
t1=$(cpu_ticks "$SAT")
assert_eq "64 MiB read through the mount equal the container's file" "$want" "$got"
log "satellite CPU for the 64 MiB read: $((t1 - t0)) ticks"
check "the satellite did not carry the data (<= 5 ticks of CPU)" test "$((t1 - t0))" -le 5
check "a write through the mount" run_sh "echo written >$(printf %q "$MNT")/dfit-local/small"
cap got dx cat /dfit-local/small
assert_eq "the container sees the write" written "$got"
check "an mmap write and a read-only + read-write pair on one file" python3 - "$MNT/dfit-local" <<'PY'
import mmap, os, sys
d = sys.argv[1]
w = os.open(d + "/mm", os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(w, 4096)
m = mmap.mmap(w, 4096)
m[:5] = b"mmap!"
m.flush(); m.close(); os.close(w)
r = os.open(d + "/small", os.O_RDONLY)
rw = os.open(d + "/small", os.O_RDWR)
os.pwrite(rw, b"PAIR", 0)
assert os.pread(r, 4, 0) == b"PAIR", os.pread(r, 4, 0)
os.close(r); os.close(rw)
PY
cap got dx head -c 5 /dfit-local/mm
assert_eq "the container sees the mmap write" 'mmap!' "$got"
cap got dx head -c 4 /dfit-local/small
assert_eq "the container sees the pair's write" PAIR "$got"

# --- creates ----------------------------------------------------------------------------
log "creates: sent behind with passthrough, files reopened through the kernel"
waits() { "$DOCKERFUSE" stats "$MNT" --json | jq .waits; }
op_waits() { "$DOCKERFUSE" stats "$MNT" --json | jq "[.ops[] | select(.op == \"$1\") | .waits] | add // 0"; }
check "a new directory through the mount" mkdir "$MNT/dfit-local/new"
before=$(waits) c_before=$(op_waits CREATE) f_before=$(op_waits FLUSH)
check "200 files created, written and closed" python3 - "$MNT/dfit-local/new" <<'PY'
import os, sys
d = sys.argv[1]
for i in range(200):
    fd = os.open("%s/f%d" % (d, i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"file %d\n" % i)
    os.close(fd)
PY
after=$(waits) c_after=$(op_waits CREATE) f_after=$(op_waits FLUSH)
# close(2) waits for the file's create and writes sent behind, so that
# it can report their error: one FLUSH wait per file, counted as such.
log "creates: $((after - before)) waits for 200 files (creates: $((c_after - c_before)), closes: $((f_after - f_before)))"
check "200 creates wait at most 20 times ($((c_after - c_before)))" test "$((c_after - c_before))" -le 20
check "200 closes wait at most 200 times ($((f_after - f_before)))" test "$((f_after - f_before))" -le 200
cap got dx sh -c 'cat /dfit-local/new/f0 /dfit-local/new/f199; ls /dfit-local/new | wc -l'
assert_eq "the container has the files and their data" $'file 0\nfile 199\n200' "$got"
head -c 16777216 /dev/urandom >"$WORKDIR/created"
cap want sha256sum <"$WORKDIR/created"
check "a 16 MiB file written through its create handle" cp "$WORKDIR/created" "$MNT/dfit-local/new/big"
drop_caches
t0=$(cpu_ticks "$SAT")
cap got sha256sum <"$MNT/dfit-local/new/big"
t1=$(cpu_ticks "$SAT")
assert_eq "the created file reads back through the mount" "$want" "$got"
log "satellite CPU for reading the created file back: $((t1 - t0)) ticks"
check "the reopen is served from the container's file (<= 5 ticks of CPU)" test "$((t1 - t0))" -le 5
cap got sha256sum <"/proc/$INIT/root/dfit-local/new/big"
assert_eq "the container's file has the data" "$want" "$got"
# A file created behind grew large: the next creates wait for the
# container's descriptor and are passed through.
t0=$(cpu_ticks "$SAT") before=$(waits)
check "a second 16 MiB file created right after" cp "$WORKDIR/created" "$MNT/dfit-local/new/big2"
t1=$(cpu_ticks "$SAT") after=$(waits)
log "satellite CPU for writing the second file: $((t1 - t0)) ticks, $((after - before)) waits"
check "the second file's create waited for the container" test "$((after - before))" -ge 1
check "the second file is written by the kernel (<= 5 ticks of CPU)" test "$((t1 - t0))" -le 5
cap got sha256sum <"/proc/$INIT/root/dfit-local/new/big2"
assert_eq "the container's second file has the data" "$want" "$got"
check "a write through a reopen of a created file" python3 - "$MNT/dfit-local/new/f7" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"FILE", 0)
assert os.pread(fd, 7, 0) == b"FILE 7\n", os.pread(fd, 7, 0)
os.close(fd)
PY
cap got dx cat /dfit-local/new/f7
assert_eq "the container sees the write through the reopen" "FILE 7" "$got"
rm -f "$WORKDIR/created"

# --- descriptors ----------------------------------------------------------------------
log "descriptors: 300 open/close cycles"
host_before=$(fd_count "$DF_PID")
check "300 reads and writes" run_sh "for i in \$(seq 300); do cat $(printf %q "$MNT")/dfit-local/small >/dev/null; echo \$i >>$(printf %q "$MNT")/dfit-local/small; done"
check "the client holds no more descriptors than before" wait_until 5 test "$(fd_count "$DF_PID")" -le "$host_before"
check "the satellite holds no open file afterwards" wait_until 5 test "$(open_files "$SAT")" -eq 0

# --- pause ----------------------------------------------------------------------------
log "pause: an open passthrough file keeps reading, a new open fails with EIO"
on_exit "$(printf 'docker unpause %q >/dev/null 2>&1' "$CONTAINER")"
exec 7<"$MNT/dfit-local/big"
docker pause "$CONTAINER" >/dev/null
# (from descriptor 7 itself: opening /dev/fd/7 would be a new open)
check "a read on the already open file goes on during the pause" bash -c 'timeout 5 head -c 1048576 <&7 >/dev/null'
rc=0
timeout -k 2 20 cat "$MNT/etc/hostname" >/dev/null 2>"$WORKDIR/pause.err" || rc=$?
assert_eq "a new open during the pause fails (not a hang)" 1 "$rc"
assert_match "the failure is EIO" "input/output error" "$(cat "$WORKDIR/pause.err")"
docker unpause "$CONTAINER" >/dev/null
exec 7<&-
cap want dx cat /etc/hostname
cap got cat "$MNT/etc/hostname"
assert_eq "after unpause the mount works again" "$want" "$got"
check "fusermount3 -u ends the mount" fusermount3 -u "$MNT"
check "the process exits" wait_until 10 pid_gone "$DF_PID"

# --- switches -------------------------------------------------------------------------
log "switches: --no-passthrough, --transport exec"
mount_daemon "$MNT" --transport local --no-passthrough -debug
[ "$DF_STATUS" -eq 0 ] || abort "mount with --no-passthrough (exit $DF_STATUS: $(cat "$DF_OUT"))"
check "the log says why passthrough is off" grep -q 'passthrough off: --no-passthrough' "$DF_LOG"
SAT=$(satellite_pid) || abort "no satellite found in the container"
drop_caches
t0=$(cpu_ticks "$SAT")
cap got sha256sum <"$MNT/dfit-local/big"
t1=$(cpu_ticks "$SAT")
cap want sha256sum <"/proc/$INIT/root/dfit-local/big"
assert_eq "without passthrough the data is the same" "$want" "$got"
log "satellite CPU for the 64 MiB read without passthrough: $((t1 - t0)) ticks"
check "fusermount3 -u ends the mount" fusermount3 -u "$MNT"
check "the process exits" wait_until 10 pid_gone "$DF_PID"
mount_daemon "$MNT" --transport exec -debug
[ "$DF_STATUS" -eq 0 ] || abort "mount with --transport exec (exit $DF_STATUS: $(cat "$DF_OUT"))"
check "the log names the exec stream and why" grep -q 'exec stream through the engine (no local channel: --transport exec' "$DF_LOG"
cap got cat "$MNT/dfit-local/small"
check "the exec transport reads the same file" test "${got:0:4}" = PAIR
check "fusermount3 -u ends the mount" fusermount3 -u "$MNT"
check "the process exits" wait_until 10 pid_gone "$DF_PID"

# --- clean ----------------------------------------------------------------------------
dx rm -rf /dfit-local
check "no satellite left" wait_until 5 test -z "$(satellite_pid || true)"
diff_after=$(docker diff "$CONTAINER" | sort)
assert_eq "docker diff shows nothing the tool added" "$diff_before" "$diff_after"
finish
