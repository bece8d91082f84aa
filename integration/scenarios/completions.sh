#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # shell code in single quotes runs in bash/zsh/fish; helpers run via cap
# Completions and manual page scenario: `dockerfuse completions bash|zsh|fish`
# loaded into the real shells (bash: the completion function called as
# bash's completion would; fish: `complete -C`; zsh: compinit registers it,
# the container actions are wired) complete flags, subcommands and the
# running containers' names (through `dockerfuse complete-containers`,
# CONTAINER among them); `dockerfuse man` renders with man(1); --help is
# grouped under headings with examples; the classic single-dash flags
# still mount (not taken for subcommands).
# Environment: DOCKERFUSE, CONTAINER (running), WORKDIR. Needs bash, zsh,
# fish, man (integration/setup-engine.sh installs them).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR
for tool in zsh fish man; do
	command -v "$tool" >/dev/null || abort "$tool is not installed (run integration/setup-engine.sh)"
done

# The scripts call `dockerfuse` from PATH.
mkdir -p "$WORKDIR/bin"
ln -sf "$DOCKERFUSE" "$WORKDIR/bin/dockerfuse"
export PATH=$WORKDIR/bin:$PATH

cap NAMES dockerfuse complete-containers
assert_match "complete-containers lists $CONTAINER" "^$CONTAINER$" "$NAMES"
cap NAMES env DOCKER_HOST=tcp://127.0.0.1:1 dockerfuse complete-containers
assert_eq "complete-containers without an engine: nothing, no error" "" "$NAMES"

# --- bash -----------------------------------------------------------------------------------
dockerfuse completions bash >"$WORKDIR/dockerfuse.bash"
check "bash: the script parses" bash -n "$WORKDIR/dockerfuse.bash"
# bash_complete WORDS...: what the completion offers for the last word.
bash_complete() {
	bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		_dockerfuse_with_containers dockerfuse "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
		printf "%s\n" "${COMPREPLY[@]}"' _ "$WORKDIR/dockerfuse.bash" "$@"
}
cap OUT bash_complete dockerfuse ""
assert_match "bash: first word offers $CONTAINER" "^$CONTAINER$" "$OUT"
assert_match "bash: first word offers the subcommands" '^list$' "$OUT"
cap OUT bash_complete dockerfuse -id ""
assert_match "bash: -id offers $CONTAINER" "^$CONTAINER$" "$OUT"
cap OUT bash_complete dockerfuse --id "${CONTAINER:0:6}"
assert_match "bash: --id with a prefix offers $CONTAINER" "^$CONTAINER$" "$OUT"
cap OUT bash_complete dockerfuse --read
assert_match "bash: flags complete (--read-only)" '^--read-only$' "$OUT"
cap OUT bash_complete dockerfuse list --j
assert_match "bash: subcommand flags complete (list --json)" '^--json$' "$OUT"

# --- fish -----------------------------------------------------------------------------------
dockerfuse completions fish >"$WORKDIR/dockerfuse.fish"
fish_complete() { fish --no-config -c "source '$WORKDIR/dockerfuse.fish'; complete -C '$1'"; }
cap OUT fish_complete "dockerfuse "
assert_match "fish: first word offers $CONTAINER" "^$CONTAINER\\b" "$OUT"
assert_match "fish: first word offers the subcommands" '^unmount\b' "$OUT"
cap OUT fish_complete "dockerfuse --id "
assert_match "fish: --id offers $CONTAINER" "^$CONTAINER\\b" "$OUT"
cap OUT fish_complete "dockerfuse --writeb"
assert_match "fish: flags complete (--writeback-cache)" '^--writeback-cache\b' "$OUT"

# --- zsh ------------------------------------------------------------------------------------
dockerfuse completions zsh >"$WORKDIR/_dockerfuse"
check "zsh: the script parses" zsh -n "$WORKDIR/_dockerfuse"
cap OUT zsh -fc "fpath=('$WORKDIR' \$fpath); autoload -U compinit; compinit -u -d '$WORKDIR/zcompdump'; print -r -- \${_comps[dockerfuse]}"
assert_eq "zsh: compinit registers _dockerfuse for dockerfuse" _dockerfuse "$OUT"
cap OUT zsh -fc "source '$WORKDIR/_dockerfuse' 2>/dev/null; whence -w _dockerfuse_containers"
assert_eq "zsh: the container helper is defined" "_dockerfuse_containers: function" "$OUT"
assert_match "zsh: --id completes containers" "^'--id=.*:ID:_dockerfuse_containers' " "$(cat "$WORKDIR/_dockerfuse")"
assert_match "zsh: CONTAINER[:PATH] completes containers" "^'::source -- .*:_dockerfuse_containers' " "$(cat "$WORKDIR/_dockerfuse")"

# --- man and --help -------------------------------------------------------------------------
dockerfuse man >"$WORKDIR/dockerfuse.1"
assert_match "man: a section-1 page" '^\.TH dockerfuse 1' "$(cat "$WORKDIR/dockerfuse.1")"
cap OUT env MANWIDTH=100 man -l "$WORKDIR/dockerfuse.1"
assert_match "man renders: NAME" '^NAME' "$OUT"
assert_match "man renders: the --context option" '-c, --context' "$OUT"
assert_match "man renders: the subcommands" 'install-plugin' "$OUT"
cap OUT dockerfuse --help
for heading in "What to mount:" "Mount options:" "Docker engine:" "Satellite" "Process and logs:" "Examples:"; do
	assert_match "--help has the heading '$heading'" "^$heading" "$OUT"
done

# --- the classic flags are not subcommands ---------------------------------------------------
MNT=$WORKDIR/mnt
mkdir -p "$MNT"
on_exit "$(printf 'dfit_unmount %q %q' "$MNT" "$WORKDIR/classic.pid")"
check "dockerfuse -id C -mount DIR -daemonize still mounts" timeout -k 5 "$DFIT_MOUNT_TIMEOUT" \
	dockerfuse -id "$CONTAINER" -mount "$MNT" -daemonize -pid-file "$WORKDIR/classic.pid"
check "the classic mount works" test -f "$MNT/etc/hostname"
check "dockerfuse unmount of it" timeout 30 dockerfuse unmount "$MNT"

finish
