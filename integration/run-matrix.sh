#!/usr/bin/env bash
# Integration test driver: runs the scenarios against a real Docker engine
# for every (container arch, satellite arch) pair and adds up the results.
#
# The scenarios, and how each runs (per matrix pair, per container arch,
# once, on the busybox images, with its own containers; forced satellite;
# an extra run on the exec transport), are declared in scenarios.txt
# beside this script: the one list, which the NixOS VM test reads too.
# integration/README.md says what each scenario checks.
#
# Transports: every run uses dockerfuse's default (--transport auto: the
# local channel and passthrough when the engine is on this host and the
# run is root, else the exec stream), or DFIT_TRANSPORT when set. Then the
# scenarios flagged `exec` in scenarios.txt run once more per container
# arch with DFIT_TRANSPORT=exec ("[exec]" in the report; the remote-engine
# scenario real-tls is exec by nature), so both paths are covered without
# running the whole matrix twice (off with DOCKERFUSE_TEST_EXEC=0, and not
# done when DFIT_TRANSPORT=exec already).
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
#   DOCKERFUSE_TEST_SCENARIOS   subset of the names in scenarios.txt (default: all)
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
# `run-matrix.sh --known-scenarios` prints the scenario names it accepts;
# `run-matrix.sh --table` prints scenarios.txt parsed, one scenario a line:
# NAME, `vm` or `not-in-vm`, SHAPE, then its flags.
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
# scenarios.txt, parsed: names in order, and for each its shape, flags and
# whether the VM runs it. Any line it cannot read stops the run.
TABLE=${DOCKERFUSE_SCENARIO_LIST:-$HERE/scenarios.txt}
SHAPES=" pairs busybox arches per-arch once own-per-arch own-once "
FLAGS=" sat exec last "
KNOWN_SCENARIOS=()
declare -A SHAPE=() FLAGSET=() INVM=()
read_table() {
	local raw line n=0 f
	local -a w
	[ -f "$TABLE" ] || die "$TABLE not found"
	while IFS= read -r raw || [ -n "$raw" ]; do
		n=$((n + 1))
		line=${raw%%#*}
		read -r -a w <<<"$line" || true
		[ "${#w[@]}" -gt 0 ] || continue
		case "${w[0]}" in
		scenario) INVM[${w[1]:-}]=vm ;;
		not-in-vm)
			[[ "$raw" == *"#"*[[:alnum:]]* ]] || die "$TABLE:$n: not-in-vm ${w[1]:-}: give the reason in a comment on the line"
			INVM[${w[1]:-}]=not-in-vm
			;;
		*) die "$TABLE:$n: want 'scenario NAME SHAPE [FLAG...]' or 'not-in-vm NAME SHAPE [FLAG...] # reason'" ;;
		esac
		[ "${#w[@]}" -ge 3 ] || die "$TABLE:$n: want '${w[0]} NAME SHAPE [FLAG...]'"
		[[ "${w[1]}" =~ ^[a-z0-9-]+$ ]] || die "$TABLE:$n: '${w[1]}' is not a scenario name"
		[ -z "${SHAPE[${w[1]}]:-}" ] || die "$TABLE:$n: scenario ${w[1]} declared twice"
		[[ "$SHAPES" == *" ${w[2]} "* ]] || die "$TABLE:$n: unknown shape '${w[2]}' (want one of:$SHAPES)"
		for f in "${w[@]:3}"; do
			[[ "$FLAGS" == *" $f "* ]] || die "$TABLE:$n: unknown flag '$f' (want any of:$FLAGS)"
		done
		KNOWN_SCENARIOS+=("${w[1]}")
		SHAPE[${w[1]}]=${w[2]}
		FLAGSET[${w[1]}]=" ${w[*]:3}"
	done <"$TABLE"
	[ "${#KNOWN_SCENARIOS[@]}" -gt 0 ] || die "$TABLE declares no scenario"
}
read_table
has_flag() { [[ "${FLAGSET[$1]} " == *" $2 "* ]]; }
case "${1:-}" in
--known-scenarios)
	printf '%s\n' "${KNOWN_SCENARIOS[@]}"
	exit 0
	;;
--table)
	for s in "${KNOWN_SCENARIOS[@]}"; do
		printf '%s %s %s%s\n' "$s" "${INVM[$s]}" "${SHAPE[$s]}" "${FLAGSET[$s]% }"
	done
	exit 0
	;;
esac
[ "$#" -eq 0 ] || die "usage: $0 [--known-scenarios|--table] (everything else comes from the environment)"
[ -n "${DOCKERFUSE:-}" ] || die "DOCKERFUSE must name the dockerfuse binary (e.g. DOCKERFUSE=target/release/dockerfuse $0)"
if [ ! -f "$DOCKERFUSE" ] || [ ! -x "$DOCKERFUSE" ]; then
	die "DOCKERFUSE=$DOCKERFUSE is not an executable file"
fi
DOCKERFUSE=$(realpath "$DOCKERFUSE")
export DOCKERFUSE

read -r -a MATRIX <<<"$(tr ',' ' ' <<<"${DOCKERFUSE_MATRIX:-amd64:amd64 amd64:arm64 arm64:amd64 arm64:arm64}")"
read -r -a SCENARIOS <<<"$(tr ',' ' ' <<<"${DOCKERFUSE_TEST_SCENARIOS:-${KNOWN_SCENARIOS[*]}}")"
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
# arch_tags SCENARIO: the busybox tags an `arches`-shaped scenario runs on.
arch_tags() {
	case "$1" in
	arches) tr ',' ' ' <<<"${DOCKERFUSE_TEST_ARCHES:-amd64 386}" ;;
	arches-qemu) tr ',' ' ' <<<"${DOCKERFUSE_TEST_QEMU_ARCHES:-arm64 armv7 armv6 ppc64le s390x}" ;;
	*) die "scenarios.txt: no busybox tags are defined for the arches-shaped scenario $1" ;;
	esac
}
for s in "${SCENARIOS[@]}"; do
	if [ -z "$s" ] || [ "${SHAPE[$s]}" != arches ]; then continue; fi
	read -r -a more <<<"$(arch_tags "$s")"
	for t in "${more[@]}"; do TEST_ARCHES+=("$t") ARCH_SCRIPT[$t]=$s; done
done
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
# run_shaped NAME [VAR=VALUE...]: scenario NAME in the shape scenarios.txt
# gives it; the extra variables go to every run of it.
run_shaped() {
	local name=$1 pair c s t sat first=${CARCHES[0]} script=$1
	shift
	case "${SHAPE[$name]}" in
	pairs)
		for pair in "${MATRIX[@]}"; do
			c=${pair%%:*} s=${pair##*:}
			with_container "dfit-$name-$c-$s" "$name alpine:$c satellite $s" "$script" "dockerfuse-test/alpine:$c" SATELLITE_ARCH="$s" "$@"
		done
		;;
	busybox)
		for c in "${CARCHES[@]}"; do
			with_container "dfit-$name-$c" "core busybox:$c satellite $c" core "dockerfuse-test/busybox:$c" SATELLITE_ARCH="$c" "$@"
		done
		;;
	arches)
		for t in "${TEST_ARCHES[@]}"; do
			[ "${ARCH_SCRIPT[$t]}" = "$name" ] || continue
			sat=${ARCH_SATELLITE[$t]}
			if grep -qx "$sat" <<<"$EMBEDDED"; then
				with_container "dfit-arch-$t" "arch busybox:$t satellite $sat" "$script" \
					"dockerfuse-test/busybox:$t" SATELLITE_ARCH="$sat" DFIT_BIG_MIB=16 "$@"
			else
				with_container "dfit-arch-$t" "arch busybox:$t (no $sat satellite: auto)" "$script" \
					"dockerfuse-test/busybox:$t" SATELLITE_ARCH= MISSING_ARCH="$sat" DFIT_BIG_MIB=16 "$@"
			fi
		done
		;;
	per-arch)
		for c in "${CARCHES[@]}"; do
			sat=()
			! has_flag "$name" sat || sat=(SATELLITE_ARCH="$c")
			with_container "dfit-$name-$c" "$name alpine:$c${sat:+ satellite $c}" "$script" "dockerfuse-test/alpine:$c" "${sat[@]}" "$@"
		done
		;;
	once)
		sat=()
		! has_flag "$name" sat || sat=(SATELLITE_ARCH="$first")
		with_container "dfit-$name" "$name alpine:$first${sat:+ satellite $first}" "$script" "dockerfuse-test/alpine:$first" "${sat[@]}" "$@"
		;;
	own-per-arch)
		for c in "${CARCHES[@]}"; do
			run_scenario "$name $c" "$script" CARCH="$c" "$@"
		done
		;;
	own-once)
		run_scenario "$name alpine:$first" "$script" CARCH="$first" "$@"
		;;
	esac
}

for s in "${KNOWN_SCENARIOS[@]}"; do
	if want "$s" && ! has_flag "$s" last; then run_shaped "$s"; fi
done
# The exec transport: once more per container arch for the `exec` ones.
if [ "${DOCKERFUSE_TEST_EXEC:-1}" != 0 ] && [ "${DFIT_TRANSPORT:-auto}" != exec ]; then
	for c in "${CARCHES[@]}"; do
		for s in "${KNOWN_SCENARIOS[@]}"; do
			if ! want "$s" || ! has_flag "$s" exec; then continue; fi
			sat=()
			! has_flag "$s" sat && [ "${SHAPE[$s]}" != pairs ] || sat=(SATELLITE_ARCH="$c")
			with_container "dfit-exec-$s-$c" "$s alpine:$c${sat:+ satellite $c} [exec]" "$s" "dockerfuse-test/alpine:$c" "${sat[@]}" DFIT_TRANSPORT=exec
		done
	done
fi
for s in "${KNOWN_SCENARIOS[@]}"; do
	if want "$s" && has_flag "$s" last; then run_shaped "$s"; fi
done
ALL_RAN=1
# cleanup (the EXIT trap) prints the report and the total line.
