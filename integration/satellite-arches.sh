#!/usr/bin/env bash
# The satellite's pipe tests (crates/satellite/tests/over_pipes.rs) against
# each satellite this build embeds, one run per architecture: the host's
# own and 386 natively, the others under qemu-user through binfmt_misc
# (integration/setup-engine.sh registers it), arm/v6 with an ARMv6 CPU
# (qemu-arm-static -cpu arm1176, where an ARMv7 instruction would die with
# SIGILL). The hello test checks each one reports its own architecture.
#
# The satellites are taken where crates/dockerfuse/build.rs built them:
# $CARGO_TARGET_DIR/satellites-zig (the zig route), else .../satellites.
# Environment:
#   CARGO_TARGET_DIR            the build's target directory (default: target)
#   DOCKERFUSE_PIPE_ARCHES      the architectures to test (default: all eight:
#                               amd64 arm64 386 armv7 armv6 ppc64le riscv64 s390x)
# Each architecture's satellite missing is a failure, not a skip. Prints one
# line per architecture with its time and "N passed, N failed"; exits 1 on
# any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
declare -A TRIPLE=([amd64]=x86_64-unknown-linux-musl [arm64]=aarch64-unknown-linux-musl
	[386]=i686-unknown-linux-musl [armv7]=armv7-unknown-linux-musleabihf
	[armv6]=arm-unknown-linux-musleabihf [ppc64le]=powerpc64le-unknown-linux-musl
	[riscv64]=riscv64gc-unknown-linux-musl [s390x]=s390x-unknown-linux-musl)
declare -A RUNNER=([armv6]="qemu-arm-static -cpu arm1176")
read -r -a ARCHES <<<"$(tr ',' ' ' <<<"${DOCKERFUSE_PIPE_ARCHES:-amd64 arm64 386 armv7 armv6 ppc64le riscv64 s390x}")"

pass=0 fail=0
# The test binary once; each architecture then runs it.
cargo test -q -p dockerfuse-satellite --test over_pipes --no-run
for a in "${ARCHES[@]}"; do
	t=${TRIPLE[$a]:-}
	[ -n "$t" ] || {
		echo "FAIL $a: not an architecture of dockerfuse (${!TRIPLE[*]})"
		fail=$((fail + 1))
		continue
	}
	sat=
	for d in satellites-zig satellites; do
		[ -f "$TARGET/$d/$t/satellite/dockerfuse-satellite" ] && {
			sat=$TARGET/$d/$t/satellite/dockerfuse-satellite
			break
		}
	done
	if [ -z "$sat" ]; then
		echo "FAIL $a: this build has no $t satellite (under $TARGET/satellites-zig or satellites)"
		fail=$((fail + 1))
		continue
	fi
	t0=$SECONDS
	if out=$(DOCKERFUSE_TEST_SATELLITE=$sat DOCKERFUSE_TEST_SATELLITE_RUNNER=${RUNNER[$a]:-} \
		cargo test -q -p dockerfuse-satellite --test over_pipes 2>&1); then
		echo "ok   $a ($t${RUNNER[$a]:+, ${RUNNER[$a]}}): $(grep -o '[0-9]* passed' <<<"$out" | tail -n 1) in $((SECONDS - t0))s"
		pass=$((pass + 1))
	else
		echo "FAIL $a ($t${RUNNER[$a]:+, ${RUNNER[$a]}}) after $((SECONDS - t0))s:"
		printf '%s\n' "$out" | tail -n 40 | sed 's/^/       /'
		fail=$((fail + 1))
	fi
done
printf '%d passed, %d failed\n' "$pass" "$fail"
[ "$fail" -eq 0 ]
