#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check
# Real containers, non-root: a container whose processes run as uid 1000
# (`docker run --user 1000:1000`). dockerfuse still mounts it (its
# satellite runs as root by default, exec User "0"), and shows ownership as
# the container has it: a file uid 1000 made shows 1000 through the mount,
# one written through the mount by the root satellite is root's. Then the
# same container with `dockerfuse --user 1000:1000`: what it writes is
# uid 1000's, root-only files stay closed, and the satellite (uploaded as
# 1000:1000 into the sticky /tmp) still removes its own file; the same
# with `--user nobody` (a name: the upload's owner comes from the
# container's /etc/passwd). `docker diff` is clean at the end.
# Environment: DOCKERFUSE, WORKDIR, CARCH (amd64|arm64); DFIT_LABEL optional.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=SCRIPTDIR/../real-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../real-lib.sh"
require_env DOCKERFUSE WORKDIR CARCH
got='' before=''

real_run "dfreal-user-$CARCH-$$" "dockerfuse-test/alpine:$CARCH" --user 1000:1000 -- sleep infinity || stop_here
MNT=$WORKDIR/mnt-user
D=/tmp/dfreal-user-$$
cap before timeout 30 docker diff "$CONTAINER"
cap got dx id -u
assert_eq "the container's processes run as uid 1000" 1000 "$got"
check "uid 1000 makes $D/mine in the container" dsh "mkdir $D && echo mine >$D/mine"
on_exit "$(printf 'docker exec -u 0 %q rm -rf %q >/dev/null 2>&1' "$CONTAINER" "$D")"

# --- default: the satellite runs as root ------------------------------------------
if real_mount "$MNT"; then
	cap got stat -c %u:%g "$MNT$D/mine"
	assert_eq "uid 1000's file shows 1000:1000 through the mount" 1000:1000 "$got"
	cap got stat -c %u:%g "$MNT$D"
	assert_eq "uid 1000's directory shows 1000:1000" 1000:1000 "$got"
	cap got cat "$MNT$D/mine"
	assert_eq "its content reads through the mount" mine "$got"
	cap got stat -c %u:%a "$MNT/etc/shadow"
	assert_eq "/etc/shadow shows root's and 640" 0:640 "$got"
	check "the root satellite reads /etc/shadow" head -c 1 "$MNT/etc/shadow"
	check "the mount writes $D/byroot" run_sh "echo r >'$MNT$D/byroot'"
	cap got dx stat -c %u "$D/byroot"
	assert_eq "the container sees it owned by root" 0 "$got"
	real_rw "$MNT" /tmp
	real_unmount "$MNT"
fi

# --- dockerfuse --user 1000:1000 ---------------------------------------------------
if real_mount "$MNT" --user 1000:1000; then
	check "the mount writes $D/by1000" run_sh "echo u >'$MNT$D/by1000'"
	cap got dx stat -c %u:%g "$D/by1000"
	assert_eq "the container sees it owned by 1000:1000" 1000:1000 "$got"
	check_not "uid 1000 cannot read /etc/shadow through the mount" cat "$MNT/etc/shadow"
	check_not "uid 1000 cannot create files in /etc through the mount" touch "$MNT/etc/dfreal-x"
	cap got stat -c %u "$MNT$D/byroot"
	assert_eq "root's file still shows root" 0 "$got"
	real_rw "$MNT" /tmp
	real_unmount "$MNT"
fi

# --- dockerfuse --user nobody: a name, looked up in the container's /etc/passwd -----
if real_mount "$MNT" --user nobody; then
	check "the mount writes /tmp/dfreal-nobody-$$" run_sh "echo n >'$MNT/tmp/dfreal-nobody-$$'"
	cap got dx stat -c %u "/tmp/dfreal-nobody-$$"
	assert_eq "the container sees it owned by nobody (65534)" 65534 "$got"
	check "the mount removes it" rm -f "$MNT/tmp/dfreal-nobody-$$"
	# (the satellite, uploaded as 65534, could remove itself from the sticky /tmp)
	real_unmount "$MNT"
fi

check "remove $D" docker exec -u 0 "$CONTAINER" rm -rf "$D"
real_diff_clean "$before"
finish
