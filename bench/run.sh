#!/usr/bin/env bash
# shellcheck disable=SC2317 # cleanup runs from the EXIT trap
# dockerfuse benchmark: one command. Starts a container (dfbench-<arch>-<pid>),
# puts the workloads in it, runs each through the dockerfuse mount, direct
# access (/proc/<pid>/root) and the transport's ceiling (docker exec / docker
# cp), prints a table of medians, ratios and PASS/MISS against the targets of
# each transport, and writes JSON plus the table as text. The mount is
# measured once per transport (exec, local), side by side, with its waits
# per file (kernel requests answered only after a round trip to the
# container: `dockerfuse stats`). The "remote" group runs dockerfuse and the
# docker CLI through bench/delay_proxy.py, a TCP proxy that adds a round-trip
# time in front of the engine's socket. See bench/README.md.
#
#   bench/run.sh [--arch amd64|arm64] [--repeats N] [--warmup N] [--out FILE.json]
#                [--df-flags "FLAGS"] [--dockerfuse BIN] [--only GROUPS]
#                [--transports "exec local"] [--as-user NAME]
#
# Environment (flags win):
#   DOCKERFUSE            binary (default target/release/dockerfuse, built when missing)
#   BENCH_ARCH            container arch: amd64 (default) or arm64 (emulated with qemu-user)
#   BENCH_SATELLITE_ARCH  force --satellite-arch (default: dockerfuse chooses)
#   BENCH_REPEATS         measured runs per workload and path (default 3)
#   BENCH_WARMUP          unmeasured runs before them (default 1)
#   BENCH_OUT             JSON path (default bench/results/<date>-<arch>[-<flags>].json;
#                         the table goes next to it as .txt)
#   BENCH_DF_FLAGS        extra dockerfuse flags for every mount, e.g. --writeback-cache
#   BENCH_WALK_TTL        --ttl of the ls -lR / find mounts (default none: dockerfuse's
#                         own TTLs, long with the change feed; not added when
#                         BENCH_DF_FLAGS has --ttl)
#   BENCH_ONLY            subset of: ready walk tar read write dd create random rtt latency remote
#   BENCH_REMOTE_RTT_MS   round-trip time the proxy adds for the remote group (default 20)
#   BENCH_REMOTE_REPEATS  rounds of the remote group (default 1, no warm-up)
#   BENCH_TRANSPORTS      --transport values to measure side by side (default
#                         "exec local"; "auto" = dockerfuse's own choice)
#   BENCH_USER            --as-user: the mounts are made by this user (created
#                         if missing, in the docker group, as the integration
#                         scenarios make theirs) and the workloads that go
#                         through them run as it; direct and docker CLI rows
#                         stay root's. Transport exec (default and only: the
#                         local channel needs root), groups ready walk tar
#                         read write create. Everything runs in a private
#                         mount namespace; when the user may not open
#                         /dev/fuse (0600), a 0666 node is put over it there
#                         (integration/users-lib.sh), and the output says so
#
# Needs root (drop_caches, /proc/<pid>/root), a Docker engine, fusermount3,
# python3 and the local image dockerfuse-test/alpine:<arch>
# (integration/setup-engine.sh loads it). fio is used for the random reads
# when installed (apt-get install -y fio), else a python os.pread loop.
# Everything it starts is removed on every exit path, Ctrl-C included.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
say() { printf '[bench] %s\n' "$*" >&2; }
die() {
	printf '[bench] ERROR: %s\n' "$*" >&2
	exit 1
}
usage() { sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

DOCKERFUSE=${DOCKERFUSE:-}
ARCH=${BENCH_ARCH:-amd64}
SAT_ARCH=${BENCH_SATELLITE_ARCH:-}
REPEATS=${BENCH_REPEATS:-3}
WARMUP=${BENCH_WARMUP:-1}
OUT=${BENCH_OUT:-}
DF_FLAGS=${BENCH_DF_FLAGS:-}
WALK_TTL=${BENCH_WALK_TTL:-}
ONLY=${BENCH_ONLY:-}
TRANSPORTS=${BENCH_TRANSPORTS-exec local}
TRANSPORTS_SET=${BENCH_TRANSPORTS+set}
REMOTE_RTT_MS=${BENCH_REMOTE_RTT_MS:-20}
REMOTE_REPEATS=${BENCH_REMOTE_REPEATS:-1}
AS_USER=${BENCH_USER:-}
ARGS=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
	--arch) ARCH=${2:?}; shift 2 ;;
	--satellite-arch) SAT_ARCH=${2:?}; shift 2 ;;
	--repeats) REPEATS=${2:?}; shift 2 ;;
	--warmup) WARMUP=${2:?}; shift 2 ;;
	--out) OUT=${2:?}; shift 2 ;;
	--df-flags) DF_FLAGS=${2?}; shift 2 ;;
	--dockerfuse) DOCKERFUSE=${2:?}; shift 2 ;;
	--only) ONLY=${2?}; shift 2 ;;
	--transports) TRANSPORTS=${2?}; TRANSPORTS_SET=1; shift 2 ;;
	--as-user) AS_USER=${2:?}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

# --- inputs and the machine ----------------------------------------------------
[[ "$ARCH" =~ ^(amd64|arm64)$ ]] || die "BENCH_ARCH must be amd64 or arm64, not '$ARCH'"
[[ -z "$SAT_ARCH" || "$SAT_ARCH" =~ ^(amd64|arm64)$ ]] || die "BENCH_SATELLITE_ARCH must be amd64 or arm64"
[[ "$REPEATS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REPEATS must be a positive number"
[[ "$WARMUP" =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a number"
[[ "$WALK_TTL" =~ ^[0-9]*$ ]] || die "BENCH_WALK_TTL must be a number of seconds (or empty)"
[[ "$REMOTE_RTT_MS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BENCH_REMOTE_RTT_MS must be a number of milliseconds"
[[ "$REMOTE_REPEATS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_REMOTE_REPEATS must be a positive number"
for g in ${ONLY//,/ }; do
	[[ " ready walk tar read write dd create random rtt latency remote " == *" $g "* ]] ||
		die "BENCH_ONLY: unknown workload group '$g' (ready walk tar read write dd create random rtt latency remote)"
done
for t in $TRANSPORTS; do
	[[ "$t" =~ ^(auto|exec|local)$ ]] || die "BENCH_TRANSPORTS: unknown transport '$t' (auto, exec, local)"
done
[ "$(id -u)" = 0 ] || die "run as root (drop_caches and /proc/<pid>/root need it)"
if [ -n "$AS_USER" ]; then
	[[ "$AS_USER" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "--as-user: '$AS_USER' is not a user name"
	[ "$AS_USER" != root ] || die "--as-user root: run without --as-user"
	[ -n "$TRANSPORTS_SET" ] || TRANSPORTS="exec"
	for t in $TRANSPORTS; do
		[ "$t" != local ] || die "--as-user: the local transport needs root (pidfd_getfd of root's container); use exec or auto"
	done
	for g in ${ONLY//,/ }; do
		[[ " ready walk tar read write create " == *" $g "* ]] ||
			die "--as-user: workload group '$g' is not run as a user (ready walk tar read write create)"
	done
	for t in useradd usermod runuser unshare mknod; do
		command -v "$t" >/dev/null 2>&1 || die "$t not found (--as-user needs it)"
	done
	# the helpers of the user scenarios: the user, the private mount
	# namespace and the /dev/fuse node (WORKDIR is set below)
	# shellcheck source=SCRIPTDIR/../integration/users-lib.sh
	. "$ROOT/integration/users-lib.sh"
	in_fuse_namespace "${ARGS[@]}"
	ensure_user "$AS_USER" docker
	id -nG "$AS_USER" | tr ' ' '\n' | grep -qx docker || die "$AS_USER is not in the docker group"
fi
for t in docker fusermount3 python3 tar dd grep cp; do
	command -v "$t" >/dev/null 2>&1 || die "$t not found (integration/setup-engine.sh installs the engine and fuse3)"
done
timeout 30 docker info >/dev/null 2>&1 || die "the docker engine does not answer (docker info failed)"
IMAGE=dockerfuse-test/alpine:$ARCH
got=$(docker image inspect -f '{{.Architecture}}' "$IMAGE" 2>/dev/null || true)
[ "$got" = "$ARCH" ] || die "image $IMAGE missing or not $ARCH: run integration/setup-engine.sh"

if [ -z "$DOCKERFUSE" ]; then
	DOCKERFUSE=$ROOT/target/release/dockerfuse
	if [ ! -x "$DOCKERFUSE" ]; then
		say "building $DOCKERFUSE"
		(cd "$ROOT" && cargo build --release -p dockerfuse) || die "cargo build failed"
	fi
fi
if [ ! -f "$DOCKERFUSE" ] || [ ! -x "$DOCKERFUSE" ]; then
	die "DOCKERFUSE=$DOCKERFUSE is not an executable file"
fi
DOCKERFUSE=$(realpath "$DOCKERFUSE")
"$DOCKERFUSE" -version >/dev/null || die "$DOCKERFUSE -version failed"
command -v fio >/dev/null 2>&1 || say "fio not installed: random reads use a python os.pread loop (apt-get install -y fio for fio)"

if [ -z "$OUT" ]; then
	suffix=$(printf '%s' "$DF_FLAGS${SAT_ARCH:+ sat-$SAT_ARCH}" | tr -c 'A-Za-z0-9.=_-' '-' | tr -s '-' | sed 's/^-*//; s/-*$//')
	OUT=$HERE/results/$(date +%Y-%m-%d)-$ARCH${suffix:+-$suffix}.json
fi
mkdir -p "$(dirname "$OUT")"
OUT=$(realpath "$OUT")
TABLE=${OUT%.json}.txt

# --- state and cleanup, on every exit path ----------------------------------------
RUN_ID=$$
LABEL=dfbench.run=$RUN_ID
NAME=dfbench-$ARCH-$RUN_ID
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dfbench.XXXXXX")
PY_PID=
USER_HOME='' FUSE_DEV=''
if [ -n "$AS_USER" ]; then
	# shellcheck disable=SC2034 # for users-lib.sh's fuse_dev_mode
	WORKDIR=$WORK
	chmod 0711 "$WORK"
	USER_HOME=$WORK/user
	mkdir -p "$USER_HOME/run"
	chown -R "$AS_USER:" "$USER_HOME"
	chmod 0700 "$USER_HOME"
	# a copy of the binary the user may run (a checkout under /root is closed to users)
	mkdir -p "$WORK/bin"
	cp "$DOCKERFUSE" "$WORK/bin/dockerfuse"
	chmod 0755 "$WORK/bin" "$WORK/bin/dockerfuse"
	DOCKERFUSE=$WORK/bin/dockerfuse
	if runuser -u "$AS_USER" -- test -r /dev/fuse -a -w /dev/fuse; then
		FUSE_DEV="the machine's, mode $(stat -c %a /dev/fuse), open to $AS_USER"
	else
		FUSE_DEV="the machine's is mode $(stat -c %a /dev/fuse), closed to $AS_USER: a 0666 node over it in a private mount namespace (integration/users-lib.sh)"
		fuse_dev_mode 0666
	fi
	say "as user $AS_USER ($(id "$AS_USER")); /dev/fuse: $FUSE_DEV"
fi

mounts_below() { awk -v b="$WORK/" 'index($2, b) == 1 { print $2 }' /proc/mounts | sort -r; }

cleanup() {
	local rc=$? p m
	trap - EXIT INT TERM HUP
	set +e
	if [ -n "$PY_PID" ] && kill -0 "$PY_PID" 2>/dev/null; then
		say "stopping the benchmark (pid $PY_PID)"
		kill -TERM "$PY_PID" 2>/dev/null
		for _ in $(seq 100); do kill -0 "$PY_PID" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$PY_PID" 2>/dev/null && kill -KILL "$PY_PID" 2>/dev/null
		wait "$PY_PID" 2>/dev/null
	fi
	# Backstops: bench.py unmounts what it mounted and stops its proxy.
	if [ -f "$WORK/proxy.pid" ]; then
		p=$(cat "$WORK/proxy.pid")
		if [ -r "/proc/$p/cmdline" ] && [[ "$(tr '\0' ' ' <"/proc/$p/cmdline")" == *delay_proxy.py* ]]; then
			say "stopping leftover delay proxy $p"
			kill -TERM "$p" 2>/dev/null
		fi
	fi
	for m in $(mounts_below); do
		say "unmounting leftover $m"
		timeout 10 fusermount3 -u "$m" 2>/dev/null || timeout 10 fusermount3 -uz "$m" 2>/dev/null || timeout 10 umount -l "$m" 2>/dev/null
	done
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/exe" 2>/dev/null)" = "$DOCKERFUSE" ] || continue
		[[ "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)" == *"$WORK/"* ]] || continue
		say "stopping leftover dockerfuse ${p#/proc/}"
		kill -TERM "${p#/proc/}" 2>/dev/null
	done
	docker ps -aq --filter "label=$LABEL" | xargs -r docker rm -f >/dev/null 2>&1
	if [ -z "$(mounts_below)" ]; then
		rm -rf --one-file-system "$WORK"
	else
		say "NOT removing $WORK: still mounted below it"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- the container and the run -------------------------------------------------------
say "container $NAME ($IMAGE), scratch $WORK"
docker run -d --name "$NAME" --label "$LABEL" --network none "$IMAGE" sleep infinity >/dev/null ||
	die "docker run $IMAGE failed"
[ "$(docker inspect -f '{{.State.Running}}' "$NAME")" = true ] || die "container $NAME is not running"

# In the background so that a signal reaches our trap at once (bash runs
# traps only between foreground commands); bench.py cleans up on SIGTERM.
python3 "$HERE/bench.py" --container "$NAME" --work "$WORK" --dockerfuse "$DOCKERFUSE" \
	--arch "$ARCH" --satellite-arch="$SAT_ARCH" --repeats "$REPEATS" --warmup "$WARMUP" \
	--df-flags="$DF_FLAGS" --walk-ttl="$WALK_TTL" --only="$ONLY" --transports="$TRANSPORTS" \
	--remote-rtt-ms "$REMOTE_RTT_MS" --remote-repeats "$REMOTE_REPEATS" \
	--as-user="$AS_USER" --user-home="$USER_HOME" --fuse-dev="$FUSE_DEV" \
	--out "$OUT" --table-out "$TABLE" </dev/null &
PY_PID=$!
rc=0
wait "$PY_PID" || rc=$?
PY_PID=
exit "$rc"
