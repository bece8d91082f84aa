#!/usr/bin/env bash
# Real containers, awkward /tmp:
#   --tmpfs /tmp:noexec   (rootfs writable) /tmp is never an upload target
#                         (a tmpfs: the upload would land beneath it); the
#                         satellite is uploaded to /run
#   no /tmp at all        (busybox image without /tmp, /var/tmp, /run, made
#                         by `docker commit` after rm -rf) the upload goes
#                         to /
#   --satellite-dir /tmp on the noexec /tmp: exit 1, "noexec" named
# Each mount reads and writes, unmounts, leaves `docker diff` clean and no
# satellite file.
# Environment: DOCKERFUSE, WORKDIR, CARCH (amd64|arm64); DFIT_LABEL optional.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=SCRIPTDIR/../real-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../real-lib.sh"
require_env DOCKERFUSE WORKDIR CARCH
got='' before=''
MNT=$WORKDIR/mnt-noexec

# --- --tmpfs /tmp:noexec ---------------------------------------------------------------
if real_run "dfreal-noexec-$CARCH-$$" "dockerfuse-test/alpine:$CARCH" --tmpfs /tmp:noexec -- sleep infinity; then
	cap before timeout 30 docker diff "$CONTAINER"
	cap got dsh 'grep " /tmp " /proc/mounts'
	assert_match "/tmp is a noexec tmpfs in the container" 'tmpfs.*noexec' "$got"
	if real_mount "$MNT"; then
		real_started_by "upload to /run"
		real_rw "$MNT" /tmp
		real_unmount "$MNT"
	fi
	real_expect_error "--satellite-dir /tmp (noexec)" "$MNT" --satellite-dir /tmp
	assert_match "the message says /tmp is a tmpfs, not an upload target" 'upload to /tmp: not tried, /tmp is a tmpfs mount' "$REAL_ERR"
	assert_match "the message says /tmp is noexec" '/tmp is mounted noexec' "$REAL_ERR"
	real_no_satellite_left
	real_diff_clean "$before"
fi

# --- no /tmp at all ---------------------------------------------------------------------
if IMG=$(real_image notmp "$CARCH"); then
	if real_run "dfreal-notmp-$CARCH-$$" "$IMG" -- sleep 1000000000; then
		cap before timeout 30 docker diff "$CONTAINER"
		check_not "the container has no /tmp" dx test -e /tmp
		if real_mount "$MNT"; then
			real_started_by "upload to /"
			check_not "no /tmp through the mount either" test -e "$MNT/tmp"
			real_rw "$MNT" /root
			real_unmount "$MNT"
		fi
		real_diff_clean "$before"
	fi
else
	fail "build the image without /tmp for $CARCH"
fi
finish
