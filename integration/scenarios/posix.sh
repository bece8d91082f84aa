#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check
# POSIX scenario: the parts of docs/SEMANTICS.md that the differential test
# cannot check one operation at a time.
#   - identity: with --allow-other, a host user's request is performed as
#     that user in the container (owner of new files, permission refusals);
#   - st_ino unique across the container's mounts (/, /proc, /sys, /dev...);
#   - statfs answers for the filesystem the path is on;
#   - nanosecond timestamps survive a round trip;
#   - O_APPEND from two concurrent writers loses nothing;
#   - flock and POSIX locks exclude each other between host processes
#     (they are local to the host kernel, not forwarded);
#   - a 100,000-entry directory lists completely (more nodes than the
#     container lets the satellite hold descriptors), also while entries
#     are added and removed during the listing.
#
# Environment (required): DOCKERFUSE, CONTAINER, SATELLITE_ARCH, WORKDIR.
# Runs as root (setpriv for the other user, /proc/<pid>/root for the big
# directory). Writes only below /tmp/dfit-posix-<pid> in the container.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER SATELLITE_ARCH WORKDIR
running='' cpid='' got='' want='' # set by cap

# The other user must reach the mount point: WORKDIR's parents may be 0700,
# so it lives in a directory of its own (removed at the end).
MNT_BASE=$(mktemp -d "${TMPDIR:-/tmp}/dfit-posix-mnt.XXXXXX")
chmod 755 "$MNT_BASE"
on_exit "$(printf 'rmdir %q/mnt %q' "$MNT_BASE" "$MNT_BASE")"
MNT=$MNT_BASE/mnt
T=/tmp/dfit-posix-$$
H=$MNT$T
OTHER=4321 # a host uid/gid that is nobody in particular
export MNT T H OTHER CONTAINER
mkdir -p "$MNT"

[ "$(id -u)" -eq 0 ] || abort "must run as root"
require_tools setpriv flock python3
cap running docker inspect -f '{{.State.Running}}' "$CONTAINER"
[ "$running" = true ] || abort "container $CONTAINER is not running ($running)"
cap cpid docker inspect -f '{{.State.Pid}}' "$CONTAINER"
D=/proc/$cpid/root$T # the same directory, directly
export D
log "container $CONTAINER, satellite $SATELLITE_ARCH"

on_exit "$(printf 'dx rm -rf %q >/dev/null 2>&1' "$T")"
check "test directory created in the container" dx sh -c "mkdir -p $T/pub && chmod 1777 $T/pub && echo s >$T/secret && chmod 600 $T/secret"

mount_daemon "$MNT" --allow-other
if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
	fail "dockerfuse -daemonize --allow-other mounts (exit $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	show_file "dockerfuse log" "$DF_LOG"
	stop_here
fi
pass "dockerfuse -daemonize --allow-other mounts"
as_other() { timeout -k 5 "$DFIT_OP_TIMEOUT" setpriv --reuid="$OTHER" --regid="$OTHER" --clear-groups "$@"; }

# --- identity --------------------------------------------------------------------------
check "another host user creates a file and a directory" as_other sh -c 'echo hi >"$H/pub/mine" && mkdir "$H/pub/mydir"'
cap got dx stat -c '%u:%g %n' "$T/pub/mine" "$T/pub/mydir"
assert_eq "the container sees that user as their owner" "$OTHER:$OTHER $T/pub/mine"$'\n'"$OTHER:$OTHER $T/pub/mydir" "$got"
check_not "that user cannot read root's 0600 file" as_other cat "$H/secret"
check_not "that user cannot chown their file to root" as_other chown 0 "$H/pub/mine"
check "root's file in the sticky directory" dx touch "$T/pub/roots"
check_not "that user cannot remove root's file from a sticky directory" as_other rm -f "$H/pub/roots"
check "root (the mounting user) still reads it" cat "$H/secret"
check "root's new files are root's" run_sh 'echo r >"$H/pub/rootfile" && test "$(docker exec "$CONTAINER" stat -c %u:%g "$T/pub/rootfile")" = 0:0'

# --- inode numbers and statfs ----------------------------------------------------------------
cap got run_sh 'stat -c %i "$MNT/" "$MNT/proc" "$MNT/sys" "$MNT/dev" "$MNT/dev/shm" "$MNT/etc" | sort -u | wc -l'
assert_eq "st_ino unique across the container's mounts (6 paths, 6 numbers)" 6 "$got"
check "hard links share st_ino and count nlink" run_sh '
	echo x >"$H/h1" && ln "$H/h1" "$H/h2" && ln "$H/h1" "$H/h3"
	test "$(stat -c %i "$H/h1")" = "$(stat -c %i "$H/h3")"
	test "$(stat -c %h "$H/h2")" = 3 && rm "$H/h3" && test "$(stat -c %h "$H/h1")" = 2'
for p in / /dev/shm; do
	cap want dx stat -f -c '%b %S %c' "$p"
	cap got stat -f -c '%b %S %c' "$MNT$p"
	assert_eq "statfs of $p (blocks, block size, inodes) is that filesystem's" "$want" "$got"
done

# --- timestamps -----------------------------------------------------------------------------
check "touch with nanoseconds through the mount" touch -m -d '2003-04-05 06:07:08.123456789' "$H/h1"
cap got dx stat -c %y "$T/h1"
assert_match "the container sees the nanoseconds" '^2003-04-05 06:07:08\.123456789' "$got"
check "touch -a leaves mtime alone (UTIME_OMIT)" run_sh 'touch -a -d "2001-01-01" "$H/h1" && stat -c %y "$H/h1" | grep -q "^2003-04-05 06:07:08.123456789"'

# --- O_APPEND with concurrent writers -----------------------------------------------------------
check "two concurrent appenders (2 x 300 lines)" run_sh '
	for w in A B; do (for i in $(seq 1 300); do echo "$w $i" >>"$H/log"; done) & done; wait'
cap got dx sh -c "wc -l <$T/log; grep -c '^A ' $T/log; grep -c '^B ' $T/log"
assert_eq "no line lost or overwritten" $'600\n300\n300' "$got"

# --- locks (local to the host) ------------------------------------------------------------------
check "flock: a second holder is refused while the first holds it" run_sh '
	touch "$H/lock"
	flock "$H/lock" sleep 3 & sleep 1
	! flock -n "$H/lock" true; wait'
check "POSIX locks: a second process cannot lock a locked range" python3 -c '
import fcntl, os, subprocess, sys, time
p = os.environ["H"] + "/lock"
fd = os.open(p, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
code = "import fcntl,os,sys\nfd=os.open(sys.argv[1],os.O_RDWR)\ntry:\n fcntl.lockf(fd,fcntl.LOCK_EX|fcntl.LOCK_NB,10,0)\nexcept OSError:\n sys.exit(7)\n"
r = subprocess.run([sys.executable, "-c", code, p])
assert r.returncode == 7, r.returncode
r = subprocess.run([sys.executable, "-c", code.replace(",10,0)", ",10,20)"), p])
assert r.returncode == 0, "a disjoint range is free"
'

# --- a 100,000-entry directory ---------------------------------------------------------------
check "100,000 entries created (directly)" python3 -c '
import os
d = os.environ["D"] + "/big"
os.mkdir(d)
for i in range(100000):
    os.close(os.open(f"{d}/f{i:06}", os.O_CREAT | os.O_WRONLY, 0o644))
'
cap got run_sh 'ls -f "$H/big" | wc -l'
assert_eq "ls -f through the mount lists all of them (and . ..)" 100002 "$got"
check "listing while entries are added and removed: each stable entry exactly once" python3 -c '
import os, collections
m, d = os.environ["H"] + "/big", os.environ["D"] + "/big"
seen = collections.Counter()
removed = set()
with os.scandir(m) as it:
    for n, e in enumerate(it):
        seen[e.name] += 1
        if n % 1000 == 0:
            open(f"{d}/new{n:06}", "w").close()
            v = f"f{(n * 7919) % 100000:06}"
            try:
                os.unlink(f"{d}/{v}")
                removed.add(v)
            except FileNotFoundError:
                pass
dups = [k for k, c in seen.items() if c > 1]
assert not dups, f"listed twice: {dups[:5]}"
missing = [f"f{i:06}" for i in range(100000) if f"f{i:06}" not in seen and f"f{i:06}" not in removed]
assert not missing, f"never listed: {missing[:5]} ({len(missing)})"
print(len(seen), "listed,", len(removed), "removed during the listing")
'

check "fusermount3 -u" fusermount3 -u "$MNT"
check "dockerfuse exits after the unmount" wait_until 20 pid_gone "$DF_PID"
finish
