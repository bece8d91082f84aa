# shellcheck shell=bash disable=SC2034 # DF is for the caller
# Helpers of the scenarios that run dockerfuse as users other than root
# (users.sh, rootless-podman.sh, rootless-docker.sh; sourced after lib.sh):
#   - in_fuse_namespace SCRIPT: re-run the scenario in a private mount
#     namespace (called before lib.sh is sourced), where fuse_dev_mode can
#     put a /dev/fuse node of any mode over the machine's (most
#     distributions make it 0666; some, like this project's CI machines,
#     0600, which no user can mount with: fusermount3 opens it with the
#     user's rights). The machine's own /dev/fuse is never changed, and
#     every mount made in the namespace goes away with it;
#   - ensure_user NAME [GROUP] [subids]: the test user, made if missing
#     (useradd), idempotently, with a home, in GROUP, with subuid/subgid
#     ranges for rootless engines;
#   - as_user NAME CMD...: CMD as NAME with a clean login-like environment
#     (HOME, USER, PATH, XDG_RUNTIME_DIR when $USER_RUNTIME is set, and the
#     DFIT_* knobs and the variables named in $USER_PASS);
#   - user_scenario TITLE NAME SCRIPT VAR=VALUE...: another scenario (core.sh)
#     run as NAME, its output shown and its counts added to this one's;
#   - user_binary: a copy of $DOCKERFUSE every user may run, and of the
#     scenario scripts (a checkout under /root is closed to users), in
#     $WORKDIR.

DFIT_USERS_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# in_fuse_namespace "$@": re-exec the calling scenario under unshare -m.
# The new namespace starts with a copy of every mount, other runs' FUSE
# mounts included, and a copy keeps its FUSE connection alive: unmounted
# outside, such a mount's dockerfuse would never learn it was unmounted.
# So the copies are detached first thing (and propagation is slave, so
# that on a host whose mounts are shared, mounts and unmounts made outside
# later reach the namespace too, and nothing made in it leaks out).
in_fuse_namespace() {
	if [ -z "${DFIT_IN_FUSE_NS:-}" ]; then
		DFIT_IN_FUSE_NS=1 exec unshare -m --propagation slave bash "$0" "$@"
	fi
	local m
	while IFS= read -r m; do
		umount -l "$(printf '%b' "$m")" 2>/dev/null || true
	done < <(awk '{ for (i = 7; i < NF; i++) if ($i == "-") break } $(i + 1) ~ /^fuse(\.|blk$|$)/ { print $5 }' /proc/self/mountinfo | sort -r)
}

# fuse_dev_mode MODE: a /dev/fuse node of MODE (root's) over /dev/fuse in
# this mount namespace (undone by fuse_dev_machine).
fuse_dev_mode() {
	local node=$WORKDIR/fuse-$1
	[ -c "$node" ] || mknod -m "$1" "$node" c 10 229
	fuse_dev_machine
	mount --bind "$node" /dev/fuse
}
# fuse_dev_machine: the machine's /dev/fuse again.
fuse_dev_machine() {
	while [ "$(findmnt -n -o TARGET --mountpoint /dev/fuse 2>/dev/null)" = /dev/fuse ] &&
		[ "$(stat -c %i /dev/fuse)" != "$DFIT_MACHINE_FUSE_INO" ]; do
		umount /dev/fuse || break
	done
}
DFIT_MACHINE_FUSE_INO=$(stat -c %i /dev/fuse 2>/dev/null || echo none)

# ensure_user NAME [GROUP] [subids]
ensure_user() {
	local name=$1 group=${2:-} subids=${3:-} start
	if ! id "$name" >/dev/null 2>&1; then
		useradd --create-home --shell /bin/sh "$name"
	fi
	if [ -n "$group" ] && ! id -nG "$name" | tr ' ' '\n' | grep -qx "$group"; then
		usermod -aG "$group" "$name"
	fi
	if [ -n "$subids" ]; then
		# A range of 65536 ids past every range already given.
		start=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: '$2 + $3 > m { m = $2 + $3 } END { print (m > 100000 ? m : 100000) }')
		grep -q "^$name:" /etc/subuid 2>/dev/null || usermod --add-subuids "$start-$((start + 65535))" "$name"
		grep -q "^$name:" /etc/subgid 2>/dev/null || usermod --add-subgids "$start-$((start + 65535))" "$name"
	fi
}

USER_PASS=${USER_PASS:-}
# as_user NAME CMD...
as_user() {
	local name=$1 home v
	shift
	home=$(getent passwd "$name" | cut -d: -f6)
	local envs=(HOME="$home" USER="$name" LOGNAME="$name" PATH="$PATH" LANG=C.UTF-8)
	[ -z "${USER_RUNTIME:-}" ] || envs+=(XDG_RUNTIME_DIR="$USER_RUNTIME")
	for v in $(compgen -v DFIT_) $USER_PASS; do
		case $v in DFIT_MISSING_TOOLS | DFIT_SCENARIO_MISSING | DFIT_TMP | DFIT_CLEANUPS | DFIT_PASSED | DFIT_FAILED | DFIT_FINISHED | DFIT_ABORTED | DFIT_LAST_ERR | DFIT_SCENARIO) continue ;; esac
		[ -z "${!v+x}" ] || envs+=("$v=${!v}")
	done
	(cd / && runuser -u "$name" -- env -i "${envs[@]}" "$@")
}

# user_binary: DF, a copy of $DOCKERFUSE any user may run.
user_binary() {
	mkdir -p "$WORKDIR/bin"
	cp "$DOCKERFUSE" "$WORKDIR/bin/dockerfuse"
	chmod 0755 "$WORKDIR/bin" "$WORKDIR/bin/dockerfuse"
	DF=$WORKDIR/bin/dockerfuse
	mkdir -p "$WORKDIR/it/scenarios"
	cp "$DFIT_USERS_HERE/lib.sh" "$WORKDIR/it/"
	cp "$DFIT_USERS_HERE"/scenarios/*.sh "$WORKDIR/it/scenarios/"
	chmod -R a+rX "$WORKDIR/it"
	# every directory above WORKDIR must be searchable by the users (by
	# everyone: rootless podman refuses a container whose storage has a
	# directory above it without all three x bits, and tries to chmod it)
	local d=$WORKDIR
	while [ "$d" != / ]; do
		chmod a+x "$d" 2>/dev/null || true
		d=$(dirname "$d")
	done
}

# kill_runtime_procs NAME: kill every process of NAME started with
# XDG_RUNTIME_DIR=$USER_RUNTIME (a rootless engine's leftovers: podman's
# pause process, conmon, rootlesskit's children), and nothing else.
kill_runtime_procs() {
	local uid p
	uid=$(id -u "$1")
	for p in /proc/[0-9]*; do
		[ "$(stat -c %u "$p" 2>/dev/null)" = "$uid" ] || continue
		tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -qxF "XDG_RUNTIME_DIR=$USER_RUNTIME" || continue
		kill -9 "${p#/proc/}" 2>/dev/null || true
	done
}

# user_dir NAME DIR: DIR made and owned by NAME.
user_dir() {
	mkdir -p "$2"
	chown "$1:" "$2"
	chmod 0700 "$2"
}

# user_scenario TITLE NAME SCRIPT VAR=VALUE...: run scenarios/SCRIPT (the
# copy user_binary made) as NAME with
# the variables given; its result lines are shown under TITLE and its
# counts added to this scenario's.
user_scenario() {
	local title=$1 name=$2 script=$WORKDIR/it/scenarios/$3 out line p=0 f=0 st=0
	shift 3
	out=$WORKDIR/$(basename "$script" .sh)-$name.log
	log "--- $title: $(basename "$script") as $name"
	as_user "$name" "$@" timeout -k 30 "${DFIT_SCENARIO_TIMEOUT:-600}" bash "$script" >"$out" 2>&1 </dev/null || st=$?
	sed 's/^/    /' "$out"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1 || true)
	[ -z "$line" ] || read -r p _ f _ <<<"$line"
	DFIT_PASSED=$((DFIT_PASSED + p))
	DFIT_FAILED=$((DFIT_FAILED + f))
	if [ "$st" -ne 0 ] && [ "$f" -eq 0 ]; then
		fail "$title: $(basename "$script") as $name exited $st without a failed assertion"
	else
		log "$title: $p passed, $f failed"
	fi
}

# idmap_checks NAME CONTAINER DIR: as NAME, mount CONTAINER on DIR with
# --idmap: the container's root files show as NAME's, a file NAME makes is
# the container's root's, other ids stay, and a chown to NAME is one to
# the container's root. (Uses $DF, $DFIT_MOUNT_TIMEOUT; docker reaches the
# container's engine through DOCKER_HOST.)
idmap_checks() {
	local name=$1 ctr=$2 dir=$3 uid gid st=0 got
	uid=$(id -u "$name") gid=$(id -g "$name")
	as_user "$name" mkdir -p "$dir"
	on_exit "$(printf 'as_user %q timeout 10 fusermount3 -uz %q 2>/dev/null' "$name" "$dir")"
	timeout 30 docker exec "$ctr" sh -c "echo x >/tmp/dfit-idmap-33 && chown 33:33 /tmp/dfit-idmap-33 && echo y >/tmp/dfit-idmap-root"
	on_exit "$(printf 'timeout 30 docker exec %q rm -f /tmp/dfit-idmap-33 /tmp/dfit-idmap-root /tmp/dfit-idmap-new' "$ctr")"
	as_user "$name" timeout -k 5 "$DFIT_MOUNT_TIMEOUT" "$DF" "$ctr" "$dir" -d --idmap >"$dir.out" 2>&1 </dev/null || st=$?
	if [ "$st" -ne 0 ] || ! is_fuse_mounted "$dir"; then
		fail "--idmap mounts as $name (exit $st)"
		show_file "dockerfuse output" "$dir.out"
		return 0
	fi
	pass "--idmap mounts as $name"
	got=$(as_user "$name" stat -c %u:%g "$dir/tmp/dfit-idmap-root")
	assert_eq "--idmap: a file of the container's root shows as $name's" "$uid:$gid" "$got"
	got=$(as_user "$name" stat -c %u:%g "$dir/tmp/dfit-idmap-33")
	assert_eq "--idmap: a file of uid 33 stays 33" 33:33 "$got"
	check "--idmap: $name makes a file" as_user "$name" sh -c "echo z >'$dir/tmp/dfit-idmap-new'"
	got=$(as_user "$name" stat -c %u:%g "$dir/tmp/dfit-idmap-new")
	assert_eq "--idmap: it shows as $name's" "$uid:$gid" "$got"
	got=$(timeout 30 docker exec "$ctr" stat -c %u:%g /tmp/dfit-idmap-new)
	assert_eq "--idmap: in the container it is root's" 0:0 "$got"
	check "--idmap: chown $uid:$gid of uid 33's file" as_user "$name" chown "$uid:$gid" "$dir/tmp/dfit-idmap-33"
	got=$(timeout 30 docker exec "$ctr" stat -c %u:%g /tmp/dfit-idmap-33)
	assert_eq "--idmap: the container sees a chown to root" 0:0 "$got"
	check "--idmap: unmount" as_user "$name" "$DF" unmount "$dir"
}

# rootless_core_and_local ENGINE: as user $U against container $NAME of
# the user's own rootless ENGINE ("rootless podman", "rootless docker";
# DOCKER_HOST names it): core.sh as the user, then a --transport local
# mount (the log names the channel and the id map, list, a read, a
# write seen in the container, unmount). Uses DF, CARCH, WORKDIR; sets UW.
# shellcheck disable=SC2153 # NAME, U, DF and CARCH are the calling scenario's
rootless_core_and_local() {
	local engine=$1 st=0
	# --- core, as the user -------------------------------------------------------------
	UW=$WORKDIR/core-$U
	user_dir "$U" "$UW"
	user_scenario "$engine" "$U" core.sh \
		DOCKERFUSE="$DF" CONTAINER="$NAME" SATELLITE_ARCH="$CARCH" WORKDIR="$UW" DOCKER_HOST="$DOCKER_HOST"

	# --- the local transport ------------------------------------------------------------
	MNT=$UW/mnt-local
	as_user "$U" mkdir -p "$MNT"
	on_exit "$(printf 'as_user %q timeout 10 fusermount3 -u %q 2>/dev/null' "$U" "$MNT")"
	as_user "$U" timeout -k 5 "$DFIT_MOUNT_TIMEOUT" "$DF" "$NAME" "$MNT" -d --transport local -debug \
		--log-file "$UW/local.log" >"$UW/local.out" 2>&1 || st=$?
	if [ "$st" -eq 0 ] && is_fuse_mounted "$MNT"; then
		pass "--transport local mounts as $U ($engine)"
	else
		fail "--transport local mounts as $U ($engine) (exit $st)"
		show_file "dockerfuse output" "$UW/local.out"
		show_file "dockerfuse log" "$UW/local.log"
		stop_here
	fi
	check "the log names the local channel" grep -q 'transport: local channel' "$UW/local.log"
	check "the log says how the container's ids map to the host" grep -q 'rootless engine' "$UW/local.log"
	cap got as_user "$U" "$DF" list
	assert_match "list shows the mount with transport local" "$NAME .* $MNT .* local " "$got"
	cap got as_user "$U" cat "$MNT/etc/alpine-release"
	assert_match "reads /etc/alpine-release over the local channel" '^3\.' "$got"
	check "writes through the local channel" as_user "$U" sh -c "echo local > '$MNT/tmp/dfit-local-$$'"
	cap got timeout 30 docker exec "$NAME" cat "/tmp/dfit-local-$$"
	assert_eq "the container sees the write" local "$got"
	check "dockerfuse unmount as $U" as_user "$U" "$DF" unmount "$MNT"
	check_not "the mount is gone" is_mounted "$MNT"
}
