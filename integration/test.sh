#!/usr/bin/env bash
# The project's one test command (the README gives it, .ci/run runs it):
#   1. integration/setup-engine.sh   dockerd, binfmt_misc/qemu, fuse, test images;
#      .ci/satellite-toolchain.sh    the satellites' zig route (pinned nightly
#                                    with rust-src, zig, cargo-zigbuild)
#   2. shellcheck over every script, cargo fmt --check, clippy -D warnings,
#      cargo test (whole workspace), the satellite's pipe tests against
#      each embedded satellite (integration/satellite-arches.sh: qemu-user
#      for the foreign ones)
#   3. debug build of dockerfuse (the satellites embedded)
#   4. integration/run-matrix.sh against that binary (amd64/arm64 matrix),
#      through nix/vm-matrix.sh: ONE run of the scenarios the NixOS VM test
#      runs, with PATH restricted to the tools nix/vm-matrix.txt gives the
#      VM and the VM's environment, then the scenarios marked not-in-vm
#      there (if any) under the normal PATH. A scenario needing a tool the
#      VM lacks fails here ("MISSING TOOL").
#   5. nix/check-offline.sh, when it exists
# Stops at the first failing step with a non-zero status and names it.
# Works from any directory. Extra environment is passed through to the
# steps (DOCKERFUSE_MATRIX, DOCKERFUSE_TEST_SCENARIOS, DOCKERFUSE_SKIP_INSTALL...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
START=$SECONDS

if ! command -v cargo >/dev/null 2>&1 && [ -f "${HOME:-/root}/.cargo/env" ]; then
	# shellcheck source=/dev/null
	. "${HOME:-/root}/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || {
	echo "test.sh: cargo not found (install rustup)" >&2
	exit 1
}

# step NAME CMD...: run one step, timed; stop everything if it fails.
step() {
	local name=$1 t0=$SECONDS rc=0
	shift
	printf '\n==> %s\n' "$name"
	"$@" || rc=$?
	if [ "$rc" -ne 0 ]; then
		printf '\ntest.sh: FAILED at step "%s" (exit %d, after %ds)\n' "$name" "$rc" $((SECONDS - START)) >&2
		exit 1
	fi
	printf '==> %s: ok (%ds)\n' "$name" $((SECONDS - t0))
}

step "engine setup" bash integration/setup-engine.sh
step "satellite toolchain" bash .ci/satellite-toolchain.sh
# Every shell script of the project: by name, and by its bash shebang.
mapfile -t SCRIPTS < <({
	git ls-files '*.sh' .ci/run
	git grep -lI '^#!.*bash' -- ':!*.sh' ':!*.md' ':!*.rs' ':!*.nix' ':!*.py' || true
} | sort -u)
step "shellcheck (${#SCRIPTS[@]} scripts)" shellcheck -x "${SCRIPTS[@]}"
step "cargo fmt" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
step "cargo test" cargo test --workspace
step "satellite pipe tests on every arch" bash integration/satellite-arches.sh
# The debug binary (cargo test built it already): the scenarios check
# behaviour, not speed, and a second (release) build would cost CI minutes.
step "build" cargo build -p dockerfuse
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/dockerfuse
step "integration tests (the VM's list and PATH, then not-in-vm)" env DOCKERFUSE="$BIN" bash nix/vm-matrix.sh run
if [ -f nix/check-offline.sh ]; then
	step "nix offline check" env DOCKERFUSE="$BIN" bash nix/check-offline.sh
fi
printf '\ntest.sh: all steps passed (%ds)\n' $((SECONDS - START))
