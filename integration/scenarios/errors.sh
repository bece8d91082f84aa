#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # quoted code runs in a child shell; helpers run via check/cap
# Errors scenario: each way a mount cannot start must end quickly with a
# non-zero exit status and a message saying why (matched loosely,
# case-insensitive), and must leave nothing mounted:
#   container that does not exist, container that is stopped, mount point
#   that does not exist, mount point already mounted, engine unreachable
#   (DOCKER_HOST=tcp://127.0.0.1:1), the same with -daemonize, and bad usage
#   (exit 2).
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
	local desc=$1 re=$2 out envs=()
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

args "$CONTAINER" "$MNT"
expect_error "engine unreachable (DOCKER_HOST=tcp://127.0.0.1:1)" 'engine|connect|refused' \
	-u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH -u DOCKER_CONTEXT DOCKER_HOST=tcp://127.0.0.1:1 -- "${A[@]}"

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
	check "the first mount still works" test -d "$MNT/etc"
	check "fusermount3 -u of the first mount" fusermount3 -u "$MNT"
	check "its dockerfuse exits" wait_until 5 pid_gone "$DF_PID"
	check "nothing left mounted" not_mounted "$MNT"
else
	fail "first mount for the 'already mounted' case (exit $DF_STATUS)"
	show_file "dockerfuse output" "$DF_OUT"
fi

finish
