#!/usr/bin/env bash
# Real containers, distroless: an image made of one static binary
# (/bin/busybox) and a symlink /sleep -> /bin/busybox that keeps it running.
# No /bin/sh, no /etc, /tmp, /run or /var in the image. The satellite is
# uploaded to / (the only directory there), runs, removes itself; the mount
# reads the binary and the symlink, writes a file the container reads back
# (through `docker exec ... /bin/busybox`), unmounts, and `docker diff` is
# clean.
# Environment: DOCKERFUSE, WORKDIR, CARCH (amd64|arm64); DFIT_LABEL optional.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=SCRIPTDIR/../real-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../real-lib.sh"
require_env DOCKERFUSE WORKDIR CARCH
got='' before='' want=''
MNT=$WORKDIR/mnt-distroless

IMG=$(real_image distroless "$CARCH") || abort "build the distroless image for $CARCH"
real_run "dfreal-distroless-$CARCH-$$" "$IMG" -- /sleep 1000000000 || stop_here
cap before timeout 30 docker diff "$CONTAINER"
check_not "the container has no /bin/sh" timeout 30 docker exec "$CONTAINER" /bin/sh -c true
if real_mount "$MNT"; then
	real_started_by "upload to /"
	cap got readlink "$MNT/sleep"
	assert_eq "/sleep is a symlink to /bin/busybox" /bin/busybox "$got"
	cap want sh -c "docker cp $CONTAINER:/bin/busybox - | tar -xOf - | sha256sum"
	cap got sh -c "sha256sum <'$MNT/bin/busybox'"
	assert_eq "/bin/busybox reads the same as docker cp gives" "$want" "$got"
	check_not "no /etc/passwd in the image" test -e "$MNT/etc/passwd"
	real_rw "$MNT" ""
	real_unmount "$MNT"
fi
real_diff_clean "$before"
finish
