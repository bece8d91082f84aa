#!/usr/bin/env bash
# Real containers, restricted: `--cap-drop ALL`, and `--security-opt
# no-new-privileges`. The satellite (root, no capabilities in the first)
# starts, the mount reads and writes in /tmp, unmounts, and `docker diff` is
# clean. Without CAP_CHOWN a chown through the mount fails cleanly (EPERM).
# Environment: DOCKERFUSE, WORKDIR, CARCH (amd64|arm64); DFIT_LABEL optional.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=SCRIPTDIR/../real-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../real-lib.sh"
require_env DOCKERFUSE WORKDIR CARCH
got='' before=''
MNT=$WORKDIR/mnt-caps

for opts in "--cap-drop ALL" "--security-opt no-new-privileges"; do
	name=dfreal-caps-$CARCH-$$
	[ "$opts" = "--cap-drop ALL" ] || name=dfreal-nnp-$CARCH-$$
	# shellcheck disable=SC2086 # two words on purpose
	real_run "$name" "dockerfuse-test/alpine:$CARCH" $opts -- sleep infinity || continue
	cap before timeout 30 docker diff "$CONTAINER"
	if real_mount "$MNT"; then
		cap got head -n 1 "$MNT/etc/passwd"
		assert_match "reads /etc/passwd" '^root:' "$got"
		real_rw "$MNT" /tmp
		if [ "$opts" = "--cap-drop ALL" ]; then
			f=/tmp/dfreal-chown-$$
			check "the mount creates $f" touch "$MNT$f"
			check_not "chown through the mount fails without CAP_CHOWN" chown 1000 "$MNT$f"
			check "the mount removes $f" rm -f "$MNT$f"
		fi
		real_unmount "$MNT"
	fi
	real_diff_clean "$before"
done
finish
