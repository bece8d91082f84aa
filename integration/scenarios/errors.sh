#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check/cap
# Errors scenario: each way a mount cannot start must end quickly with a
# non-zero exit status and a message saying why (matched loosely,
# case-insensitive), and must leave nothing mounted:
#   container that does not exist, container that is stopped, mount point
#   that does not exist, mount point already mounted, engine unreachable
#   (DOCKER_HOST=tcp://127.0.0.1:1), the same with -daemonize, and bad usage
#   (exit 2).
# The messages are for people: `dockerfuse: ...` plus a `hint:` line (the
# running containers for an unknown name, `mkdir` for a missing mount
# point, user_allow_other for --allow-other as a plain user), no timestamps;
# colour only on a terminal (script(1)) and never with NO_COLOR.
# Environment: DOCKERFUSE, CONTAINER (running; used for the mount point
# cases), WORKDIR; SATELLITE_ARCH optional; DFIT_LABEL optional (a
# key=value label put on the stopped container this scenario creates, so
# the driver can find it).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR

MNT=$WORKDIR/mnt-errors
mkdir -p "$MNT"
IMAGE=$(docker inspect -f '{{.Config.Image}}' "$CONTAINER")
ERR_TIMEOUT=${DFIT_ERR_TIMEOUT:-60}

# expect_error DESC ERE [ENV_ARGS...] -- DOCKERFUSE_ARGS...: dockerfuse
# (run through `env ENV_ARGS...`) exits non-zero in time with a message
# matching ERE, and leaves nothing mounted. Sets ERR_STATUS.
expect_error() {
	local desc=$1 re=$2 envs=()
	shift 2
	while [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	ERR_STATUS=0
	out=$(timeout -k 5 "$ERR_TIMEOUT" env "${envs[@]}" "$DOCKERFUSE" "$@" 2>&1 </dev/null) || ERR_STATUS=$?
	case "$ERR_STATUS" in
	0) fail "$desc: exits non-zero (it exited 0)" ;;
	124 | 137) fail "$desc: exits non-zero (it hung for ${ERR_TIMEOUT}s)" ;;
	*) pass "$desc: exits non-zero ($ERR_STATUS)" ;;
	esac
	assert_match "$desc: the message says why" "$re" "$out"
	if is_mounted "$MNT" && [ "${KEEP_MOUNT:-}" != 1 ]; then
		fail "$desc: nothing left mounted on $MNT"
		dfit_unmount "$MNT"
	fi
}

# args CONTAINER MOUNTPOINT: dockerfuse arguments, in the array A.
args() {
	A=(-id "$1" -mount "$2")
	[ -z "${SATELLITE_ARCH:-}" ] || A+=(--satellite-arch "$SATELLITE_ARCH")
}
args "dfit-does-not-exist-$$" "$MNT"
expect_error "no such container" 'no such container|not found|does not exist' -- "${A[@]}"
assert_match "no such container: the first line is 'dockerfuse: ...'" '^dockerfuse: no such container' "$out"
assert_match "no such container: the hint names the running $CONTAINER" "^hint: running containers: .*\\b$CONTAINER\\b" "$out"
check_not "no such container: no timestamp, level or colour" grep -Eq $'^[0-9]{4}-|ERROR|\e' <<<"$out"
expect_error "no such container, -daemonize" 'no such container|not found|does not exist' -- \
	"${A[@]}" -daemonize --pid-file "$WORKDIR/err.pid" --log-file "$WORKDIR/err.log"

STOPPED=dfit-halted-$$ # (a name the message regexp below cannot match by itself)
on_exit "$(printf 'docker rm -f %q >/dev/null 2>&1' "$STOPPED")"
labels=()
[ -z "${DFIT_LABEL:-}" ] || labels=(--label "$DFIT_LABEL")
check "create a stopped container ($STOPPED)" \
	timeout 60 docker run -d --name "$STOPPED" --network none "${labels[@]}" "$IMAGE" true
stopped() { [ "$(docker inspect -f '{{.State.Running}}' "$STOPPED")" = false ]; }
check "it has stopped" wait_until 30 stopped
args "$STOPPED" "$MNT"
expect_error "stopped container" 'not running|stopped|exited' -- "${A[@]}"

args "$CONTAINER" "$WORKDIR/does-not-exist"
expect_error "mount point that does not exist" 'mount ?point' -- "${A[@]}"
assert_match "missing mount point: the hint says mkdir" '^hint: .*mkdir -p' "$out"

# Colour: only on a terminal, never with NO_COLOR.
args "dfit-does-not-exist-$$" "$MNT"
tty_run() { timeout -k 5 "$ERR_TIMEOUT" script -qec "$(printf '%q ' "$@")" /dev/null </dev/null 2>&1 || true; }
out=$(tty_run env -u NO_COLOR "$DOCKERFUSE" "${A[@]}")
check "on a terminal the message is coloured" grep -q $'\e\\[' <<<"$out"
out=$(tty_run env NO_COLOR=1 "$DOCKERFUSE" "${A[@]}")
assert_match "on a terminal with NO_COLOR: the same message" 'no such container' "$out"
check_not "on a terminal with NO_COLOR: no colour" grep -q $'\e\\[' <<<"$out"

# --allow-other as a plain user, without user_allow_other in /etc/fuse.conf.
if ! grep -Eq '^[[:space:]]*user_allow_other' /etc/fuse.conf 2>/dev/null; then
	NOBODY_MNT=$(mktemp -d "${TMPDIR:-/tmp}/dfit-errors-nobody.XXXXXX")
	on_exit "$(printf 'rmdir %q' "$NOBODY_MNT")"
	chmod 0777 "$NOBODY_MNT"
	ERR_STATUS=0
	out=$(timeout -k 5 "$ERR_TIMEOUT" setpriv --reuid=nobody --regid=nogroup --clear-groups \
		"$DOCKERFUSE" -id "$CONTAINER" -mount "$NOBODY_MNT" --allow-other 2>&1 </dev/null) || ERR_STATUS=$?
	assert_eq "--allow-other as nobody: exit status 1" 1 "$ERR_STATUS"
	assert_match "--allow-other as nobody: the hint names user_allow_other in /etc/fuse.conf" \
		'^hint: .*user_allow_other.*/etc/fuse.conf' "$out"
	check "--allow-other as nobody: nothing mounted" not_mounted "$NOBODY_MNT"
else
	fail "--allow-other as nobody: /etc/fuse.conf must not set user_allow_other on a test machine"
fi

args "$CONTAINER" "$MNT"
expect_error "engine unreachable (DOCKER_HOST=tcp://127.0.0.1:1)" 'engine|connect|refused' \
	-u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT DOCKER_HOST=tcp://127.0.0.1:1 -- "${A[@]}"

# An engine that accepts connections and never answers: Ctrl-C (SIGINT)
# must still end the setup at once.
HANG_PORT=$((30000 + $$ % 20000))
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16); time.sleep(120)' "$HANG_PORT" &
HANG_PID=$!
on_exit "kill $HANG_PID 2>/dev/null"
hang_listening() { ss -ltn | grep -q "127.0.0.1:$HANG_PORT "; }
check "a listener that never answers on 127.0.0.1:$HANG_PORT" wait_until 30 hang_listening
env -u DOCKER_CONTEXT DOCKER_HOST="tcp://127.0.0.1:$HANG_PORT" "$DOCKERFUSE" "${A[@]}" >"$WORKDIR/hang.out" 2>&1 </dev/null &
HUNG=$!
sleep 2
check "engine that never answers: dockerfuse is still waiting" pid_alive "$HUNG"
kill -INT "$HUNG" 2>/dev/null || true
ERR_STATUS=0
timeout 10 tail --pid="$HUNG" -f /dev/null || true
wait "$HUNG" || ERR_STATUS=$?
assert_eq "engine that never answers: SIGINT ends it with status 1" 1 "$ERR_STATUS"
assert_match "engine that never answers: says it was interrupted" '^dockerfuse: interrupted by SIGINT' "$(cat "$WORKDIR/hang.out")"
check "engine that never answers: nothing mounted" not_mounted "$MNT"

expect_error "no -id (usage)" 'usage|required|-id' -- -mount "$MNT"
assert_eq "no -id: exit status 2 (usage)" 2 "$ERR_STATUS"
expect_error "--satellite-arch bogus (usage)" 'bogus|invalid|possible' -- \
	-id "$CONTAINER" -mount "$MNT" --satellite-arch bogus
assert_eq "--satellite-arch bogus: exit status 2 (usage)" 2 "$ERR_STATUS"

# Last: a mount point that is already mounted (by a running dockerfuse).
args "$CONTAINER" "$MNT"
mount_daemon "$MNT"
if [ "$DF_STATUS" -eq 0 ] && is_fuse_mounted "$MNT"; then
	pass "first mount for the 'already mounted' case"
	KEEP_MOUNT=1 expect_error "mount point already mounted" 'already|busy' -- "${A[@]}"
	assert_match "already mounted: the hint says how to unmount" '^hint: .*unmount' "$out"
	check "the first mount still works" test -d "$MNT/etc"
	check "fusermount3 -u of the first mount" fusermount3 -u "$MNT"
	check "its dockerfuse exits" wait_until 5 pid_gone "$DF_PID"
	check "nothing left mounted" not_mounted "$MNT"
else
	fail "first mount for the 'already mounted' case (exit $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
fi

finish
