#!/usr/bin/env bash
# mount(8) scenario: `mount -t fuse.dockerfuse CONTAINER:PATH DIR -o ...`
# and an /etc/fstab-style line, through util-linux mount and fuse3's
# mount.fuse3, which runs `dockerfuse` from its default PATH: the scenario
# links /usr/local/sbin/dockerfuse to the binary under test (putting back
# whatever was there on exit). Checks: mount returns once mounted, ro and
# allow_other take effect (another user reads), generic options (_netdev,
# nofail, x-systemd.requires=...) are ignored, umount ends the process
# cleanly; an fstab line (systemd-fstab-generator turns it into a unit that
# requires docker.service; `mount -T FILE DIR` mounts it); a bad option and
# an unknown container fail mount(8) with dockerfuse's message; with -o
# foreground the process stays and exits 0 on umount.
# Environment: DOCKERFUSE, CONTAINER (running alpine), WORKDIR; needs root.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR

# A mount point other users can reach (for allow_other).
BASE=$(mktemp -d "${TMPDIR:-/tmp}/dfit-helper.XXXXXX")
chmod 0755 "$BASE"
on_exit "$(printf 'rm -rf --one-file-system %q' "$BASE")"
MNT=$BASE/mnt
mkdir -p "$MNT"
on_exit "$(printf 'dfit_unmount %q %q' "$MNT" "$WORKDIR/helper.pid")"

LINK=/usr/local/sbin/dockerfuse
if [ -e "$LINK" ] || [ -L "$LINK" ]; then
	mv "$LINK" "$WORKDIR/previous-dockerfuse"
	on_exit "$(printf 'mv -f %q %q' "$WORKDIR/previous-dockerfuse" "$LINK")"
fi
on_exit "$(printf 'rm -f %q' "$LINK")"
mkdir -p /usr/local/sbin
ln -s "$DOCKERFUSE" "$LINK"
ALPINE_RELEASE=$(dx cat /etc/alpine-release)

fstype() { findmnt -n -o FSTYPE --mountpoint "$1"; }
fsopts() { findmnt -n -o OPTIONS --mountpoint "$1"; }

# --- mount -t ----------------------------------------------------------------------
rm -f "$WORKDIR/helper.pid" "$WORKDIR/helper.log"
check "mount -t fuse.dockerfuse $CONTAINER:/etc -o ro,allow_other,_netdev,nofail,x-systemd.requires=docker.service" \
	timeout -k 5 "$DFIT_MOUNT_TIMEOUT" mount -t fuse.dockerfuse "$CONTAINER:/etc" "$MNT" \
	-o "ro,allow_other,_netdev,nofail,x-systemd.requires=docker.service,ttl=0,pid_file=$WORKDIR/helper.pid,log_file=$WORKDIR/helper.log"
check "mount returned with the mount in place" is_fuse_mounted "$MNT"
PID=$(cat "$WORKDIR/helper.pid" 2>/dev/null || true)
check "the serving process runs in the background" pid_alive "$PID"
assert_match "filesystem type fuse.dockerfuse" '^fuse\.dockerfuse$' "$(fstype "$MNT")"
assert_match "mounted read-only, nosuid, nodev" '^ro,.*nosuid.*nodev' "$(fsopts "$MNT")"
assert_eq "reads /etc/alpine-release of the container" "$ALPINE_RELEASE" "$(run_sh "cat '$MNT/alpine-release'")"
check_not "ro: writing fails" run_sh "echo x >'$MNT/dfit-helper' 2>/dev/null"
cap OTHER setpriv --reuid=nobody --regid=nogroup --clear-groups cat "$MNT/alpine-release"
assert_eq "allow_other: nobody reads through the mount" "$ALPINE_RELEASE" "$OTHER"
check "umount $MNT" timeout 10 umount "$MNT"
check "the serving process exits" wait_until 10 pid_gone "$PID"
check "nothing left mounted" not_mounted "$MNT"
assert_match "its log says it unmounted" 'unmounted' "$(cat "$WORKDIR/helper.log")"
check_not "its log has no error" grep -Eq 'ERROR|WARN' "$WORKDIR/helper.log"

# --- an fstab line -------------------------------------------------------------------
FSTAB=$WORKDIR/fstab
printf '%s %s fuse.dockerfuse noauto,nofail,_netdev,x-systemd.requires=docker.service,ttl=2,pid_file=%s 0 0\n' \
	"$CONTAINER:/" "$MNT" "$WORKDIR/helper.pid" >"$FSTAB"
GEN=$WORKDIR/generator
mkdir -p "$GEN"
check "systemd-fstab-generator accepts the line" \
	env SYSTEMD_FSTAB="$FSTAB" /lib/systemd/system-generators/systemd-fstab-generator "$GEN" "$GEN" "$GEN"
UNIT=$(find "$GEN" -name '*.mount' | head -n 1)
check "it made a mount unit" test -n "$UNIT"
if [ -n "$UNIT" ]; then
	assert_match "the unit requires docker.service" '^Requires=docker.service$' "$(cat "$UNIT")"
	assert_match "the unit has Type=fuse.dockerfuse" '^Type=fuse.dockerfuse$' "$(cat "$UNIT")"
fi
check "findmnt --verify finds no error in the line" findmnt --verify --tab-file "$FSTAB"
rm -f "$WORKDIR/helper.pid"
check "mount -T FSTAB $MNT" timeout -k 5 "$DFIT_MOUNT_TIMEOUT" mount -T "$FSTAB" "$MNT"
PID=$(cat "$WORKDIR/helper.pid" 2>/dev/null || true)
check "fstab: mounted" is_fuse_mounted "$MNT"
check "fstab: the container's / is there" test -f "$MNT/etc/alpine-release"
check "fstab: read-write by default" run_sh "echo fstab-$$ >'$MNT/tmp/dfit-helper'"
assert_eq "fstab: the container sees the write" "fstab-$$" "$(dx cat /tmp/dfit-helper)"
dx rm -f /tmp/dfit-helper
check "fstab: umount" timeout 10 umount "$MNT"
check "fstab: the serving process exits" wait_until 10 pid_gone "$PID"

# --- failures come back through mount(8) ---------------------------------------------------
# mount_fails DESC ERE ARGS...: mount ARGS fails in time, says ERE, leaves nothing.
mount_fails() {
	local desc=$1 re=$2 st=0 out
	shift 2
	out=$(timeout -k 5 60 mount "$@" 2>&1 </dev/null) || st=$?
	case "$st" in
	0) fail "$desc: mount fails (it exited 0)" ;;
	124 | 137) fail "$desc: mount fails (it hung)" ;;
	*) pass "$desc: mount fails ($st)" ;;
	esac
	assert_match "$desc: says why" "$re" "$out"
	check "$desc: nothing mounted" not_mounted "$MNT"
}
mount_fails "-o bogus" 'unknown mount option -o bogus' -t fuse.dockerfuse "$CONTAINER" "$MNT" -o bogus
mount_fails "unknown container" 'no such container' -t fuse.dockerfuse "dfit-nope-$$:/etc" "$MNT"

# --- -o foreground: the process itself, its exit status -------------------------------------
"$DOCKERFUSE" "$CONTAINER:/etc" "$MNT" -o ro,foreground >"$WORKDIR/fg.out" 2>&1 </dev/null &
FG=$!
on_exit "$(printf 'dfit_unmount %q %q' "$MNT" "$FG")"
if wait_mounted "$MNT" "$FG"; then
	pass "-o foreground: mounted, process still ours"
	check "-o foreground: umount" timeout 10 umount "$MNT"
	st=0
	wait "$FG" || st=$?
	assert_eq "-o foreground: exit status 0 after umount" 0 "$st"
else
	fail "-o foreground: mounted"
	show_file "dockerfuse output" "$WORKDIR/fg.out"
fi

finish
