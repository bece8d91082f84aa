#!/usr/bin/env bash
# Integration test driver: runs the scenarios against a real Docker engine
# for every (container arch, satellite arch) pair and adds up the results.
#
#   core            alpine:<carch> container, --satellite-arch <sarch>, for each
#                   pair in the matrix (amd64|arm64 x amd64|arm64)
#   busybox         core again on busybox:<carch> (static busybox, no libc),
#                   satellite <carch> (off with DOCKERFUSE_TEST_BUSYBOX=0)
#   arches          the short arch scenario (scenarios/arches.sh) on busybox:<tag>
#                   for each tag of DOCKERFUSE_TEST_ARCHES (runs natively)
#   arches-qemu     the same for DOCKERFUSE_TEST_QEMU_ARCHES (under qemu-user)
#                   for each tag of DOCKERFUSE_TEST_ARCHES, with the satellite
#                   of that arch forced; for an arch this build has no
#                   satellite for: that forcing it fails plainly and the
#                   automatic choice mounts
#   container-stop  once per container arch, on a fresh container
#   reconnect       once: --reconnect across `docker restart`, its timeout
#                   after `docker stop`, and exit 3 without it
#   errors          once
#   cli-plugin      once: `docker mount` through the real docker CLI (plugin
#                   install, metadata, --help, contexts) and --context
#   mount-helper    once: `mount -t fuse.dockerfuse`, an fstab line, umount
#   list-unmount    once: `dockerfuse list [--json]`, `dockerfuse unmount`
#   completions     once: bash/zsh/fish completions (container names), man page
#   ssh-engine      once: ssh:// engines through a scenario-owned sshd
#   real-user, real-readonly, real-noexec, real-distroless, real-caps
#                   once per container arch, on containers they start
#                   themselves (dfreal-*: non-root user, --read-only,
#                   noexec/no /tmp, no shell, --cap-drop ALL...; see
#                   scenarios/real-*.sh)
#   real-tls        once: the engine behind TLS on 127.0.0.1, reached by
#                   DOCKER_HOST, -H and docker contexts
#   real-podman     once (podman from setup-engine.sh): a container
#                   of `podman system service`, plain and --read-only
#   differential    once per container arch (satellite of the same arch): a
#                   seeded random op sequence through the mount vs. directly
#   programs        once per container arch (satellite of the same arch): git,
#                   tar, rsync, sqlite3 WAL, an editor-style save
#   posix           once per container arch (satellite of the same arch):
#                   --allow-other identity, st_ino, statfs, ns times, O_APPEND,
#                   locks, a 100,000-entry directory
#   identity        once per container arch (satellite of the same arch):
#                   --allow-other as a user with supplementary groups: group
#                   rights, chgrp, setuid/setgid clearing, search permission
#                   above cached names, against direct access
#   local           once per container arch (satellite of the same arch):
#                   --transport local, FUSE passthrough, descriptors, pause
#                   with open files, --no-passthrough, --transport exec
#
# Transports: every run uses dockerfuse's default (--transport auto: the
# local channel and passthrough when the engine is on this host and the
# run is root, else the exec stream), or DFIT_TRANSPORT when set. Then
# core, faults, differential, programs and posix run once more per
# container arch with DFIT_TRANSPORT=exec ("[exec]" in the report; the
# remote-engine scenario real-tls is exec by nature), so both paths are covered
# without running the whole matrix twice (off with DOCKERFUSE_TEST_EXEC=0,
# and not done when DFIT_TRANSPORT=exec already).
#
# Each scenario runs in its own process under a watchdog, on containers
# named dfit-*-<pid> and labelled dfit.run=<pid>, which are removed on every
# exit path (Ctrl-C included), as are any mounts left below the scratch dir.
# A scenario counts as failed when it exits non-zero. The last line printed
# is the total, alone on its line: "N passed, N failed". Exit 1 when
# anything failed or no assertion ran. Nothing is ever skipped: no engine,
# no image or no binary is a loud failure.
#
# Environment:
#   DOCKERFUSE                  the dockerfuse binary (required)
#   DOCKERFUSE_MATRIX           pairs carch:sarch to run, space or comma separated
#                               (default: all four)
#   DOCKERFUSE_TEST_SCENARIOS   subset of: core busybox arches container-stop reconnect errors faults
#                               cli-plugin mount-helper list-unmount completions
#                               ssh-engine
#                               differential coherence programs posix identity local
#                               real-user real-readonly real-noexec
#                               real-distroless real-caps real-tls
#                               real-podman
#                               engine-restart (restarts dockerd; runs last)
#   DOCKERFUSE_TEST_BUSYBOX     0 to leave out the busybox images (default 1)
#   DOCKERFUSE_TEST_ARCHES      busybox image tags for `arches` (default: amd64 386)
#   DOCKERFUSE_TEST_QEMU_ARCHES busybox image tags for `arches-qemu` (default:
#                               arm64 armv7 armv6 ppc64le s390x)
#   DOCKERFUSE_TEST_EXEC        0 to leave out the extra exec-transport runs (default 1)
#   DFIT_TRANSPORT              --transport for every mount (auto, exec, local;
#                               default: dockerfuse's own, auto)
#   DFIT_SCENARIO_TIMEOUT       watchdog per scenario in s (default 600)
#   DFIT_OP_TIMEOUT, DFIT_MOUNT_TIMEOUT, DFIT_BIG_TIMEOUT: see lib.sh/core.sh
#   DFIT_DIFF_OPS, DFIT_DIFF_SEED: see scenarios/differential.sh
#   DFIT_COHERENCE_ROUNDS, DFIT_COHERENCE_BOUND: see scenarios/coherence.sh
#
# `run-matrix.sh --known-scenarios` prints the scenario names it accepts.
# A command that is not on PATH is a failure of its own ("MISSING TOOL",
# counted in the total), whichever scenario ran it: nix/vm-matrix.sh runs
# this script with PATH restricted to what the NixOS VM test provides.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
say() { printf '[matrix] %s\n' "$*"; }
die() {
	printf '[matrix] ERROR: %s\n' "$*" >&2
	exit 1
}

# --- inputs ----------------------------------------------------------------------------
KNOWN_SCENARIOS=(core busybox arches arches-qemu container-stop reconnect errors faults
	cli-plugin mount-helper list-unmount completions ssh-engine
	differential coherence programs posix identity local
	real-user real-readonly real-noexec real-distroless real-caps real-tls real-podman
	engine-restart)
if [ "${1:-}" = --known-scenarios ]; then
	printf '%s\n' "${KNOWN_SCENARIOS[@]}"
	exit 0
fi
[ "$#" -eq 0 ] || die "usage: $0 [--known-scenarios] (everything else comes from the environment)"
[ -n "${DOCKERFUSE:-}" ] || die "DOCKERFUSE must name the dockerfuse binary (e.g. DOCKERFUSE=target/release/dockerfuse $0)"
if [ ! -f "$DOCKERFUSE" ] || [ ! -x "$DOCKERFUSE" ]; then
	die "DOCKERFUSE=$DOCKERFUSE is not an executable file"
fi
DOCKERFUSE=$(realpath "$DOCKERFUSE")
export DOCKERFUSE

read -r -a MATRIX <<<"$(tr ',' ' ' <<<"${DOCKERFUSE_MATRIX:-amd64:amd64 amd64:arm64 arm64:amd64 arm64:arm64}")"
REAL_SCENARIOS="real-user real-readonly real-noexec real-distroless real-caps real-tls real-podman"
read -r -a SCENARIOS <<<"$(tr ',' ' ' <<<"${DOCKERFUSE_TEST_SCENARIOS:-core busybox arches arches-qemu container-stop reconnect errors faults cli-plugin mount-helper list-unmount completions ssh-engine differential coherence programs posix identity local $REAL_SCENARIOS engine-restart}")"
[ "${#MATRIX[@]}" -gt 0 ] || die "DOCKERFUSE_MATRIX is empty"
[ "${#SCENARIOS[@]}" -gt 0 ] || die "DOCKERFUSE_TEST_SCENARIOS is empty"
CARCHES=() # container arches in matrix order, each once
for pair in "${MATRIX[@]}"; do
	[[ "$pair" =~ ^(amd64|arm64):(amd64|arm64)$ ]] || die "bad DOCKERFUSE_MATRIX entry '$pair' (want carch:sarch, each amd64 or arm64)"
	[[ " ${CARCHES[*]} " == *" ${pair%%:*} "* ]] || CARCHES+=("${pair%%:*}")
done
for s in "${SCENARIOS[@]}"; do
	[[ " ${KNOWN_SCENARIOS[*]} " == *" $s "* ]] ||
		die "unknown scenario '$s' in DOCKERFUSE_TEST_SCENARIOS (known: ${KNOWN_SCENARIOS[*]})"
done
want() { [[ " ${SCENARIOS[*]} " == *" $1 "* ]]; }
if [ "${DOCKERFUSE_TEST_BUSYBOX:-1}" = 0 ] && want busybox; then
	say "DOCKERFUSE_TEST_BUSYBOX=0: not running the busybox scenarios"
	SCENARIOS=("${SCENARIOS[@]/busybox/}")
fi
SCENARIO_TIMEOUT=${DFIT_SCENARIO_TIMEOUT:-600}

# A command not found on PATH, here or in any scenario (lib.sh defines the
# same handler), is named on stderr and recorded in $DFIT_MISSING_TOOLS.
command_not_found_handle() {
	printf 'MISSING TOOL: %s is not on PATH (PATH=%s)\n' "$1" "$PATH" >&2
	[ -z "${DFIT_MISSING_TOOLS:-}" ] || printf '%s\n' "$1" >>"$DFIT_MISSING_TOOLS"
	return 127
}

command -v fusermount3 >/dev/null 2>&1 || die "fusermount3 not found (run integration/setup-engine.sh)"
timeout 30 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 ||
	die "the docker engine does not answer (docker info failed): run integration/setup-engine.sh"
wants_busybox() {
	want busybox || want real-readonly || want real-noexec || want real-distroless
}
for kind in alpine busybox; do
	[ "$kind" = alpine ] || wants_busybox || continue
	for arch in "${CARCHES[@]}"; do
		got=$(docker image inspect -f '{{.Architecture}}' "dockerfuse-test/$kind:$arch" 2>/dev/null || true)
		[ "$got" = "$arch" ] || die "image dockerfuse-test/$kind:$arch missing or not $arch: run integration/setup-engine.sh"
	done
done

# The arches scenario: image tag -> the satellite's --satellite-arch name.
declare -A ARCH_SATELLITE=([386]=386 [armv7]=arm/v7 [armv6]=arm/v6 [ppc64le]=ppc64le
	[riscv64]=riscv64 [s390x]=s390x [amd64]=amd64 [arm64]=arm64)
TEST_ARCHES=()   # image tags, and for each the scenario script that runs it
declare -A ARCH_SCRIPT=()
if want arches; then
	read -r -a more <<<"$(tr ',' ' ' <<<"${DOCKERFUSE_TEST_ARCHES:-amd64 386}")"
	for t in "${more[@]}"; do TEST_ARCHES+=("$t") ARCH_SCRIPT[$t]=arches; done
fi
if want arches-qemu; then
	read -r -a more <<<"$(tr ',' ' ' <<<"${DOCKERFUSE_TEST_QEMU_ARCHES:-arm64 armv7 armv6 ppc64le s390x}")"
	for t in "${more[@]}"; do TEST_ARCHES+=("$t") ARCH_SCRIPT[$t]=arches-qemu; done
fi
if [ "${#TEST_ARCHES[@]}" -gt 0 ]; then
	for t in "${TEST_ARCHES[@]}"; do
		[ -n "${ARCH_SATELLITE[$t]:-}" ] || die "unknown arch '$t' in DOCKERFUSE_TEST_ARCHES (${!ARCH_SATELLITE[*]})"
		docker image inspect "dockerfuse-test/busybox:$t" >/dev/null 2>&1 ||
			die "image dockerfuse-test/busybox:$t missing: run integration/setup-engine.sh"
	done
	# The satellites this dockerfuse carries ("satellite NAME (TARGET): ...").
	EMBEDDED=$("$DOCKERFUSE" -version -debug | awk '$1 == "satellite" && $3 ~ /^\(/ { sub(/:$/, "", $2); print $2 }')
fi
# --- state and cleanup -------------------------------------------------------------------
RUN_ID=$$
LABEL=dfit.run=$RUN_ID
BASE=$(mktemp -d "${TMPDIR:-/tmp}/dfit-matrix.XXXXXX")
export DFIT_MISSING_TOOLS=$BASE/missing-tools
TOTAL_PASSED=0
TOTAL_FAILED=0
REPORT=()
ALL_RAN=0
CUR_PID= # the running scenario's watchdog (timeout) process
TAIL_PID=

mounts_below() { awk -v b="$BASE/" 'index($2, b) == 1 { print $2 }' /proc/mounts | sort -r; }

cleanup() {
	local rc=$? m p
	trap - EXIT INT TERM HUP
	set +e
	if [ "$ALL_RAN" != 1 ]; then
		TOTAL_FAILED=$((TOTAL_FAILED + 1))
		REPORT+=("run interrupted (exit $rc): not every scenario ran")
	fi
	if [ -n "$CUR_PID" ] && kill -0 "$CUR_PID" 2>/dev/null; then
		say "stopping the running scenario"
		kill -TERM "$CUR_PID" 2>/dev/null
		wait "$CUR_PID" 2>/dev/null
	fi
	[ -z "$TAIL_PID" ] || kill "$TAIL_PID" 2>/dev/null
	if [ -s "$DFIT_MISSING_TOOLS" ]; then
		TOTAL_FAILED=$((TOTAL_FAILED + 1))
		REPORT+=("MISSING TOOLS (not on PATH): $(sort -u "$DFIT_MISSING_TOOLS" | tr '\n' ' ')")
	fi
	docker ps -aq --filter "label=$LABEL" | xargs -r docker rm -f >/dev/null 2>&1
	# Backstops: the scenarios take their mounts down themselves.
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/exe" 2>/dev/null)" = "$DOCKERFUSE" ] || continue
		[[ "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" == *"$BASE/"* ]] || continue
		say "killing leftover dockerfuse ${p#/proc/}"
		kill -TERM "${p#/proc/}" 2>/dev/null
	done
	for m in $(mounts_below); do
		say "unmounting leftover $m"
		timeout 10 fusermount3 -u "$m" 2>/dev/null || timeout 10 umount -l "$m" 2>/dev/null
	done
	if [ -z "$(mounts_below)" ]; then
		rm -rf --one-file-system "$BASE"
	else
		say "NOT removing $BASE: still mounted below it"
		TOTAL_FAILED=$((TOTAL_FAILED + 1))
	fi
	echo
	say "results:"
	for m in "${REPORT[@]}"; do printf '  %s\n' "$m"; done
	printf '%d passed, %d failed\n' "$TOTAL_PASSED" "$TOTAL_FAILED"
	if [ "$TOTAL_FAILED" -gt 0 ] || [ "$TOTAL_PASSED" -eq 0 ]; then exit 1; fi
	exit 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# start_container NAME IMAGE CMD...: docker run -d, labelled; fails loudly
# into the report (the scenario using it then counts as failed).
start_container() {
	local name=$1 image=$2
	shift 2
	local out
	# (its output only matters when it fails: it warns about every arm64 image)
	if out=$(timeout 120 docker run -d --name "$name" --label "$LABEL" --network none "$image" "$@" 2>&1); then
		return 0
	fi
	say "could not start $name from $image:"
	printf '%s\n' "$out"
	return 1
}

# run_scenario TITLE SCRIPT [VAR=VALUE...]: run one scenario in its own
# process (under a watchdog), stream its output, and add its counts.
SEQ=0
run_scenario() {
	local title=$1 scenario=$2 workdir log status=0 line p=0 f=0 note=
	shift 2
	SEQ=$((SEQ + 1))
	workdir=$BASE/$SEQ-$scenario
	mkdir -p "$workdir"
	log=$workdir/output.log
	: >"$log"
	echo
	say "=== $title"
	env "$@" WORKDIR="$workdir" DFIT_LABEL="$LABEL" \
		timeout -k 60 "$SCENARIO_TIMEOUT" bash "$HERE/scenarios/$scenario.sh" >"$log" 2>&1 </dev/null &
	CUR_PID=$!
	tail -n +1 -f --pid="$CUR_PID" "$log" &
	TAIL_PID=$!
	wait "$CUR_PID" || status=$?
	CUR_PID=
	wait "$TAIL_PID" || true
	TAIL_PID=
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
	if [ -n "$line" ]; then
		read -r p _ f _ <<<"$line"
	fi
	if [ "$status" -eq 124 ]; then note=" (watchdog: killed after ${SCENARIO_TIMEOUT}s)"; fi
	if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1 # the scenario failed without an assertion saying so
		note="$note (exited $status without a failed assertion)"
	fi
	TOTAL_PASSED=$((TOTAL_PASSED + p))
	TOTAL_FAILED=$((TOTAL_FAILED + f))
	REPORT+=("$(printf '%-44s %3d passed, %3d failed%s' "$title" "$p" "$f" "$note")")
}

# setup_failed TITLE: count a scenario whose container could not start.
setup_failed() {
	TOTAL_FAILED=$((TOTAL_FAILED + 1))
	REPORT+=("$(printf '%-44s not run: its container did not start' "$1")")
}

# with_container NAME TITLE SCENARIO IMAGE [VAR=VALUE...]: a fresh container
# sleeping forever, one scenario on it, the container removed.
with_container() {
	local name=$1-$RUN_ID title=$2 scenario=$3 image=$4 forever=infinity
	shift 4
	# busybox's sleep takes no "infinity"
	[[ "$image" != */busybox:* ]] || forever=1000000000
	if start_container "$name" "$image" sleep "$forever"; then
		run_scenario "$title" "$scenario" CONTAINER="$name" "$@"
	else
		setup_failed "$title"
	fi
	docker rm -f "$name" >/dev/null 2>&1 || true
}

# --- the runs ------------------------------------------------------------------------------
say "dockerfuse: $DOCKERFUSE"
say "matrix: ${MATRIX[*]}; scenarios: ${SCENARIOS[*]}; transport: ${DFIT_TRANSPORT:-auto}; scratch: $BASE"
if want core; then
	for pair in "${MATRIX[@]}"; do
		c=${pair%%:*} s=${pair##*:}
		with_container "dfit-$c-$s" "core alpine:$c satellite $s" core "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$s"
	done
fi
if want busybox; then
	for c in "${CARCHES[@]}"; do
		with_container "dfit-busybox-$c" "core busybox:$c satellite $c" core "dockerfuse-test/busybox:$c" SATELLITE_ARCH="$c"
	done
fi
if [ "${#TEST_ARCHES[@]}" -gt 0 ]; then
	for t in "${TEST_ARCHES[@]}"; do
		sat=${ARCH_SATELLITE[$t]}
		if grep -qx "$sat" <<<"$EMBEDDED"; then
			with_container "dfit-arch-$t" "arch busybox:$t satellite $sat" "${ARCH_SCRIPT[$t]}" \
				"dockerfuse-test/busybox:$t" SATELLITE_ARCH="$sat" DFIT_BIG_MIB=16
		else
			with_container "dfit-arch-$t" "arch busybox:$t (no $sat satellite: auto)" "${ARCH_SCRIPT[$t]}" \
				"dockerfuse-test/busybox:$t" SATELLITE_ARCH= MISSING_ARCH="$sat" DFIT_BIG_MIB=16
		fi
	done
fi
if want container-stop; then
	for c in "${CARCHES[@]}"; do
		with_container "dfit-stop-$c" "container-stop alpine:$c" container-stop "dockerfuse-test/alpine:$c"
	done
fi
if want reconnect; then
	with_container dfit-reconn "reconnect alpine:${CARCHES[0]}" reconnect "dockerfuse-test/alpine:${CARCHES[0]}"
fi
if want faults; then
	for c in "${CARCHES[@]}"; do
		with_container "dfit-faults-$c" "faults alpine:$c" faults "dockerfuse-test/alpine:$c"
	done
fi
if want errors; then
	with_container dfit-errors "errors alpine:${CARCHES[0]}" errors "dockerfuse-test/alpine:${CARCHES[0]}"
fi
if want cli-plugin; then
	with_container dfit-plugin "cli-plugin alpine:${CARCHES[0]}" cli-plugin "dockerfuse-test/alpine:${CARCHES[0]}"
fi
if want mount-helper; then
	with_container dfit-helper "mount-helper alpine:${CARCHES[0]}" mount-helper "dockerfuse-test/alpine:${CARCHES[0]}"
fi
if want list-unmount; then
	with_container dfit-list "list-unmount alpine:${CARCHES[0]}" list-unmount "dockerfuse-test/alpine:${CARCHES[0]}"
fi
if want completions; then
	with_container dfit-compl "completions alpine:${CARCHES[0]}" completions "dockerfuse-test/alpine:${CARCHES[0]}"
fi
if want ssh-engine; then
	with_container dfit-ssh "ssh-engine alpine:${CARCHES[0]}" ssh-engine "dockerfuse-test/alpine:${CARCHES[0]}"
fi
if want differential; then
	for c in "${CARCHES[@]}"; do
		with_container "dfit-diff-$c" "differential alpine:$c satellite $c" differential "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$c"
	done
fi
if want coherence; then
	for c in "${CARCHES[@]}"; do
		with_container "dfit-coh-$c" "coherence alpine:$c satellite $c" coherence "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$c"
	done
fi
if want programs; then
	for c in "${CARCHES[@]}"; do
		with_container "dfit-prog-$c" "programs alpine:$c satellite $c" programs "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$c"
	done
fi
if want posix; then
	for c in "${CARCHES[@]}"; do
		with_container "dfit-posix-$c" "posix alpine:$c satellite $c" posix "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$c"
	done
fi
if want identity; then
	for c in "${CARCHES[@]}"; do
		with_container "dfit-ident-$c" "identity alpine:$c satellite $c" identity "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$c"
	done
fi
if want local; then
	for c in "${CARCHES[@]}"; do
		with_container "dfit-local-$c" "local alpine:$c satellite $c" local "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$c"
	done
fi
if [ "${DOCKERFUSE_TEST_EXEC:-1}" != 0 ] && [ "${DFIT_TRANSPORT:-auto}" != exec ]; then
	for c in "${CARCHES[@]}"; do
		if want core; then
			with_container "dfit-exec-$c" "core alpine:$c satellite $c [exec]" core "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$c" DFIT_TRANSPORT=exec
		fi
		if want faults; then
			with_container "dfit-exec-faults-$c" "faults alpine:$c [exec]" faults "dockerfuse-test/alpine:$c" DFIT_TRANSPORT=exec
		fi
		if want differential; then
			with_container "dfit-exec-diff-$c" "differential alpine:$c satellite $c [exec]" differential "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$c" DFIT_TRANSPORT=exec
		fi
		if want programs; then
			with_container "dfit-exec-prog-$c" "programs alpine:$c satellite $c [exec]" programs "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$c" DFIT_TRANSPORT=exec
		fi
		if want posix; then
			with_container "dfit-exec-posix-$c" "posix alpine:$c satellite $c [exec]" posix "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$c" DFIT_TRANSPORT=exec
		fi
	done
fi
# The real-* scenarios start their own containers (dfreal-*, labelled).
for real in real-user real-readonly real-noexec real-distroless real-caps; do
	want "$real" || continue
	for c in "${CARCHES[@]}"; do
		run_scenario "$real $c" "$real" CARCH="$c"
	done
done
if want real-tls; then
	run_scenario "real-tls alpine:${CARCHES[0]}" real-tls CARCH="${CARCHES[0]}"
fi
if want real-podman; then
	run_scenario "real-podman alpine:${CARCHES[0]}" real-podman CARCH="${CARCHES[0]}"
fi
# Last: it restarts the engine (and waits until it answers again).
if want engine-restart; then
	with_container dfit-restart "engine-restart alpine:${CARCHES[0]}" engine-restart "dockerfuse-test/alpine:${CARCHES[0]}"
fi
ALL_RAN=1
# cleanup (the EXIT trap) prints the report and the total line.
