#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check/cap
# Arch scenario: the core checks, kept short (most arches run under
# qemu-user), on ONE running busybox container of another architecture,
# mounted with --allow-other: listing, read, write both ways, rename, hard
# link, an O_DIRECT open that reads right (its flag numbers differ between
# x86 and arm/powerpc: the host's must reach the satellite as its own), a
# host caller with a uid and supplementary groups above 65535 (group
# rights, the owner of what it creates: the 32-bit satellites' identity
# calls), 16 MiB sha256 both ways, unmount, `docker diff` clean, no file
# or process left.
#
# Environment:
#   DOCKERFUSE      the dockerfuse binary
#   CONTAINER       name of a running busybox container
#   SATELLITE_ARCH  the satellite to force (--satellite-arch); empty: let
#                   dockerfuse choose, and then MISSING_ARCH must be set
#   MISSING_ARCH    (with an empty SATELLITE_ARCH) the arch this build has
#                   no satellite for: forcing it must fail with a message
#                   saying so, and the automatic choice must still mount
#   WORKDIR         scratch directory on the host
#   DFIT_BIG_MIB    size of the big file each way (default 16)
# Prints one result line per assertion and "N passed, N failed".
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR
want='' got='' i1='' i2='' running='' leftovers='' started='' # set by cap

BIG_MIB=${DFIT_BIG_MIB:-16}
BIG_TIMEOUT=${DFIT_BIG_TIMEOUT:-300}
# The caller must reach the mount point: WORKDIR's parents may be 0700.
MNT_BASE=$(mktemp -d "${TMPDIR:-/tmp}/dfit-arch-mnt.XXXXXX")
chmod 755 "$MNT_BASE"
on_exit "$(printf 'rmdir %q/mnt-arch %q' "$MNT_BASE" "$MNT_BASE")"
MNT=$MNT_BASE/mnt-arch
# A host caller whose ids do not fit 16 bits, in two groups that do not
# either (and not in a third).
U=200000 G=200000 GROUPS_OF_U=200001,200002 OTHER_GROUP=200003
T=/tmp/dfit-arch-$$
H=$MNT$T
export MNT T H CONTAINER WORKDIR
mkdir -p "$MNT"

hsha() { timeout -k 5 "$BIG_TIMEOUT" sha256sum "$1" | cut -d' ' -f1; }
csha() { DFIT_OP_TIMEOUT=$BIG_TIMEOUT dx sha256sum "$1" | cut -d' ' -f1; }
hls() { timeout -k 5 "$DFIT_OP_TIMEOUT" ls -A1 "$1" | LC_ALL=C sort; }
cls() { dx ls -A1 "$1" | LC_ALL=C sort; }
ctr_absent() { dx sh -c "! test -e '$1' && ! test -L '$1'"; }
ctr_extra_procs() { timeout 20 docker top "$CONTAINER" | tail -n +3; }
as_user() { timeout -k 5 "$DFIT_OP_TIMEOUT" setpriv --reuid="$U" --regid="$G" --groups="$GROUPS_OF_U" "$@"; }
# direct_open FILE: opens FILE with O_DIRECT and prints its size.
direct_open() {
	timeout -k 5 "$DFIT_OP_TIMEOUT" python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
print(os.fstat(fd).st_size)
os.close(fd)' "$1"
}
no_extra_procs() { [ -z "$(ctr_extra_procs)" ]; }

# --- preconditions ---------------------------------------------------------------
cap running docker inspect -f '{{.State.Running}}' "$CONTAINER"
[ "$running" = true ] || abort "container $CONTAINER is not running ($running)"
image=$(docker inspect -f '{{.Config.Image}}' "$CONTAINER")
log "container $CONTAINER ($image, $(docker image inspect -f '{{.Architecture}}{{with .Variant}}/{{.}}{{end}}' "$image")), satellite ${SATELLITE_ARCH:-chosen by dockerfuse}, mount $MNT"
cap DIFF_BEFORE docker diff "$CONTAINER"
on_exit "$(printf 'dx rm -rf %q >/dev/null 2>&1' "$T")"
check "test directory $T created in the container" dx mkdir -p "$T"

if [ -z "${SATELLITE_ARCH:-}" ]; then
	[ -n "${MISSING_ARCH:-}" ] || abort "set SATELLITE_ARCH or MISSING_ARCH"
	SATELLITE_ARCH=$MISSING_ARCH mount_daemon "$MNT"
	assert_eq "forcing the $MISSING_ARCH satellite this build lacks fails with status 1" 1 "$DF_STATUS"
	cap got run_sh "cat '$DF_OUT' '$DF_LOG' 2>/dev/null || true"
	assert_match "and says this dockerfuse has no $MISSING_ARCH satellite" "no $MISSING_ARCH satellite" "$got"
	check "and nothing is mounted" not_mounted "$MNT"
fi

# --- mount -------------------------------------------------------------------------
mount_daemon "$MNT" --debug --allow-other
if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
	fail "dockerfuse -daemonize --allow-other mounts (status $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	show_file "dockerfuse log" "$DF_LOG"
	stop_here
fi
pass "dockerfuse -daemonize --allow-other mounts"
cap started run_sh "grep -o 'satellite started.*' '$DF_LOG' | head -n 1"
log "$started"
if [ -n "${SATELLITE_ARCH:-}" ]; then
	assert_match "the forced satellite started" "arch=$SATELLITE_ARCH " "$started"
else
	assert_match "a satellite was chosen and started" "arch=" "$started"
fi

# --- reading ---------------------------------------------------------------------
for d in / /bin /etc; do
	cap want cls "$d"
	cap got hls "$MNT$d"
	assert_eq "names in $d match the container's" "$want" "$got"
done
cap want dx stat -c '%s %a %u %g %Y %h' /bin/busybox
cap got stat -c '%s %a %u %g %Y %h' "$MNT/bin/busybox"
assert_eq "stat /bin/busybox" "$want" "$got"
for p in /etc/passwd /bin/busybox; do
	cap want csha "$p"
	cap got hsha "$MNT$p"
	assert_eq "content of $p (sha256)" "$want" "$got"
done

# --- writing, rename, hard link ----------------------------------------------------
check "write a file through the mount" run_sh 'printf "from-host\n" >"$H/w1"'
cap got dx cat "$T/w1"
assert_eq "the container reads what the host wrote" from-host "$got"
check "write a file in the container" dsh "printf 'from-container\n' >$T/w2"
cap got cat "$H/w2"
assert_eq "the mount reads what the container wrote" from-container "$got"
check "mv w1 w3" mv "$H/w1" "$H/w3"
check "container: w1 gone after mv" ctr_absent "$T/w1"
cap got dx cat "$T/w3"
assert_eq "container: w3 holds w1's content" from-host "$got"
check "ln w3 w4 (hard link)" ln "$H/w3" "$H/w4"
cap i1 dx stat -c %i "$T/w3"
cap i2 dx stat -c %i "$T/w4"
assert_eq "container: w3 and w4 are one inode" "$i1" "$i2"
cap got stat -c %h "$H/w3"
assert_eq "mount: nlink of w3 is 2" 2 "$got"

# --- O_DIRECT ------------------------------------------------------------------------
# (x86's O_DIRECT is O_DIRECTORY on arm and powerpc: a flag sent in the
# host's numbers made this open fail with ENOTDIR there. Reads and
# writes with O_DIRECT are not checked here.)
check "container: 8 KiB of random data" dx dd if=/dev/urandom of="$T/direct" bs=4096 count=2
cap got direct_open "$H/direct"
assert_eq "an O_DIRECT open of a regular file through the mount works" 8192 "$got"

# --- a caller with ids above 65535 -----------------------------------------------------
check "container: a directory everyone may write, a file only group $((U + 1)) may read" \
	dsh "mkdir $T/ids && chmod 777 $T/ids && echo group-read >$T/ids/g && chown 0:$((U + 1)) $T/ids/g && chmod 640 $T/ids/g && echo other >$T/ids/o && chown 0:$OTHER_GROUP $T/ids/o && chmod 640 $T/ids/o"
cap got as_user cat "$H/ids/g"
assert_eq "uid $U reads a file through its supplementary group $((U + 1))" group-read "$got"
check_not "but not one of group $OTHER_GROUP, which it is not in" as_user cat "$H/ids/o"
check "uid $U creates a file" as_user sh -c "echo mine >'$H/ids/made'"
cap got dx stat -c '%u %g' "$T/ids/made"
assert_eq "container: the file is uid $U's, gid $G's" "$U $G" "$got"
check "uid $U gives it to its group $((U + 2))" as_user chgrp "$((U + 2))" "$H/ids/made"
cap got dx stat -c '%g' "$T/ids/made"
assert_eq "container: the file's group is $((U + 2))" "$((U + 2))" "$got"
check_not "but not to group $OTHER_GROUP" as_user chgrp "$OTHER_GROUP" "$H/ids/made"

# --- big file both ways --------------------------------------------------------------
check "make $BIG_MIB MiB of random data on the host" run_sh "head -c ${BIG_MIB}M /dev/urandom >'$WORKDIR/big.src'"
want=$(sha256sum "$WORKDIR/big.src" | cut -d' ' -f1)
DFIT_OP_TIMEOUT=$BIG_TIMEOUT check "cp $BIG_MIB MiB into the mount" cp "$WORKDIR/big.src" "$H/big1"
rm -f "$WORKDIR/big.src"
cap got csha "$T/big1"
assert_eq "container: sha256 of the $BIG_MIB MiB copied in" "$want" "$got"
DFIT_OP_TIMEOUT=$BIG_TIMEOUT check "container: dd $BIG_MIB MiB from /dev/urandom" \
	dx dd if=/dev/urandom of="$T/big2" bs=1048576 count="$BIG_MIB"
cap want csha "$T/big2"
cap got hsha "$H/big2"
assert_eq "mount: sha256 of the $BIG_MIB MiB the container wrote" "$want" "$got"
check "rm -rf the test directory through the mount" rm -rf "$H"
check "container: test directory gone" ctr_absent "$T"

# --- unmount, nothing left -----------------------------------------------------------
check "fusermount3 -u" fusermount3 -u "$MNT"
check "dockerfuse (pid $DF_PID) exits within 5 s of the unmount" wait_until 5 pid_gone "$DF_PID"
check "$MNT is no longer in /proc/mounts" not_mounted "$MNT"
check_not "the log reports no panic" grep -qi panic "$DF_LOG"
check "no process left in the container besides its init (within 5 s)" wait_until 5 no_extra_procs
cap leftovers dsh 'for d in / /tmp /dev/shm /run /var/tmp; do [ -d "$d" ] && find "$d" -xdev -iname "*dockerfuse*"; done | sort -u'
assert_eq "no *dockerfuse* file anywhere in the container" "" "$leftovers"
cap DIFF_AFTER docker diff "$CONTAINER"
new=$(comm -13 <(printf '%s\n' "$DIFF_BEFORE" | LC_ALL=C sort) <(printf '%s\n' "$DIFF_AFTER" | LC_ALL=C sort) |
	grep -Ev '^[ACD] /tmp/dfit-|^C (/tmp|/run|/var|/var/tmp|/dev|/dev/shm)$|^$' || true)
assert_eq "docker diff: nothing added or changed by dockerfuse" "" "$new"

finish
