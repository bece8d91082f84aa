#!/usr/bin/env bash
# CI's side of nix/vm-matrix.txt, the one list of what the NixOS VM test
# gives integration/run-matrix.sh (environment, tools), and of the
# scenarios integration/scenarios.txt marks as run in the VM:
#
#   nix/vm-matrix.sh run       the integration run: run-matrix.sh ONCE with
#                              the VM's scenarios, the VM's environment and
#                              PATH restricted to exactly the listed
#                              binaries, then (under the normal PATH) only
#                              the `not-in-vm` scenarios, if any. Needs
#                              DOCKERFUSE. DOCKERFUSE_TEST_SCENARIOS, when
#                              set, narrows both runs to those scenarios.
#   nix/vm-matrix.sh path DIR  make DIR a directory of symlinks to this
#                              host's binaries of the listed names (fails
#                              naming every one it cannot find)
#   nix/vm-matrix.sh json      the parsed list as JSON, in the shape
#                              nix/vm-matrix.nix evaluates to
#   nix/vm-matrix.sh check     both lists parse (run-matrix.sh reads
#                              integration/scenarios.txt, checking each line)
#
# The restricted PATH holds the `tool`, `module` and `wrapped` binaries
# (see the file's header) and nothing else: a scenario calling anything
# more fails here with "MISSING TOOL" (lib.sh's command_not_found_handle),
# as it would in the VM.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIST=${DOCKERFUSE_VM_MATRIX:-$ROOT/nix/vm-matrix.txt}
# (run-matrix.sh reads DOCKERFUSE_SCENARIO_LIST, if set, instead of
# integration/scenarios.txt: nix/check-offline.sh passes a changed copy.)
say() { printf '[vm-matrix] %s\n' "$*" >&2; }
die() {
	printf '[vm-matrix] ERROR: %s\n' "$*" >&2
	exit 1
}

SCENARIOS=() NOT_IN_VM=() ENV_NAMES=() ENV_VALUES=()
TOOL_LINES=() MODULE_LINES=() WRAPPED_LINES=() BINS=()
MODULES=(docker podman systemd)

# parse: fill the arrays above from $LIST; die on the first bad line.
parse() {
	local raw line kind name n=0
	local -a w
	[ -f "$LIST" ] || die "$LIST not found"
	while IFS= read -r raw || [ -n "$raw" ]; do
		n=$((n + 1))
		line=${raw%%#*}
		read -r -a w <<<"$line" || true
		[ "${#w[@]}" -gt 0 ] || continue
		kind=${w[0]} name=${w[1]:-}
		case "$kind" in
		scenario | not-in-vm) die "$LIST:$n: scenarios are declared in integration/scenarios.txt, not here" ;;
		env)
			[ "${#w[@]}" -ge 3 ] || die "$LIST:$n: want 'env NAME VALUE'"
			[[ "$name" =~ ^[A-Z_][A-Z0-9_]*$ ]] || die "$LIST:$n: '$name' is not a variable name"
			ENV_NAMES+=("$name")
			ENV_VALUES+=("${w[*]:2}")
			;;
		tool | module | wrapped)
			[ "${#w[@]}" -ge 3 ] || die "$LIST:$n: want '$kind NAME BIN...'"
			if [ "$kind" != tool ] && [[ " ${MODULES[*]} " != *" $name "* ]]; then
				die "$LIST:$n: unknown module '$name' (want one of: ${MODULES[*]})"
			fi
			case "$kind" in
			tool) TOOL_LINES+=("${w[*]:1}") ;;
			module) MODULE_LINES+=("${w[*]:1}") ;;
			wrapped) WRAPPED_LINES+=("${w[*]:1}") ;;
			esac
			BINS+=("${w[@]:2}")
			;;
		*) die "$LIST:$n: unknown kind '$kind' (want env, tool, module or wrapped)" ;;
		esac
	done <"$LIST"
	local table where
	table=$(table) || die "integration/scenarios.txt does not parse (above)"
	while read -r name where _; do
		if [ "$where" = vm ]; then SCENARIOS+=("$name"); else NOT_IN_VM+=("$name"); fi
	done <<<"$table"
	local dup
	dup=$(printf '%s\n' "${BINS[@]}" | sort | uniq -d)
	[ -z "$dup" ] || die "$LIST: binary listed twice: $dup"
	return 0
}

# json: the parsed list, shaped like nix/vm-matrix.nix's result.
json() {
	local l i
	named() { # LINES... -> [{name, bins}]
		for l in "$@"; do
			read -r -a w <<<"$l"
			jq -cn --arg n "${w[0]}" '{name: $n, bins: $ARGS.positional}' --args "${w[@]:1}"
		done | jq -cs .
	}
	{
		jq -cn '$ARGS.positional' --args "${SCENARIOS[@]}"
		jq -cn '$ARGS.positional' --args "${NOT_IN_VM[@]}"
		for i in "${!ENV_NAMES[@]}"; do
			jq -cn --arg n "${ENV_NAMES[i]}" --arg v "${ENV_VALUES[i]}" '{($n): $v}'
		done | jq -cs 'add // {}'
		named "${TOOL_LINES[@]}"
		named "${MODULE_LINES[@]}"
		named "${WRAPPED_LINES[@]}"
	} | jq -cs '{scenarios: .[0], notInVm: .[1], env: .[2], tools: .[3], modules: .[4], wrapped: .[5]}'
}

# table: integration/scenarios.txt as run-matrix.sh reads it (NAME, vm or
# not-in-vm, SHAPE, flags), one scenario a line.
table() { bash "$ROOT/integration/run-matrix.sh" --table; }

# check: both lists parsed (parse dies otherwise) and a scenario to run.
check() {
	[ "${#SCENARIOS[@]}" -gt 0 ] || [ "${#NOT_IN_VM[@]}" -gt 0 ] || {
		say "integration/scenarios.txt declares no scenario"
		return 1
	}
}

# host_binary NAME: the file to link for NAME on this host (the real
# interpreter behind a pyenv-style shim: a shim needs pyenv on PATH).
host_binary() {
	local p
	p=$(type -P "$1") || return 1
	if [[ "$p" == */shims/* ]] && command -v pyenv >/dev/null 2>&1; then
		p=$(pyenv which "$1" 2>/dev/null) || return 1
	fi
	printf '%s\n' "$p"
}

# make_path DIR: symlinks DIR/<bin> -> this host's <bin>, for every listed bin.
make_path() {
	local dir=$1 b p missing=()
	mkdir -p "$dir"
	chmod 755 "$dir"
	for b in "${BINS[@]}"; do
		if p=$(host_binary "$b"); then
			ln -sfn "$p" "$dir/$b"
		else
			missing+=("$b")
		fi
	done
	[ "${#missing[@]}" -eq 0 ] || die "not on this host's PATH, but named in $LIST: ${missing[*]}"
}

# in_requested NAME: NAME is among DOCKERFUSE_TEST_SCENARIOS (or that is unset).
in_requested() {
	[ -n "${DOCKERFUSE_TEST_SCENARIOS:-}" ] || return 0
	[[ " $(tr ',' ' ' <<<"$DOCKERFUSE_TEST_SCENARIOS") " == *" $1 "* ]]
}

run() {
	[ -n "${DOCKERFUSE:-}" ] || die "DOCKERFUSE must name the dockerfuse binary"
	local s i rc=0 tmp vm=() rest=() envs=()
	check || die "no scenario to run (above)"
	for s in "${SCENARIOS[@]}"; do in_requested "$s" && vm+=("$s"); done
	for s in "${NOT_IN_VM[@]}"; do in_requested "$s" && rest+=("$s"); done
	if [ -n "${DOCKERFUSE_TEST_SCENARIOS:-}" ]; then
		for s in $(tr ',' ' ' <<<"$DOCKERFUSE_TEST_SCENARIOS"); do
			[[ " ${SCENARIOS[*]} ${NOT_IN_VM[*]} " == *" $s "* ]] || die "DOCKERFUSE_TEST_SCENARIOS names '$s', which integration/scenarios.txt does not declare"
		done
	fi
	[ "${#vm[@]}" -gt 0 ] || [ "${#rest[@]}" -gt 0 ] || die "no scenario to run"
	DOCKERFUSE=$(realpath "$DOCKERFUSE")
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/dfit-vm-path.XXXXXX")
	# shellcheck disable=SC2064 # expand now: tmp is local
	trap "rm -rf '$tmp'" EXIT
	# World-readable, like the VM's /run/current-system/sw/bin: scenarios
	# run commands as other users (setpriv) through this PATH.
	chmod 755 "$tmp"
	make_path "$tmp/bin"
	for i in "${!ENV_NAMES[@]}"; do envs+=("${ENV_NAMES[i]}=${ENV_VALUES[i]}"); done
	if [ "${#vm[@]}" -gt 0 ]; then
		say "run 1: the VM's scenarios (${vm[*]}), PATH=$tmp/bin (only the ${#BINS[@]} binaries in ${LIST#"$ROOT"/}), ${envs[*]}"
		env "${envs[@]}" PATH="$tmp/bin" DOCKERFUSE="$DOCKERFUSE" DOCKERFUSE_TEST_SCENARIOS="${vm[*]}" \
			"$tmp/bin/bash" "$ROOT/integration/run-matrix.sh" | tee "$tmp/run1.log" || rc=1
		[ "$rc" = 0 ] || say "run 1 (the VM's scenarios under the VM's PATH) FAILED." \
			"A 'MISSING TOOL' line above names a command a scenario runs that ${LIST#"$ROOT"/}" \
			"does not give the VM: add it there (tool ATTR BIN), so the VM test has it too."
	fi
	if [ "${#rest[@]}" -gt 0 ]; then
		say "run 2: the scenarios the VM does not run (${rest[*]}), normal PATH"
		env DOCKERFUSE="$DOCKERFUSE" DOCKERFUSE_TEST_SCENARIOS="${rest[*]}" \
			bash "$ROOT/integration/run-matrix.sh" | tee "$tmp/run2.log" || {
			rc=1
			say "run 2 (scenarios not in the VM) FAILED"
		}
	fi
	# One total for both runs (each run's last line is its own total).
	cat "$tmp"/run*.log 2>/dev/null | awk '
		/^[0-9]+ passed, [0-9]+ failed$/ { last_p = $1; last_f = $3; next }
		/^\[matrix\] dockerfuse:/ { p += last_p; f += last_f; last_p = last_f = 0 }
		END { p += last_p; f += last_f; printf "integration: %d passed, %d failed\n", p, f }'
	return "$rc"
}

main() {
	local cmd=${1:-}
	parse
	case "$cmd" in
	run) run ;;
	path)
		[ -n "${2:-}" ] || die "usage: $0 path DIR"
		make_path "$2"
		;;
	json)
		command -v jq >/dev/null 2>&1 || die "jq not found"
		json
		;;
	check) check ;;
	*) die "usage: $0 run|path DIR|json|check" ;;
	esac
}

main "$@"
