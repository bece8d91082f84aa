# shellcheck shell=bash disable=SC2034 # DF_* and cap targets are for the caller
# Shared helpers for the integration scenarios (sourced, never run):
#   - assertions that count results: pass, fail, check, check_not, assert_eq,
#     assert_match; the counts end in one line "N passed, N failed";
#   - cap VAR CMD...: capture a command's output for an assertion;
#   - a cleanup registry (on_exit) run on EVERY exit path (normal end, set -e
#     abort, Ctrl-C, SIGTERM from the driver's watchdog), in reverse order;
#   - mount helpers: start dockerfuse daemonized or in the foreground, wait
#     for the mount, and take it down (fusermount3 -u, then the FUSE abort
#     switch and umount -l, then the process) whatever state it is in;
#   - dx / dsh: `docker exec` into $CONTAINER;
#   - engine_restart: restart the Docker engine the way it is managed;
#   - a command not found on PATH is a failure ("MISSING TOOL"), also in
#     child shells and in check_not (exit 127 never counts as "failed as
#     expected").
# Every command that may touch the FUSE mount or the engine runs under
# `timeout`: a hung mount fails the scenario instead of stalling CI. A
# timeout means the mount is wedged, so the scenario stops there.
#
# Usage in a scenario:
#   . "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
#   require_env DOCKERFUSE CONTAINER WORKDIR
#   ... assertions ...
#   finish
#
# Knobs: DFIT_OP_TIMEOUT (s, per command, default 60), DFIT_MOUNT_TIMEOUT
# (s, for a mount to come up, default 120: an emulated arm64 satellite is slow).

set -euo pipefail
set -o errtrace

DFIT_PASSED=0
DFIT_FAILED=0
DFIT_FINISHED=0
DFIT_ABORTED=0
DFIT_LAST_ERR=
DFIT_CLEANUPS=()
DFIT_OP_TIMEOUT=${DFIT_OP_TIMEOUT:-60}
DFIT_MOUNT_TIMEOUT=${DFIT_MOUNT_TIMEOUT:-120}
DFIT_SCENARIO=$(basename "$0" .sh)

# --- reporting ---------------------------------------------------------------

log() { printf '# [%s] %s\n' "$DFIT_SCENARIO" "$*"; }
pass() {
	DFIT_PASSED=$((DFIT_PASSED + 1))
	printf 'ok   [%s] %s\n' "$DFIT_SCENARIO" "$*"
}
fail() {
	DFIT_FAILED=$((DFIT_FAILED + 1))
	printf 'FAIL [%s] %s\n' "$DFIT_SCENARIO" "$*"
}
# detail: indent stdin under the last result line. Bounded to 60 lines,
# but reads all of it (a writer cut off by SIGPIPE would trip pipefail).
detail() { awk '++n <= 60 { print "     | " $0 } END { if (n > 60) print "     | ... (" n - 60 " more lines)" }'; }

# --- running commands with a bound -------------------------------------------

# _dfit_run CMD...: commands run under timeout (builtins such as `test` as
# their external twin); shell functions run as they are (the ones in this
# file and the scenarios bound themselves).
_dfit_run() {
	if [ "$(type -t "$1")" != function ] && type -P "$1" >/dev/null; then
		timeout -k 5 "$DFIT_OP_TIMEOUT" "$@"
	else
		"$@"
	fi
}

# _dfit_timeout_guard STATUS WHAT [COUNTED]: a timed-out command means a
# wedged mount or engine: stop the scenario (cleanups still run), counting
# a failure unless the caller already did (COUNTED=1).
_dfit_timeout_guard() {
	case "$1" in
	124 | 137)
		if [ "${3:-0}" = 1 ]; then
			log "timed out: $2 — stopping this scenario"
			stop_here
		fi
		abort "timed out: $2 — stopping this scenario"
		;;
	esac
}

# run_sh CODE: run CODE in `bash -euo pipefail` under timeout. Use exported
# variables in CODE (single-quote it).
run_sh() { timeout -k 5 "$DFIT_OP_TIMEOUT" bash -euo pipefail -c "$1"; }

# dx ARGS...: docker exec in $CONTAINER; dsh CODE: sh -c CODE in $CONTAINER.
dx() { timeout -k 5 "$DFIT_OP_TIMEOUT" docker exec "$CONTAINER" "$@"; }
dsh() { dx sh -c "$1"; }

# --- assertions ----------------------------------------------------------------

# check DESC CMD...: pass when CMD exits 0.
check() {
	local desc=$1 out rc=0
	shift
	out=$(_dfit_run "$@" 2>&1) || rc=$?
	if [ "$rc" -eq 0 ]; then
		pass "$desc"
	else
		fail "$desc (exit $rc: $*)"
		[ -z "$out" ] || printf '%s\n' "$out" | detail
	fi
	_dfit_timeout_guard "$rc" "$desc" 1
	return 0
}

# check_not DESC CMD...: pass when CMD exits non-zero (but did not time out,
# and was found: exit 127 is a missing command, a failure).
check_not() {
	local desc=$1 out rc=0
	shift
	out=$(_dfit_run "$@" 2>&1) || rc=$?
	_dfit_timeout_guard "$rc" "$desc"
	if [ "$rc" -eq 127 ]; then
		fail "$desc (exit 127, a command was not found: $*)"
		[ -z "$out" ] || printf '%s\n' "$out" | detail
	elif [ "$rc" -ne 0 ]; then
		pass "$desc"
	else
		fail "$desc (unexpectedly succeeded: $*)"
		[ -z "$out" ] || printf '%s\n' "$out" | detail
	fi
	return 0
}

# cap VAR CMD...: VAR := stdout of CMD (trailing newlines dropped); when CMD
# fails VAR holds "<exit N> stderr" so the assertion that follows shows why.
cap() {
	local __var=$1 __out __rc=0 __err
	shift
	__err=$(mktemp "$DFIT_TMP/err.XXXXXX")
	__out=$(_dfit_run "$@" 2>"$__err") || __rc=$?
	if [ "$__rc" -ne 0 ]; then
		__out="<exit $__rc> $(head -c 1000 "$__err")"
	fi
	rm -f "$__err"
	_dfit_timeout_guard "$__rc" "$*"
	printf -v "$__var" '%s' "$__out"
}

# assert_eq DESC EXPECTED ACTUAL
assert_eq() {
	if [ "$2" == "$3" ]; then
		pass "$1"
	else
		fail "$1"
		if [ "$(printf '%s' "$2$3" | wc -l)" -gt 0 ]; then
			diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | sed '1s/^/(< expected, > actual) /' | detail || true
		else
			printf 'expected: [%s]\nactual:   [%s]\n' "$2" "$3" | detail
		fi
	fi
}

# assert_match DESC ERE TEXT: case-insensitive extended regexp search.
assert_match() {
	if grep -Eiq -- "$2" <<<"$3"; then
		pass "$1"
	else
		fail "$1 (no match for /$2/i)"
		printf '%s\n' "$3" | detail
	fi
}

# require_tools CMD...: stop (counted as a failure) when a command is not on
# PATH, naming every missing one the way command_not_found_handle does (on
# CI: integration/setup-engine.sh installs them; for the NixOS VM test:
# nix/vm-matrix.txt lists them).
require_tools() {
	local c missing=()
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || missing+=("$c")
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	[ -z "${DFIT_MISSING_TOOLS:-}" ] || printf '%s\n' "${missing[@]}" >>"$DFIT_MISSING_TOOLS"
	abort "MISSING TOOL: ${missing[*]} not on PATH (PATH=$PATH)"
}

# require_env NAME...: stop (counted as a failure) when a variable is unset.
require_env() {
	local v
	for v in "$@"; do
		[ -n "${!v:-}" ] || abort "environment variable $v is required"
	done
	if [ -n "${DOCKERFUSE:-}" ] && [ ! -x "$DOCKERFUSE" ]; then
		abort "DOCKERFUSE=$DOCKERFUSE is not an executable file"
	fi
}

# --- cleanup registry and the end of a scenario ------------------------------

# on_exit CODE: run CODE (eval'd, errors ignored) when the scenario ends, in
# reverse order of registration. Quote arguments with printf %q.
on_exit() { DFIT_CLEANUPS+=("$1"); }

# abort MSG: count a failure and stop the scenario here (cleanups run).
# stop_here: stop after a failure already counted.
abort() {
	fail "$*"
	stop_here
}
stop_here() {
	DFIT_ABORTED=1
	exit 1
}

# finish: normal end of a scenario. The summary is printed by the EXIT trap.
finish() {
	DFIT_FINISHED=1
	exit 0
}

_dfit_on_exit() {
	local rc=$? i
	trap - EXIT INT TERM HUP ERR
	set +e
	if [ "$DFIT_FINISHED" != 1 ] && [ "$DFIT_ABORTED" != 1 ]; then
		fail "scenario stopped early (exit $rc${DFIT_LAST_ERR:+; last error: $DFIT_LAST_ERR})"
	fi
	if [ -s "$DFIT_SCENARIO_MISSING" ]; then
		fail "MISSING TOOLS (not on PATH): $(sort -u "$DFIT_SCENARIO_MISSING" | tr '\n' ' ')"
	fi
	for ((i = ${#DFIT_CLEANUPS[@]} - 1; i >= 0; i--)); do
		eval "${DFIT_CLEANUPS[i]}" </dev/null || true
	done
	rm -rf "$DFIT_TMP"
	printf '%d passed, %d failed\n' "$DFIT_PASSED" "$DFIT_FAILED"
	if [ "$DFIT_FAILED" -gt 0 ] || [ "$DFIT_PASSED" -eq 0 ]; then
		exit 1
	fi
	exit 0
}
trap _dfit_on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'DFIT_LAST_ERR="line $LINENO: $BASH_COMMAND (exit $?)"' ERR

DFIT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/dfit-lib.XXXXXX")

# command_not_found_handle: bash runs it for a command not on PATH (in this
# shell and, exported, in every child bash: run_sh, bash -c). It names the
# command and records it for this scenario's result and for run-matrix.sh's
# total ($DFIT_MISSING_TOOLS). The NixOS VM test and CI's parity run
# (nix/vm-matrix.sh) restrict PATH to the tools in nix/vm-matrix.txt.
export DFIT_SCENARIO_MISSING=$DFIT_TMP/missing-tools
command_not_found_handle() {
	printf 'MISSING TOOL: %s is not on PATH (PATH=%s)\n' "$1" "$PATH" >&2
	[ -z "${DFIT_SCENARIO_MISSING:-}" ] || printf '%s\n' "$1" >>"$DFIT_SCENARIO_MISSING" 2>/dev/null
	[ -z "${DFIT_MISSING_TOOLS:-}" ] || printf '%s\n' "$1" >>"$DFIT_MISSING_TOOLS" 2>/dev/null
	return 127
}
export -f command_not_found_handle

# --- processes and mounts --------------------------------------------------------

# wait_until SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
wait_until() {
	local deadline=$((SECONDS + $1))
	shift
	while :; do
		"$@" && return 0
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.2
	done
}

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
	local stat
	[ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || return 1
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}
pid_gone() { ! pid_alive "$1"; }

# is_mounted DIR: DIR is a mount point (per /proc/mounts).
is_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; }
not_mounted() { ! is_mounted "$1"; }
# is_fuse_mounted DIR: ... and the filesystem there is FUSE.
is_fuse_mounted() { awk -v m="$1" '$2 == m && $3 ~ /^fuse/ { found = 1 } END { exit !found }' /proc/mounts; }

# fuse_abort DIR: flip the kernel's abort switch of the FUSE connection
# mounted on DIR (every pending and later request fails with ENOTCONN).
fuse_abort() {
	local dev ctl=/sys/fs/fuse/connections mounted_here=0
	dev=$(awk -v m="$1" '$5 == m { d = $3 } END { print d }' /proc/self/mountinfo)
	[ -n "$dev" ] || return 0
	if ! is_mounted "$ctl" && mount -t fusectl fusectl "$ctl" 2>/dev/null; then
		mounted_here=1
	fi
	if [ -w "$ctl/${dev#*:}/abort" ]; then
		echo 1 >"$ctl/${dev#*:}/abort" 2>/dev/null || true
	fi
	[ "$mounted_here" = 0 ] || umount "$ctl" 2>/dev/null || true
}

# is_our_dockerfuse PID MNT: PID runs $DOCKERFUSE or names MNT on its
# command line (a pid read from a stale pid file may have been reused).
is_our_dockerfuse() {
	local cmdline
	[ "$(readlink "/proc/$1/exe" 2>/dev/null)" != "$(realpath "$DOCKERFUSE" 2>/dev/null)" ] || return 0
	cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
	[[ "$cmdline" == *"$2"* ]]
}

# dfit_unmount DIR [PID | PIDFILE]: take the mount down and the process
# with it, whatever state they are in. Used by cleanups; never fails.
dfit_unmount() {
	local mnt=$1 pid=${2:-}
	if [ -n "$pid" ] && [ "${pid#/}" != "$pid" ]; then
		pid=$(cat "$pid" 2>/dev/null || true)
	fi
	local i
	for ((i = 0; i < 4; i++)); do # mounts may be stacked
		is_mounted "$mnt" || break
		timeout 10 fusermount3 -u "$mnt" 2>/dev/null || timeout 10 umount "$mnt" 2>/dev/null || true
		[ -z "$pid" ] || wait_until 5 pid_gone "$pid" || true
		is_mounted "$mnt" || break
		log "forcing the unmount of $mnt"
		fuse_abort "$mnt"
		timeout 10 fusermount3 -uz "$mnt" 2>/dev/null || timeout 10 umount -l "$mnt" 2>/dev/null || true
	done
	if [ -n "$pid" ] && pid_alive "$pid" && is_our_dockerfuse "$pid" "$mnt"; then
		log "killing dockerfuse pid $pid"
		kill -TERM "$pid" 2>/dev/null || true
		wait_until 5 pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
	fi
	return 0
}

# df_args MNT: the common dockerfuse arguments, in the array DF_ARGS
# (--transport $DFIT_TRANSPORT when set: auto, exec or local).
df_args() {
	DF_ARGS=(-id "$CONTAINER" -mount "$1")
	[ -z "${SATELLITE_ARCH:-}" ] || DF_ARGS+=(--satellite-arch "$SATELLITE_ARCH")
	[ -z "${DFIT_TRANSPORT:-}" ] || DF_ARGS+=(--transport "$DFIT_TRANSPORT")
}

# mount_daemon MNT [EXTRA_ARGS...]: `dockerfuse ... -daemonize` with a pid
# file and a log file in $WORKDIR. Sets DF_STATUS (its exit status), DF_PID
# (from the pid file, may be empty), DF_OUT (its stdout+stderr file),
# DF_LOG, DF_PIDFILE. Registers the cleanup before starting.
mount_daemon() {
	local mnt=$1 name
	shift
	name=$(basename "$mnt")
	DF_PIDFILE=$WORKDIR/$name.pid
	DF_LOG=$WORKDIR/$name.log
	DF_OUT=$WORKDIR/$name.out
	rm -f "$DF_PIDFILE"
	on_exit "$(printf 'dfit_unmount %q %q' "$mnt" "$DF_PIDFILE")"
	df_args "$mnt"
	DF_STATUS=0
	# Output to a file, never a pipe: the daemon could keep a pipe open.
	timeout -k 5 "$DFIT_MOUNT_TIMEOUT" "$DOCKERFUSE" "${DF_ARGS[@]}" -daemonize \
		--pid-file "$DF_PIDFILE" --log-file "$DF_LOG" "$@" >"$DF_OUT" 2>&1 </dev/null || DF_STATUS=$?
	DF_PID=$(cat "$DF_PIDFILE" 2>/dev/null || true)
}

# mount_fg MNT [EXTRA_ARGS...]: start dockerfuse in the foreground as a
# background job. Sets DF_PID (a child of this shell: `wait` works) and
# DF_OUT. Registers the cleanup.
mount_fg() {
	local mnt=$1
	shift
	DF_OUT=$WORKDIR/$(basename "$mnt").out
	df_args "$mnt"
	"$DOCKERFUSE" "${DF_ARGS[@]}" "$@" >"$DF_OUT" 2>&1 </dev/null &
	DF_PID=$!
	on_exit "$(printf 'dfit_unmount %q %q' "$mnt" "$DF_PID")"
}

# wait_mounted MNT PID: wait (DFIT_MOUNT_TIMEOUT) for a FUSE mount on MNT
# while PID lives.
wait_mounted() {
	local deadline=$((SECONDS + DFIT_MOUNT_TIMEOUT))
	while [ "$SECONDS" -lt "$deadline" ]; do
		is_fuse_mounted "$1" && return 0
		pid_alive "$2" || return 1
		sleep 0.2
	done
	return 1
}

# --- the engine ------------------------------------------------------------------

# engine_restart: restart the Docker engine the way it is managed. Where
# systemd runs it (docker.service active: NixOS, most distributions), with
# `systemctl restart docker.service`; elsewhere (CI starts dockerd by hand)
# the dockerd of /var/run/docker.pid (else the first `pidof dockerd`) is
# stopped and run again with its own command line and its own environment
# (so it finds containerd, runc... on its own PATH, whatever PATH this
# scenario has), in a new session, output appended to
# $DOCKERFUSE_DOCKERD_LOG. Returns once the old engine is gone; it does not
# wait for the new one to answer.
engine_restart() {
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker.service 2>/dev/null; then
		log "engine_restart: systemctl restart docker.service"
		timeout 120 systemctl restart docker.service
		return
	fi
	local pid log=${DOCKERFUSE_DOCKERD_LOG:-/var/log/dockerfuse-dockerd.log}
	local -a cmd envv
	pid=$(cat /var/run/docker.pid 2>/dev/null || true)
	[[ "$(readlink "/proc/${pid:-0}/exe" 2>/dev/null)" == */dockerd ]] || pid=$(pidof dockerd | awk '{print $1}')
	[ -n "$pid" ] || return 1
	mapfile -d '' -t cmd <"/proc/$pid/cmdline"
	mapfile -d '' -t envv <"/proc/$pid/environ" || envv=()
	[ "${#cmd[@]}" -gt 0 ] || return 1
	log "engine_restart: dockerd pid $pid stopped and started again (${cmd[*]})"
	kill -TERM "$pid"
	wait_until 30 pid_gone "$pid" || return 1
	if [ "${#envv[@]}" -gt 0 ]; then
		env -i "${envv[@]}" setsid "${cmd[@]}" >>"$log" 2>&1 </dev/null &
	else
		setsid "${cmd[@]}" >>"$log" 2>&1 </dev/null &
	fi
}

# show_file DESC FILE: print a file under the last result line.
show_file() {
	[ -s "$2" ] || return 0
	printf '%s:\n' "$1" | detail
	tail -n 30 "$2" | detail
}
