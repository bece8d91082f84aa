#!/usr/bin/env bash
# Installs the tools of the satellites' zig route (crates/dockerfuse/build.rs),
# idempotently, with the versions crates/dockerfuse/satellite-toolchain.txt
# pins:
#   - the rustup toolchain nightly-DATE, minimal, with rust-src (build.rs
#     rebuilds the standard library for each satellite target with it);
#   - zig and cargo-zigbuild from PyPI, in a Python virtual environment of
#     their own under ${DOCKERFUSE_SATELLITE_TOOLS:-~/.cache/dockerfuse/satellite-tools}
#     (where build.rs looks; nothing is installed system-wide). On Debian a
#     missing venv module is installed with apt (python3-venv).
# Downloads are tried three times before the script gives up. A second run
# takes a second. Usage: bash .ci/satellite-toolchain.sh
set -euo pipefail

say() { printf '[satellite-toolchain] %s\n' "$*" >&2; }
die() {
	printf '[satellite-toolchain] ERROR: %s\n' "$*" >&2
	exit 1
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PINS=$ROOT/crates/dockerfuse/satellite-toolchain.txt
pin() {
	local v
	v=$(sed -n "s/^$1[[:space:]]\{1,\}\([^[:space:]#]*\).*/\1/p" "$PINS")
	[ -n "$v" ] || die "$PINS has no '$1' line"
	printf '%s\n' "$v"
}
NIGHTLY=nightly-$(pin nightly)
ZIGLANG=$(pin ziglang)
ZIGBUILD=$(pin cargo-zigbuild)
BASE=${DOCKERFUSE_SATELLITE_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/dockerfuse/satellite-tools}
VENV=$BASE/zig-$ZIGLANG-zigbuild-$ZIGBUILD

# retry DESCRIPTION CMD...: three tries, 10 and 20 s apart.
retry() {
	local what=$1 try
	shift
	for try in 1 2 3; do
		"$@" && return 0
		say "WARNING: $what failed (try $try of 3)"
		[ "$try" = 3 ] || sleep $((try * 10))
	done
	die "$what failed three times"
}

command -v rustup >/dev/null 2>&1 || die "rustup not found"
if [ -d "$(rustup run "$NIGHTLY" rustc --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library" ]; then
	say "$NIGHTLY with rust-src present"
else
	say "installing $NIGHTLY with rust-src"
	retry "rustup toolchain install $NIGHTLY" \
		rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src --no-self-update
fi

if [ -x "$VENV/bin/cargo-zigbuild" ] && [ "$("$VENV/bin/python3" -m ziglang version 2>/dev/null)" = "$ZIGLANG" ]; then
	say "zig $ZIGLANG and cargo-zigbuild $ZIGBUILD present ($VENV)"
	exit 0
fi
command -v python3 >/dev/null 2>&1 || die "python3 not found"
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
	command -v apt-get >/dev/null 2>&1 || die "python3 has no venv module (install it)"
	say "installing python3-venv"
	export DEBIAN_FRONTEND=noninteractive
	retry "apt-get install python3-venv" sh -c \
		'apt-get -o DPkg::Lock::Timeout=300 update -qq || true; apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends python3-venv'
fi
say "installing zig $ZIGLANG and cargo-zigbuild $ZIGBUILD in $VENV"
rm -rf "$VENV"
mkdir -p "$BASE"
python3 -m venv "$VENV"
retry "pip install ziglang==$ZIGLANG cargo-zigbuild==$ZIGBUILD" \
	"$VENV/bin/pip" install -q --disable-pip-version-check "ziglang==$ZIGLANG" "cargo-zigbuild==$ZIGBUILD"
[ "$("$VENV/bin/python3" -m ziglang version)" = "$ZIGLANG" ] || die "zig in $VENV is not $ZIGLANG"
say "zig $ZIGLANG and cargo-zigbuild $ZIGBUILD installed ($VENV)"
