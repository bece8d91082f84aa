#!/usr/bin/env bash
# Real containers, read-only rootfs (`docker run --read-only`): the archive
# upload is refused everywhere, so the satellite is written through the
# container's shell into a tmpfs.
#   --read-only --tmpfs /tmp      /tmp is noexec (Docker's default for
#                                 --tmpfs): the satellite lands in /dev
#   --read-only --tmpfs /run:exec it lands in /run (busybox image)
#   --read-only, dockerfuse --user 1000:1000: no writable place that allows
#                                 execution: exit 1, every place named
#   --read-only distroless (no shell): exit 1, "no shell" and a hint
# Each mount reads and writes (in the tmpfs), refuses writes elsewhere
# (EROFS), unmounts, and leaves `docker diff` clean and no satellite file.
# Environment: DOCKERFUSE, WORKDIR, CARCH (amd64|arm64); DFIT_LABEL optional.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=SCRIPTDIR/../real-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../real-lib.sh"
require_env DOCKERFUSE WORKDIR CARCH
got='' before=''
MNT=$WORKDIR/mnt-ro

# --- --read-only --tmpfs /tmp (noexec) -------------------------------------------------
if real_run "dfreal-ro-tmp-$CARCH-$$" "dockerfuse-test/alpine:$CARCH" --read-only --tmpfs /tmp -- sleep infinity; then
	cap before timeout 30 docker diff "$CONTAINER"
	if real_mount "$MNT"; then
		real_started_by "write to /dev through /bin/sh"
		cap got cat "$MNT/etc/alpine-release"
		assert_match "reads /etc/alpine-release" '^3\.' "$got"
		real_rw "$MNT" /tmp
		check_not "writing to the read-only rootfs fails" touch "$MNT/etc/dfreal-x"
		real_unmount "$MNT"
	fi
	real_diff_clean "$before"
fi

# --- --read-only --tmpfs /run:exec, busybox ---------------------------------------------
if real_run "dfreal-ro-run-$CARCH-$$" "dockerfuse-test/busybox:$CARCH" --read-only --tmpfs /run:exec -- sleep 1000000000; then
	cap before timeout 30 docker diff "$CONTAINER"
	if real_mount "$MNT"; then
		real_started_by "write to /run through /bin/sh"
		real_rw "$MNT" /run
		real_unmount "$MNT"
	fi
	real_diff_clean "$before"
fi

# --- --read-only, satellite as uid 1000: nowhere to go -----------------------------------
if real_run "dfreal-ro-none-$CARCH-$$" "dockerfuse-test/alpine:$CARCH" --read-only -- sleep infinity; then
	cap before timeout 30 docker diff "$CONTAINER"
	real_expect_error "read-only, --user 1000:1000" "$MNT" --user 1000:1000
	for p in "upload to /tmp" "upload to /run" "upload to /var/tmp" "upload to /:" "/dev/shm through /bin/sh" "/dev through /bin/sh"; do
		assert_match "the message names: $p" "$p" "$REAL_ERR"
	done
	assert_match "the message says read-only" 'read-only' "$REAL_ERR"
	assert_match "the message says noexec for /dev/shm" '/dev/shm is mounted noexec' "$REAL_ERR"
	assert_match "the message says permission denied for /dev" "/dev/\\.dockerfuse-satellite.*permission denied" "$REAL_ERR"
	real_no_satellite_left
	real_diff_clean "$before"
fi

# --- --read-only distroless: no shell either ---------------------------------------------
if IMG=$(real_image distroless "$CARCH"); then
	if real_run "dfreal-ro-distroless-$CARCH-$$" "$IMG" --read-only -- /sleep 1000000000; then
		real_expect_error "read-only, no shell" "$MNT"
		assert_match "the message says there is no shell" 'no shell' "$REAL_ERR"
		assert_match "the message names the uploads tried" 'upload to /tmp.*' "$REAL_ERR"
		assert_match "the message gives a hint" 'read-only: give it a writable place' "$REAL_ERR"
		real_no_satellite_left
		cap got timeout 30 docker diff "$CONTAINER"
		assert_eq "docker diff is empty" "" "$got"
	fi
else
	fail "build the distroless image for $CARCH"
fi
finish
