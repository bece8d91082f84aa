#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check/cap
# Arch scenario: the core checks, kept short (most arches run under
# qemu-user), on ONE running busybox container of another architecture:
# listing, read, write both ways, rename, hard link, 16 MiB sha256 both
# ways, unmount, `docker diff` clean, no file or process left.
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
MNT=$WORKDIR/mnt-arch
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
mount_daemon "$MNT" --debug
if [ "$DF_STATUS" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
	fail "dockerfuse -daemonize mounts (status $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	show_file "dockerfuse log" "$DF_LOG"
	stop_here
fi
pass "dockerfuse -daemonize mounts"
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
