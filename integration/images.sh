#!/usr/bin/env bash
# Build and load the container images the integration tests run against,
# then check that each one starts and reports the right machine:
#
#   dockerfuse-test/alpine:amd64   dockerfuse-test/alpine:arm64
#       Alpine 3.20.3 minirootfs (musl, busybox userland)
#   dockerfuse-test/busybox:amd64  dockerfuse-test/busybox:arm64
#       one static busybox (Debian's busybox-static) and its applet links,
#       a minimal /etc; no libc, no package manager
#   dockerfuse-test/busybox:386     busybox:armv7 (arm/v7, Debian armhf)
#   dockerfuse-test/busybox:armv6 (arm/v6, Debian armel: ARMv5TE code, run
#   by qemu-arm)   busybox:ppc64le   busybox:s390x
#       the same for the other architectures the satellites cover, for the
#       `arches` scenario (all but 386 run under qemu-user)
#
# No registry is reachable, so nothing is pulled. Each image is a hand-made
# docker-archive (manifest.json + <sha256>.json config naming the
# architecture + layer.tar) fed to `docker load`: `docker import --platform`
# is not honoured by Debian's dockerd 20.10 (the image would claim amd64).
#
# Usable on its own (setup-engine.sh calls it after dockerd and binfmt_misc
# are ready; the arm64 images need qemu-aarch64 registered with the F flag):
#
#   integration/images.sh            build and load what is missing, verify all
#   integration/images.sh --force    rebuild and reload them all
#   integration/images.sh --verify   only verify
#
# Environment:
#   DOCKERFUSE_IMAGES_DIR      directory holding alpine-minirootfs-3.20.3-*.tar.gz
#                              (and optionally busybox-static_*_<arch>.deb);
#                              default ../shared/images beside the repo when it
#                              exists. Missing tarballs are downloaded from
#                              dl-cdn.alpinelinux.org. Every tarball is checked
#                              against the sha256 below, local ones too.
#   DOCKERFUSE_CACHE_DIR       where downloads go (default ~/.cache/dockerfuse-test)
#   DOCKERFUSE_BUSYBOX_AMD64   path to a static busybox binary to use instead of
#   DOCKERFUSE_BUSYBOX_ARM64   Debian's busybox-static (e.g. on NixOS); likewise
#                              DOCKERFUSE_BUSYBOX_386, _ARMV7, _ARMV6, _PPC64LE,
#                              _S390X
#   DOCKERFUSE_BUSYBOX_ARCHES  the busybox images to build and verify (default:
#                              all of amd64 arm64 386 armv7 armv6 ppc64le s390x)
#   DOCKERFUSE_SKIP_INSTALL=1  never call apt (then busybox comes from the two
#                              variables above or a .deb in the images dir)
set -euo pipefail

say() { printf '[images] %s\n' "$*" >&2; }
die() {
	printf '[images] ERROR: %s\n' "$*" >&2
	exit 1
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ALPINE_VERSION=3.20.3
declare -A ALPINE_SHA256=(
	[amd64]=d4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c
	[arm64]=041fa34a81788242df9e78fa69b97ab45b8ec47ddbf88864755610414a7bf3de
)
declare -A UNAME_M=([amd64]=x86_64 [arm64]=aarch64)
ARCHES=(amd64 arm64)
# The busybox images cover more architectures. Per image tag: the Debian
# architecture of busybox-static, Docker's architecture and variant, the
# qemu-user name, and what `uname -m` may say in the container (a 32-bit
# process on a 64-bit kernel sees the kernel's machine; qemu-arm says
# armv7l for any ARM CPU).
BUSYBOX_ARCHES=(amd64 arm64 386 armv7 armv6 ppc64le s390x)
declare -A DEB_ARCH=([amd64]=amd64 [arm64]=arm64 [386]=i386 [armv7]=armhf
	[armv6]=armel [ppc64le]=ppc64el [s390x]=s390x)
declare -A DOCKER_ARCH=([amd64]=amd64 [arm64]=arm64 [386]=386 [armv7]=arm
	[armv6]=arm [ppc64le]=ppc64le [s390x]=s390x)
declare -A DOCKER_VARIANT=([armv7]=v7 [armv6]=v6)
declare -A QEMU_NAME=([amd64]=x86_64 [arm64]=aarch64 [386]=i386 [armv7]=arm
	[armv6]=arm [ppc64le]=ppc64le [s390x]=s390x)
declare -A UNAME_RE=([amd64]=x86_64 [arm64]=aarch64 [386]='i[3-6]86|x86_64'
	[armv7]='armv[78]l' [armv6]='armv[5-8]t?e?l' [ppc64le]=ppc64le [s390x]=s390x)
# Applets the test scenarios call inside the containers.
NEEDED_APPLETS=(sh cat ls stat sha256sum dd find readlink mkdir rm rmdir ln
	test touch sleep uname chmod mv printf head)
PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Fixed timestamp so the busybox layers (and image ids) are reproducible.
EPOCH=1700000000

if [ -n "${DOCKERFUSE_IMAGES_DIR:-}" ]; then
	IMAGES_DIR=$DOCKERFUSE_IMAGES_DIR
	[ -d "$IMAGES_DIR" ] || die "DOCKERFUSE_IMAGES_DIR=$IMAGES_DIR is not a directory"
elif [ -d "$REPO_ROOT/../shared/images" ]; then
	IMAGES_DIR=$(cd "$REPO_ROOT/../shared/images" && pwd)
else
	IMAGES_DIR=
fi
CACHE_DIR=${DOCKERFUSE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/dockerfuse-test}
SKIP_INSTALL=${DOCKERFUSE_SKIP_INSTALL:-0}

TMP=
cleanup() { [ -z "$TMP" ] || rm -rf "$TMP"; }
trap cleanup EXIT
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dfit-images.XXXXXX")
chmod 755 "$TMP" # apt-get download drops to the _apt user

# image_arch REF: the architecture of a loaded image (with /VARIANT when it
# names one), empty when absent.
image_arch() {
	docker image inspect -f '{{.Architecture}}{{with .Variant}}/{{.}}{{end}}' "$1" 2>/dev/null || true
}

# load_layer REF ARCH LAYER_TAR CMD_JSON: wrap one uncompressed layer into
# a docker-archive whose config names ARCH (arch[/variant]), and `docker
# load` it.
load_layer() {
	local ref=$1 arch=$2 layer=$3 cmd=$4
	local dir diff_id config_sha variant=
	case "$arch" in */*) variant=',"variant":"'${arch#*/}'"' ;; esac
	dir=$(mktemp -d "$TMP/archive.XXXXXX")
	mv "$layer" "$dir/layer.tar"
	diff_id=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
	printf '{"architecture":"%s"%s,"os":"linux","created":"2023-11-14T22:13:20Z","config":{"Cmd":%s,"Env":["%s"],"Labels":{"org.dockerfuse.test":"1"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
		"${arch%%/*}" "$variant" "$cmd" "$PATH_ENV" "$diff_id" >"$dir/config.json"
	config_sha=$(sha256sum "$dir/config.json" | cut -d' ' -f1)
	mv "$dir/config.json" "$dir/$config_sha.json"
	printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' \
		"$config_sha" "$ref" >"$dir/manifest.json"
	tar -C "$dir" -cf - manifest.json "$config_sha.json" layer.tar | docker load >/dev/null ||
		die "docker load of $ref failed"
	rm -rf "$dir"
	local got
	got=$(image_arch "$ref")
	[ "$got" = "$arch" ] || die "$ref loaded but its architecture is '$got', not '$arch'"
	say "loaded $ref ($arch)"
}

# alpine_tarball ARCH: print the path of a verified minirootfs tarball,
# taken from IMAGES_DIR or downloaded into CACHE_DIR.
alpine_tarball() {
	local arch=$1 name url sum f
	name=alpine-minirootfs-$ALPINE_VERSION-${UNAME_M[$arch]}.tar.gz
	url=https://dl-cdn.alpinelinux.org/alpine/v${ALPINE_VERSION%.*}/releases/${UNAME_M[$arch]}/$name
	sum=${ALPINE_SHA256[$arch]}
	f=
	if [ -n "$IMAGES_DIR" ] && [ -f "$IMAGES_DIR/$name" ]; then
		f=$IMAGES_DIR/$name
	elif [ -f "$CACHE_DIR/$name" ]; then
		f=$CACHE_DIR/$name
	else
		mkdir -p "$CACHE_DIR"
		say "downloading $url"
		if command -v curl >/dev/null 2>&1; then
			curl -fsSL --retry 3 -o "$CACHE_DIR/$name.part" "$url" || f=failed
		elif command -v wget >/dev/null 2>&1; then
			wget -q -O "$CACHE_DIR/$name.part" "$url" || f=failed
		else
			die "neither curl nor wget to download $url (set DOCKERFUSE_IMAGES_DIR)"
		fi
		if [ "$f" = failed ]; then
			rm -f "$CACHE_DIR/$name.part"
			die "download of $url failed (set DOCKERFUSE_IMAGES_DIR to a directory holding $name)"
		fi
		mv "$CACHE_DIR/$name.part" "$CACHE_DIR/$name"
		f=$CACHE_DIR/$name
	fi
	echo "$sum  $f" | sha256sum -c --status ||
		die "sha256 mismatch for $f (expected $sum)"
	printf '%s\n' "$f"
}

build_alpine() {
	local arch=$1 ref=dockerfuse-test/alpine:$1 tarball
	tarball=$(alpine_tarball "$arch")
	say "building $ref from $tarball"
	gzip -dc "$tarball" >"$TMP/alpine-$arch.tar" || die "cannot decompress $tarball"
	load_layer "$ref" "$arch" "$TMP/alpine-$arch.tar" '["/bin/sh"]'
}

# apt_update PACKAGE: apt-get update until apt knows PACKAGE. An update
# fails for a while when a mirror is syncing; one index failing (say
# bookworm-security's) does not matter when the package is in another.
apt_update() {
	local try
	for try in 1 2 3; do
		if apt-get -o DPkg::Lock::Timeout=300 update -qq >&2; then
			return 0
		fi
		if apt-cache show "$1" >/dev/null 2>&1; then
			say "WARNING: apt-get update failed in part, but $1 is known: going on"
			return 0
		fi
		say "WARNING: apt-get update failed (try $try of 3, a mirror may be syncing)"
		[ "$try" = 3 ] || sleep 20
	done
	die "apt-get update failed, and $1 is not known to apt"
}

# add_foreign_architectures MODE TAG...: dpkg --add-architecture for every
# busybox image to build that needs a foreign one, all before the one
# apt-get update that follows.
add_foreign_architectures() {
	local mode=$1 tag deb
	shift
	[ "$SKIP_INSTALL" != 1 ] && command -v dpkg >/dev/null 2>&1 || return 0
	for tag in "$@"; do
		deb=${DEB_ARCH[$tag]}
		if [ "$mode" = build ] && [ "$(image_arch "dockerfuse-test/busybox:$tag")" = "$(docker_arch "$tag")" ]; then
			continue
		fi
		if [ "$deb" != "$(dpkg --print-architecture)" ] &&
			! dpkg --print-foreign-architectures | grep -qx "$deb"; then
			say "dpkg --add-architecture $deb"
			dpkg --add-architecture "$deb"
		fi
	done
}

# docker_arch TAG: the arch[/variant] a busybox image of TAG declares.
docker_arch() {
	local v=${DOCKER_VARIANT[$1]:-}
	printf '%s%s\n' "${DOCKER_ARCH[$1]}" "${v:+/$v}"
}

# busybox_binary TAG: print the path of a static busybox for TAG.
busybox_binary() {
	local tag=$1 arch=${DEB_ARCH[$1]} var deb f dir
	var=DOCKERFUSE_BUSYBOX_${tag^^}
	if [ -n "${!var:-}" ]; then
		[ -f "${!var}" ] || die "$var=${!var} is not a file"
		printf '%s\n' "${!var}"
		return
	fi
	dir=$TMP/busybox-$arch
	mkdir -p "$dir"
	deb=
	if [ -n "$IMAGES_DIR" ]; then
		for f in "$IMAGES_DIR"/busybox-static_*_"$arch".deb; do
			if [ -f "$f" ]; then deb=$f; fi
		done
	fi
	if [ -z "$deb" ]; then
		if [ "$SKIP_INSTALL" = 1 ] || ! command -v apt-get >/dev/null 2>&1; then
			die "no static busybox for $arch: set $var to one, or put busybox-static_*_$arch.deb in DOCKERFUSE_IMAGES_DIR"
		fi
		if [ "$arch" = "$(dpkg --print-architecture)" ] &&
			[ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null)" = "install ok installed" ]; then
			f=$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -n 1)
			[ -f "${f:-/nonexistent}" ] || die "busybox-static is installed but its binary is not found"
			printf '%s\n' "$f"
			return
		fi
		if [ "$arch" != "$(dpkg --print-architecture)" ] &&
			! dpkg --print-foreign-architectures | grep -qx "$arch"; then
			say "dpkg --add-architecture $arch"
			dpkg --add-architecture "$arch"
		fi
		if ! apt-cache show "busybox-static:$arch" >/dev/null 2>&1; then
			say "apt-get update (for busybox-static:$arch)"
			apt_update "busybox-static:$arch"
		fi
		say "apt-get download busybox-static:$arch"
		(cd "$dir" && apt-get download -qq "busybox-static:$arch" >&2) ||
			die "apt-get download busybox-static:$arch failed"
		deb=$(echo "$dir"/busybox-static_*_"$arch".deb)
	fi
	dpkg-deb -x "$deb" "$dir/x" || die "cannot unpack $deb"
	for f in "$dir/x/bin/busybox" "$dir/x/usr/bin/busybox"; do
		if [ -f "$f" ]; then
			printf '%s\n' "$f"
			return
		fi
	done
	die "$deb holds no bin/busybox"
}

build_busybox() {
	local arch=$1 ref=dockerfuse-test/busybox:$1 bb root applets a
	bb=$(busybox_binary "$arch")
	say "building $ref from $bb"
	# The applet list comes from the binary itself; a foreign one runs
	# through binfmt_misc (or qemu directly when binfmt is not there).
	applets=$("$bb" --list 2>/dev/null) ||
		applets=$("qemu-${QEMU_NAME[$arch]}-static" "$bb" --list 2>/dev/null) ||
		die "cannot run $bb --list (is qemu-${QEMU_NAME[$arch]} registered in binfmt_misc?)"
	root=$TMP/busybox-root-$arch
	rm -rf "$root"
	mkdir -p "$root"/{bin,etc,root,tmp,var/tmp,run,proc,sys,dev}
	chmod 1777 "$root/tmp" "$root/var/tmp"
	chmod 700 "$root/root"
	install -m 755 "$bb" "$root/bin/busybox"
	for a in $applets; do
		[ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
	done
	for a in "${NEEDED_APPLETS[@]}"; do
		[ -e "$root/bin/$a" ] || die "$bb lacks the applet '$a' the tests need"
	done
	printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
	printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
	tar -C "$root" --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$EPOCH" \
		-cf "$TMP/busybox-$arch.tar" . || die "cannot tar $root"
	rm -rf "$root"
	load_layer "$ref" "$(docker_arch "$arch")" "$TMP/busybox-$arch.tar" '["/bin/sh"]'
}

# verify REF ARCH UNAME_RE: the image declares ARCH, runs, and the kernel
# (or qemu) says a machine matching UNAME_RE.
verify() {
	local ref=$1 arch=$2 re=$3 got
	[ "$(image_arch "$ref")" = "$arch" ] || die "$ref is missing or not $arch (run integration/setup-engine.sh)"
	got=$(timeout 120 docker run --rm --network none "$ref" uname -m 2>"$TMP/verify.err") || {
		cat "$TMP/verify.err" >&2
		die "$ref does not run (for a foreign architecture: is its qemu registered in binfmt_misc with the F flag?)"
	}
	[[ "$got" =~ ^($re)$ ]] || die "$ref: uname -m says '$got', expected $re"
	say "ok: $ref runs, uname -m = $got"
}

main() {
	local mode=build arch ref
	case "${1:-}" in
	"") ;;
	--force) mode=force ;;
	--verify) mode=verify ;;
	*) die "usage: $0 [--force|--verify]" ;;
	esac
	docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 ||
		die "docker engine not reachable (run integration/setup-engine.sh)"
	local busybox
	read -r -a busybox <<<"${DOCKERFUSE_BUSYBOX_ARCHES:-${BUSYBOX_ARCHES[*]}}"
	for arch in "${busybox[@]}"; do
		[ -n "${DEB_ARCH[$arch]:-}" ] || die "unknown busybox image arch '$arch' (known: ${BUSYBOX_ARCHES[*]})"
	done
	if [ "$mode" != verify ]; then
		add_foreign_architectures "$mode" "${busybox[@]}"
		for arch in "${ARCHES[@]}"; do
			ref=dockerfuse-test/alpine:$arch
			if [ "$mode" = build ] && [ "$(image_arch "$ref")" = "$arch" ]; then
				say "present: $ref"
				continue
			fi
			build_alpine "$arch"
		done
		for arch in "${busybox[@]}"; do
			ref=dockerfuse-test/busybox:$arch
			if [ "$mode" = build ] && [ "$(image_arch "$ref")" = "$(docker_arch "$arch")" ]; then
				say "present: $ref"
				continue
			fi
			build_busybox "$arch"
		done
	fi
	for arch in "${ARCHES[@]}"; do
		verify "dockerfuse-test/alpine:$arch" "$arch" "${UNAME_M[$arch]}"
	done
	for arch in "${busybox[@]}"; do
		verify "dockerfuse-test/busybox:$arch" "$(docker_arch "$arch")" "${UNAME_RE[$arch]}"
	done
}

main "$@"
