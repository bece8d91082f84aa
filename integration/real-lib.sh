# shellcheck shell=bash disable=SC2034,SC2317 # variables are for the caller; helpers run via check/wait_until
# Helpers for the "real containers" scenarios (scenarios/real-*.sh),
# sourced after lib.sh: derived test images, containers that are removed on
# every exit path, and the common checks of a mount (reads, writes and
# ownership through it, compared with `docker exec`; nothing left behind).
#
# Containers are named dfreal-<what>-<pid> and carry $DFIT_LABEL when the
# driver gives one. Derived images (dfreal-test/*:<arch>) are built from
# dockerfuse-test/busybox:<arch> once and kept, like the base images.

REAL_IMG_TMP=

# real_load_dir REF ARCH DIR CMD_JSON: load DIR as the one layer of image
# REF whose config names ARCH (a hand-made docker-archive: `docker import
# --platform` is not honoured by dockerd 20.10).
real_load_dir() {
	local ref=$1 arch=$2 root=$3 cmd=$4 dir diff_id cfg
	dir=$(mktemp -d "$DFIT_TMP/archive.XXXXXX")
	tar -C "$root" --sort=name --numeric-owner --owner=0 --group=0 --mtime=@1700000000 -cf "$dir/layer.tar" .
	diff_id=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
	printf '{"architecture":"%s","os":"linux","created":"2023-11-14T22:13:20Z","config":{"Cmd":%s,"Labels":{"org.dockerfuse.test":"1"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
		"$arch" "$cmd" "$diff_id" >"$dir/config.json"
	cfg=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
	mv "$dir/config.json" "$dir/$cfg.json"
	printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' "$cfg" "$ref" >"$dir/manifest.json"
	tar -C "$dir" -cf - manifest.json "$cfg.json" layer.tar | timeout 120 docker load >/dev/null
	rm -rf "$dir"
}

# real_image KIND ARCH: print the ref of a derived image, building it when
# missing. KIND:
#   distroless  the rootfs is /bin/busybox and the symlink /sleep -> it:
#               no shell at /bin/sh, no /etc, /tmp, /run, /var
#   notmp       the busybox image without /tmp, /var/tmp and /run
real_image() {
	local kind=$1 arch=$2 ref base c root
	ref=dfreal-test/$kind:$arch
	base=dockerfuse-test/busybox:$arch
	if [ "$(docker image inspect -f '{{.Architecture}}' "$ref" 2>/dev/null)" = "$arch" ]; then
		printf '%s\n' "$ref"
		return 0
	fi
	c=dfreal-build-$kind-$arch-$$
	case $kind in
	distroless)
		root=$(mktemp -d "$DFIT_TMP/root.XXXXXX")
		mkdir -p "$root/bin"
		timeout 60 docker create --name "$c" "$base" true >/dev/null || return 1
		timeout 60 docker cp "$c:/bin/busybox" - | tar -C "$root/bin" -xf - || {
			docker rm -f "$c" >/dev/null 2>&1
			return 1
		}
		docker rm -f "$c" >/dev/null 2>&1
		ln -s /bin/busybox "$root/sleep"
		real_load_dir "$ref" "$arch" "$root" '["/sleep","1000000000"]' || return 1
		rm -rf "$root"
		;;
	notmp)
		# (rm's output only warns about the platform of arm64 images)
		timeout 120 docker run --name "$c" --network none "$base" rm -rf /tmp /var/tmp /run >/dev/null 2>&1 || {
			docker rm -f "$c" >/dev/null 2>&1
			return 1
		}
		timeout 60 docker commit --change 'CMD ["sleep","1000000000"]' "$c" "$ref" >/dev/null || {
			docker rm -f "$c" >/dev/null 2>&1
			return 1
		}
		docker rm -f "$c" >/dev/null 2>&1
		;;
	*) return 1 ;;
	esac
	[ "$(docker image inspect -f '{{.Architecture}}' "$ref" 2>/dev/null)" = "$arch" ] || return 1
	printf '%s\n' "$ref"
}

# real_run NAME IMAGE [DOCKER_RUN_ARGS...] -- CMD...: start a container
# (no network, the driver's label), removed when the scenario ends. Sets
# CONTAINER. Fails (counted) when it does not start.
real_run() {
	local name=$1 image=$2 args=() labels=() out
	shift 2
	while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
		args+=("$1")
		shift
	done
	[ "${1:-}" != -- ] || shift
	[ -z "${DFIT_LABEL:-}" ] || labels=(--label "$DFIT_LABEL")
	on_exit "$(printf 'docker rm -f %q >/dev/null 2>&1' "$name")"
	CONTAINER=$name
	if out=$(timeout 120 docker run -d --name "$name" --network none "${labels[@]}" "${args[@]}" "$image" "$@" 2>&1); then
		pass "container $name started ($image ${args[*]})"
		return 0
	fi
	fail "container $name started ($image ${args[*]})"
	printf '%s\n' "$out" | detail
	return 1
}

# real_mount MNT [DOCKERFUSE_ARGS...]: mount $CONTAINER daemonized (lib.sh's
# mount_daemon) and count whether it came up. Returns 1 when it did not.
real_mount() {
	local mnt=$1
	shift
	mkdir -p "$mnt"
	mount_daemon "$mnt" "$@"
	if [ "$DF_STATUS" -eq 0 ] && is_fuse_mounted "$mnt"; then
		pass "mount of $CONTAINER ${*:+($*) }is up"
		return 0
	fi
	fail "mount of $CONTAINER ${*:+($*) }is up (exit $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
	show_file "dockerfuse log" "$DF_LOG"
	return 1
}

# real_unmount MNT: fusermount3 -u, the process ends, nothing is mounted,
# no satellite process and no satellite file stays in the container.
real_unmount() {
	local mnt=$1 left
	check "fusermount3 -u $(basename "$mnt")" fusermount3 -u "$mnt"
	check "its dockerfuse exits" wait_until 10 pid_gone "$DF_PID"
	check "nothing left mounted" not_mounted "$mnt"
	real_no_satellite_left
}

# real_no_satellite_left: no satellite process nor file in $CONTAINER
# (looked at from the host: the container may have no shell).
real_no_satellite_left() {
	local pid left
	pid=$(docker inspect -f '{{.State.Pid}}' "$CONTAINER")
	sat_gone() { ! timeout 30 docker top "$CONTAINER" -eo args | grep -q dockerfuse-satellite; }
	check "no satellite process left in the container" wait_until 10 sat_gone
	left=$(timeout 30 find "/proc/$pid/root/" -xdev -maxdepth 3 -name '.dockerfuse-satellite*' 2>/dev/null || true)
	for d in /dev /dev/shm /tmp /run; do
		[ -d "/proc/$pid/root$d" ] || continue
		left+=$(find "/proc/$pid/root$d/" -maxdepth 1 -name '.dockerfuse-satellite*' 2>/dev/null || true)
	done
	assert_eq "no satellite file left in the container" "" "$left"
}

# real_diff_clean BEFORE: `docker diff` shows nothing new but the
# directories a write below them marks changed for good (overlayfs).
real_diff_clean() {
	local after new
	after=$(timeout 30 docker diff "$CONTAINER")
	new=$(comm -13 <(printf '%s\n' "$1" | LC_ALL=C sort) <(printf '%s\n' "$after" | LC_ALL=C sort) |
		grep -Ev '^C (/|/tmp|/root|/run|/var|/var/tmp|/dev|/dev/shm)$|^$' || true)
	assert_eq "docker diff: nothing added or changed by dockerfuse" "" "$new"
}

# real_rw MNT DIR [EXEC_USER]: through the mount, in container directory
# DIR: read a file written in the container, write one the container reads
# back, and remove both. EXEC_USER: the user of the `docker exec` (default:
# the container's). Uses /bin/busybox when there is no /bin/sh.
real_rw() {
	local mnt=$1 dir=$2 u=${3:-} sh=(sh) got name
	[ -z "$u" ] || u="--user=$u"
	name=dfreal-$$-$RANDOM
	if ! timeout 30 docker exec "$CONTAINER" sh -c true >/dev/null 2>&1; then sh=(/bin/busybox sh); fi
	# shellcheck disable=SC2086 # $u is one word or nothing
	check "container writes $dir/$name.in" timeout 30 docker exec $u "$CONTAINER" "${sh[@]}" -c "echo from-container >$dir/$name.in"
	cap got cat "$mnt$dir/$name.in"
	assert_eq "the mount reads what the container wrote" from-container "$got"
	check "the mount writes $dir/$name.out" run_sh "echo from-host >'$mnt$dir/$name.out'"
	cap got timeout 30 docker exec "$CONTAINER" "${sh[@]}" -c "cat $dir/$name.out"
	assert_eq "the container reads what the mount wrote" from-host "$got"
	check "the mount removes both files" rm -f "$mnt$dir/$name.in" "$mnt$dir/$name.out"
	check_not "the container no longer sees them" timeout 30 docker exec "$CONTAINER" "${sh[@]}" -c "ls $dir/$name.in || ls $dir/$name.out"
}

# real_expect_error DESC MNT [DOCKERFUSE_ARGS...]: dockerfuse on $CONTAINER
# fails in time with exit status 1 and leaves nothing mounted. Its output
# is in REAL_ERR for the caller's assertions on the message.
real_expect_error() {
	local desc=$1 mnt=$2 status=0
	shift 2
	mkdir -p "$mnt"
	df_args "$mnt"
	REAL_ERR=$(timeout -k 5 "$DFIT_MOUNT_TIMEOUT" "$DOCKERFUSE" "${DF_ARGS[@]}" "$@" 2>&1 </dev/null) || status=$?
	assert_eq "$desc: exit status 1 (setup failed)" 1 "$status"
	[ "$status" = 1 ] || printf '%s\n' "$REAL_ERR" | detail
	if is_mounted "$mnt"; then
		fail "$desc: nothing left mounted"
		dfit_unmount "$mnt"
	fi
}

# real_started_by HOW: the last mount's log says the satellite came from
# HOW ("upload to /run", "write to /dev through /bin/sh"...).
real_started_by() {
	local line
	line=$(grep -a 'satellite started' "$DF_LOG" 2>/dev/null | tail -n 1 || true)
	assert_match "the satellite came by: $1" "how=$1( |$)" "$line"
}
