#!/usr/bin/env bash
# Users other than root on the root engine. Two users are made here if
# missing (the NixOS VM declares them: nix/vm-cli.nix): dfu-member (in the
# `docker` group) and dfu-plain (not).
#   - with the machine's own /dev/fuse: when the users may not open it
#     (0600), dockerfuse refuses at once naming /dev/fuse and the fix
#     (fusermount3 opens it with the user's rights, so nothing a user runs
#     can mount); when they may, a mount works. And a 0600 node, put over
#     /dev/fuse in a private mount namespace, gets the same refusal
#     whatever the machine has;
#   - with a 0666 node there (what udev gives on most distributions):
#     dfu-member passes the core scenario (core.sh as the user, mounted
#     through fusermount3), then -d, `dockerfuse list` (the row, transport
#     exec: pidfd_getfd is refused to a user on root's containers),
#     `dockerfuse unmount` and `unmount --all`, --reconnect across a
#     `docker restart`, and a `user` fstab entry mounted and unmounted
#     with mount(8)/umount(8) as the user (the fstab and /usr/local/sbin
#     are replaced only in the namespace);
#   - the refusals a user gets: a mount point it may not write to,
#     --allow-other without user_allow_other (an /etc/fuse.conf without it
#     in the namespace), and dfu-plain refused by the engine's socket
#     (the message names the permission and the docker group).
# Everything happens in a private mount namespace (users-lib.sh); the
# machine's /dev/fuse, fstab and fuse.conf are never changed.
# Environment: DOCKERFUSE, CONTAINER (running alpine), SATELLITE_ARCH,
# WORKDIR. Needs root (to make the users).
# shellcheck disable=SC2016 # $H etc. expand in the child shells
# shellcheck disable=SC2317 # helpers run via check/on_exit
set -euo pipefail
# shellcheck source=SCRIPTDIR/../users-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../users-lib.sh"
in_fuse_namespace "$@"
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER SATELLITE_ARCH WORKDIR
require_tools useradd usermod runuser unshare mknod getent mount umount findmnt docker
got='' out='' st=0

M=dfu-member P=dfu-plain
ensure_user "$M" docker
ensure_user "$P"
check "$M is in the docker group" run_sh "id -nG $M | tr ' ' '\\n' | grep -qx docker"
check_not "$P is not in the docker group" run_sh "id -nG $P | tr ' ' '\\n' | grep -qx docker"
user_binary
UW=$WORKDIR/$M
user_dir "$M" "$UW"
chmod 0711 "$UW"
RELEASE=$(timeout 30 docker exec "$CONTAINER" cat /etc/alpine-release)

# user_mount NAME MNT ARGS...: dockerfuse CONTAINER MNT -d as NAME; sets st
# and out (its output file).
user_mount() {
	local name=$1 mnt=$2
	shift 2
	out=$mnt.out
	st=0
	on_exit "$(printf 'as_user %q timeout 10 fusermount3 -uz %q 2>/dev/null' "$name" "$mnt")"
	as_user "$name" timeout -k 5 "$DFIT_MOUNT_TIMEOUT" "$DF" "$CONTAINER" "$mnt" -d "$@" >"$out" 2>&1 </dev/null || st=$?
}

# --- the machine's /dev/fuse, and a 0600 one ---------------------------------------
MNT=$UW/mnt
as_user "$M" mkdir -p "$MNT"
for mode in machine 0600; do
	if [ "$mode" = 0600 ]; then fuse_dev_mode 0600; fi
	what="/dev/fuse $(stat -c %a /dev/fuse) ($mode)"
	if as_user "$M" test -r /dev/fuse -a -w /dev/fuse; then
		user_mount "$M" "$MNT"
		if [ "$st" -eq 0 ] && is_fuse_mounted "$MNT"; then pass "$what, open to users: $M mounts"; else
			fail "$what, open to users: $M mounts (exit $st)"
			show_file "dockerfuse output" "$out"
		fi
		as_user "$M" "$DF" unmount "$MNT" >/dev/null 2>&1 || true
		continue
	fi
	user_mount "$M" "$MNT"
	assert_eq "$what, closed to users: $M is refused (exit 1)" 1 "$st"
	check_not "$what: nothing mounted" is_mounted "$MNT"
	cap got cat "$out"
	assert_match "$what: the message names /dev/fuse and fusermount3" '^dockerfuse: .*/dev/fuse .*not open to you.*fusermount3' "$got"
	assert_match "$what: the hint says how to open it" '^hint: .*chmod 0666 /dev/fuse' "$got"
done

# --- a /dev/fuse users may open ----------------------------------------------------
fuse_dev_mode 0666
user_scenario "docker group member" "$M" core.sh \
	DOCKERFUSE="$DF" CONTAINER="$CONTAINER" SATELLITE_ARCH="$SATELLITE_ARCH" WORKDIR="$UW"

# -d, list, unmount
export DOCKERFUSE_RUNTIME_DIR=$UW/run
USER_PASS=DOCKERFUSE_RUNTIME_DIR
as_user "$M" mkdir -p "$UW/run" "$UW/a" "$UW/b"
user_mount "$M" "$UW/a" --satellite-arch "$SATELLITE_ARCH" -debug --log-file "$UW/a.log"
if [ "$st" -eq 0 ] && is_fuse_mounted "$UW/a"; then pass "$M: dockerfuse -d mounts"; else
	fail "$M: dockerfuse -d mounts (exit $st)"
	show_file "dockerfuse output" "$out"
	stop_here
fi
assert_match "mounted through fusermount3, type fuse.dockerfuse, the user's" \
	"^fuse.dockerfuse dockerfuse:$CONTAINER .*user_id=$(id -u "$M")," \
	"$(findmnt -n -o FSTYPE,SOURCE,OPTIONS --mountpoint "$UW/a")"
check "the log says fusermount3 mounted it" grep -qE 'how=.?fusermount3' "$UW/a.log"
check "the log says why not the local channel" grep -q 'exec stream through the engine (no local channel: ' "$UW/a.log"
cap got as_user "$M" cat "$UW/a/etc/alpine-release"
assert_eq "$M reads /etc/alpine-release" "$RELEASE" "$got"
check "$M writes a file" as_user "$M" sh -c "echo member > '$UW/a/tmp/dfit-users-$$'"
on_exit "$(printf 'timeout 30 docker exec %q rm -f %q' "$CONTAINER" "/tmp/dfit-users-$$")"
cap got timeout 30 docker exec "$CONTAINER" cat "/tmp/dfit-users-$$"
assert_eq "the container sees it" member "$got"
cap got as_user "$M" "$DF" list
assert_match "list shows the mount, transport exec" "^$CONTAINER +[0-9a-f]{12} +/ +$UW/a +[0-9]+ +exec " "$(grep -F "$UW/a " <<<"$got" || true)"
user_mount "$M" "$UW/b" --satellite-arch "$SATELLITE_ARCH"
check "$M: a second mount" is_fuse_mounted "$UW/b"
check "$M: dockerfuse unmount DIR" as_user "$M" "$DF" unmount "$UW/a"
check_not "the first is gone" is_mounted "$UW/a"
check "$M: dockerfuse unmount --all" as_user "$M" "$DF" unmount --all
check_not "the second is gone" is_mounted "$UW/b"
cap got as_user "$M" "$DF" list
check_not "list is empty again" grep -qF "$UW/" <<<"$got"

# hold_busy DIR: a process of $M with its cwd in DIR (release_busy ends it).
hold_busy() {
	rm -f "$UW/holder.pid"
	as_user "$M" sh -c 'cd "$2" && echo $$ >"$1/holder.pid" && exec sleep 60' sh "$UW" "$1" </dev/null >/dev/null 2>&1 &
	wait_until 10 test -s "$UW/holder.pid" || true
	on_exit "$(printf 'kill "$(cat %q 2>/dev/null)" 2>/dev/null' "$UW/holder.pid")"
}
release_busy() {
	local pid
	pid=$(cat "$UW/holder.pid" 2>/dev/null || true)
	[ -z "$pid" ] || kill "$pid" 2>/dev/null || true
	[ -z "$pid" ] || wait_until 10 pid_gone "$pid" || true
}

# a busy mount: `dockerfuse unmount` refuses with the user's way to detach;
# a foreground mount ended by SIGINT while busy is detached lazily
as_user "$M" mkdir -p "$UW/c"
user_mount "$M" "$UW/c" --satellite-arch "$SATELLITE_ARCH"
check "$M: a mount to keep busy" is_fuse_mounted "$UW/c"
hold_busy "$UW/c/etc"
st=0
out=$(as_user "$M" "$DF" unmount "$UW/c" 2>&1) || st=$?
assert_eq "unmount of a busy mount as $M: exit 1" 1 "$st"
assert_match "it says busy, with fusermount3 -u -z as the way out" 'busy.*'$'\n''hint: .*fusermount3 -u -z' "$out"
release_busy
check "$M: unmount once no longer busy" as_user "$M" "$DF" unmount "$UW/c"
as_user "$M" "$DF" "$CONTAINER" "$UW/c" --satellite-arch "$SATELLITE_ARCH" >"$UW/c.fg.out" 2>&1 </dev/null &
FG=$!
on_exit "$(printf 'as_user %q timeout 10 fusermount3 -uz %q 2>/dev/null; kill %s 2>/dev/null' "$M" "$UW/c" "$FG")"
check "$M: a foreground mount" wait_mounted "$UW/c" "$FG"
hold_busy "$UW/c/etc"
DFPID=$(pgrep -u "$M" -f -- "$DF $CONTAINER $UW/c " | head -n 1 || true)
check "the foreground dockerfuse runs as $M" test -n "$DFPID"
kill -INT "$DFPID" 2>/dev/null || true
st=0
wait_until 20 pid_gone "$FG" || st=1
assert_eq "SIGINT ends the busy foreground mount" 0 "$st"
check_not "the busy mount was detached" is_mounted "$UW/c"
release_busy

# --reconnect across a restart of the container
as_user "$M" mkdir -p "$UW/r"
user_mount "$M" "$UW/r" --satellite-arch "$SATELLITE_ARCH" --reconnect --pid-file "$UW/r.pid"
check "$M: --reconnect mounts" is_fuse_mounted "$UW/r"
check "docker restart $CONTAINER" timeout 120 docker restart -t 1 "$CONTAINER"
back() { [ "$(as_user "$M" timeout 10 cat "$UW/r/etc/alpine-release" 2>/dev/null)" = "$RELEASE" ]; }
check "after the restart the mount reads again" wait_until 60 back
check "the process stayed" pid_alive "$(cat "$UW/r.pid")"
check "$M: dockerfuse unmount (reconnect mount)" as_user "$M" "$DF" unmount "$UW/r"

# --- a `user` fstab entry, through mount(8) as the user ------------------------------
mkdir -p "$WORKDIR/sbin"
ln -sf "$DF" "$WORKDIR/sbin/dockerfuse"
if [ ! -d /usr/local/sbin ]; then # NixOS has none (mount-helper.sh makes it too)
	mkdir -p /usr/local/sbin
	on_exit 'rmdir /usr/local/sbin 2>/dev/null'
fi
mount --bind "$WORKDIR/sbin" /usr/local/sbin
cp /etc/fstab "$WORKDIR/fstab" 2>/dev/null || : >"$WORKDIR/fstab"
FS=$UW/fstab-mnt
as_user "$M" mkdir -p "$FS"
printf '%s:/etc %s fuse.dockerfuse user,noauto,ro,satellite_arch=%s 0 0\n' "$CONTAINER" "$FS" "$SATELLITE_ARCH" >>"$WORKDIR/fstab"
mount --bind "$WORKDIR/fstab" /etc/fstab
on_exit "$(printf 'as_user %q timeout 10 fusermount3 -uz %q 2>/dev/null' "$M" "$FS")"
check "$M: mount DIR (a user fstab entry)" as_user "$M" timeout -k 5 "$DFIT_MOUNT_TIMEOUT" mount "$FS"
assert_match "it is a fuse.dockerfuse mount of $M, read-only" "^fuse.dockerfuse ro,.*user_id=$(id -u "$M")," \
	"$(findmnt -n -o FSTYPE,OPTIONS --mountpoint "$FS")"
cap got as_user "$M" cat "$FS/alpine-release"
assert_eq "$M reads through it" "$RELEASE" "$got"
check "$M: umount DIR" as_user "$M" timeout 30 umount "$FS"
check_not "the fstab mount is gone" is_mounted "$FS"

# --- what a user is refused -------------------------------------------------------
RO=$WORKDIR/root-owned
mkdir -p "$RO"
chmod 0755 "$RO"
user_mount "$M" "$RO"
assert_eq "a mount point $M may not write to: exit 1" 1 "$st"
assert_match "the message says it is not writable" '^dockerfuse: mount point .* is not writable by you' "$(cat "$out")"
printf '# no user_allow_other here\n' >"$WORKDIR/fuse.conf"
mount --bind "$WORKDIR/fuse.conf" /etc/fuse.conf
as_user "$M" mkdir -p "$UW/o"
user_mount "$M" "$UW/o" --allow-other
assert_eq "--allow-other without user_allow_other: exit 1" 1 "$st"
assert_match "the message names user_allow_other" 'user_allow_other' "$(cat "$out")"
check_not "nothing mounted" is_mounted "$UW/o"
umount /etc/fuse.conf

PU=$WORKDIR/$P
user_dir "$P" "$PU"
chmod 0711 "$PU"
as_user "$P" mkdir -p "$PU/mnt"
user_mount "$P" "$PU/mnt"
assert_eq "$P (not in the docker group): exit 1" 1 "$st"
cap got cat "$out"
assert_match "the message says permission denied on the socket" '^dockerfuse: cannot reach the Docker engine .*permission denied on the socket' "$got"
assert_match "the hint names the docker group and rootless engines" '^hint: .*group.*usermod -aG docker.*rootless' "$got"
check_not "$P: nothing mounted" is_mounted "$PU/mnt"
finish
