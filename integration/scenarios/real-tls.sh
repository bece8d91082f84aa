#!/usr/bin/env bash
# Real containers, remote engine over TLS: a second dockerd (own
# --data-root/--exec-root/--pidfile, no bridge, no iptables) listening on
# 127.0.0.1:<port> with --tlsverify and certificates made here with openssl
# (CA, server with SAN IP:127.0.0.1, client). The alpine image is loaded into
# it (docker save | docker load) and a container started there only, so a
# mount that works went to that engine. Mounted through:
#   DOCKER_HOST=tcp://... DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=dir
#   -H tcp://... (DOCKER_HOST naming the main engine: -H wins)
#   DOCKER_CONTEXT=dfreal-ctx (made by `docker context create`, TLS
#     material in the context store; HOME is a scratch directory)
#   the current context (`docker context use`), with DOCKER_CONTEXT
#     beating it and DOCKER_HOST beating DOCKER_CONTEXT
# Each mount reads and writes, unmounts, leaves no satellite. Failures:
# no client certificate (the missing file is named), plain HTTP to the TLS
# port, an unknown context. The second dockerd is stopped and its state
# removed on every exit path.
# Environment: DOCKERFUSE, WORKDIR, CARCH (amd64|arm64); DFIT_LABEL optional.
# shellcheck disable=SC2317 # helpers run via check
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=SCRIPTDIR/../real-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../real-lib.sh"
# shellcheck source=SCRIPTDIR/../real-tls-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../real-tls-lib.sh"
require_env DOCKERFUSE WORKDIR CARCH
got='' before=''
require_tools openssl dockerd ip ss

E=$WORKDIR/engine
mkdir -p "$E"
E=$(cd "$E" && pwd)
CERTS=$E/certs
check "certificates made with openssl" real_certs "$CERTS" || true
[ -s "$CERTS/cert.pem" ] || {
	show_file "openssl" "$CERTS/openssl.log"
	stop_here
}
PORT=
for _ in 1 2 3 4 5 6 7 8 9 10; do
	p=$((20000 + RANDOM % 20000))
	if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
		PORT=$p
		break
	fi
done
[ -n "$PORT" ] || abort "no free port found"
TCP=tcp://127.0.0.1:$PORT
if real_second_dockerd "$E" "$PORT"; then
	pass "second dockerd answers on $REAL_SOCK and $TCP (TLS)"
else
	fail "second dockerd answers on $REAL_SOCK and $TCP (TLS)"
	show_file "dockerd log" "$E/dockerd.log"
	stop_here
fi
IMG=dockerfuse-test/alpine:$CARCH
check "load $IMG into it" run_sh "docker save '$IMG' | docker -H '$REAL_SOCK' load"
# From here on the scenario's own docker commands talk to the second engine.
export DOCKER_HOST=$REAL_SOCK
unset DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH DOCKER_CONFIG
real_run "dfreal-tls-$CARCH-$$" "$IMG" -- sleep infinity || stop_here
check_not "the main engine has no container $CONTAINER" docker -H unix:///var/run/docker.sock inspect "$CONTAINER"
cap before timeout 30 docker diff "$CONTAINER"
MNT=$WORKDIR/mnt-tls
mkdir -p "$MNT"
HOME_DIR=$WORKDIR/home
mkdir -p "$HOME_DIR"

# tls_mount DESC ENV... -- ARGS...: mount with a clean docker environment
# plus ENV, HOME=$HOME_DIR; read, write, unmount.
tls_mount() {
	local desc=$1 envs=() status=0
	shift
	while [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	rm -f "$WORKDIR/tls.pid"
	on_exit "$(printf 'dfit_unmount %q %q' "$MNT" "$WORKDIR/tls.pid")"
	timeout -k 5 "$DFIT_MOUNT_TIMEOUT" env -u DOCKER_HOST -u DOCKER_CONTEXT -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH \
		-u DOCKER_CONFIG HOME="$HOME_DIR" "${envs[@]}" "$DOCKERFUSE" -id "$CONTAINER" -mount "$MNT" -daemonize \
		--pid-file "$WORKDIR/tls.pid" --log-file "$WORKDIR/tls.log" "$@" >"$WORKDIR/tls.out" 2>&1 </dev/null || status=$?
	DF_PID=$(cat "$WORKDIR/tls.pid" 2>/dev/null || true)
	if [ "$status" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
		fail "$desc: mounted (exit $status)"
		show_file "dockerfuse output" "$WORKDIR/tls.out"
		return 0
	fi
	pass "$desc: mounted"
	cap got cat "$MNT/etc/alpine-release"
	assert_match "$desc: reads /etc/alpine-release" '^3\.' "$got"
	real_rw "$MNT" /tmp
	real_unmount "$MNT"
}

# tls_error DESC ERE ENV... -- ARGS...: the mount fails with exit 1 and a
# message matching ERE.
tls_error() {
	local desc=$1 re=$2 envs=() status=0 out
	shift 2
	while [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	out=$(timeout -k 5 60 env -u DOCKER_HOST -u DOCKER_CONTEXT -u DOCKER_TLS_VERIFY -u DOCKER_CERT_PATH \
		-u DOCKER_CONFIG HOME="$HOME_DIR" "${envs[@]}" "$DOCKERFUSE" -id "$CONTAINER" -mount "$MNT" "$@" 2>&1 </dev/null) || status=$?
	assert_eq "$desc: exit status 1" 1 "$status"
	assert_match "$desc: the message says why" "$re" "$out"
	if is_mounted "$MNT"; then
		fail "$desc: nothing left mounted"
		dfit_unmount "$MNT"
	fi
}

# --- environment and -H --------------------------------------------------------------------
tls_mount "DOCKER_HOST=$TCP DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH" \
	DOCKER_HOST="$TCP" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$CERTS" --
tls_mount "-H $TCP (DOCKER_HOST names the main engine)" \
	DOCKER_HOST=unix:///var/run/docker.sock DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$CERTS" -- -H "$TCP"
mkdir -p "$E/ca-only"
cp "$CERTS/ca.pem" "$E/ca-only/"
tls_error "no client certificate" "$E/ca-only/cert.pem" \
	DOCKER_HOST="$TCP" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$E/ca-only" --
tls_error "plain HTTP to the TLS port" "engine.*$TCP" DOCKER_HOST="$TCP" --

# --- docker contexts -----------------------------------------------------------------------
ctx() { HOME=$HOME_DIR timeout 30 docker "$@"; }
check "docker context create dfreal-ctx (TLS)" ctx context create dfreal-ctx \
	--docker "host=$TCP,ca=$CERTS/ca.pem,cert=$CERTS/cert.pem,key=$CERTS/key.pem"
check "docker context create dfreal-main (the main engine)" ctx context create dfreal-main \
	--docker host=unix:///var/run/docker.sock
tls_mount "DOCKER_CONTEXT=dfreal-ctx" DOCKER_CONTEXT=dfreal-ctx --
check "docker context use dfreal-ctx" ctx context use dfreal-ctx
tls_mount "current context dfreal-ctx (config.json)" --
check "docker context use dfreal-main" ctx context use dfreal-main
tls_error "current context dfreal-main: no such container there" 'no such container' --
tls_mount "DOCKER_CONTEXT=dfreal-ctx beats the current context" DOCKER_CONTEXT=dfreal-ctx --
tls_mount "DOCKER_HOST beats DOCKER_CONTEXT=dfreal-main" \
	DOCKER_CONTEXT=dfreal-main DOCKER_HOST="$TCP" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$CERTS" --
tls_error "unknown context" 'context dfreal-nope.*not found' DOCKER_CONTEXT=dfreal-nope --
tls_mount "--context dfreal-ctx beats DOCKER_CONTEXT=dfreal-main" DOCKER_CONTEXT=dfreal-main -- --context dfreal-ctx

# --- the docker CLI plugin over TLS ----------------------------------------------------------
check "dockerfuse install-plugin in the test HOME" "$DOCKERFUSE" install-plugin --dir "$HOME_DIR/.docker/cli-plugins"
# plugin_tls DESC DOCKER_ARGS...: `docker DOCKER_ARGS... mount -d ...` mounts.
plugin_tls() {
	local desc=$1 status=0
	shift
	rm -f "$WORKDIR/tls.pid"
	on_exit "$(printf 'dfit_unmount %q %q' "$MNT" "$WORKDIR/tls.pid")"
	ctx "$@" mount -d --pid-file "$WORKDIR/tls.pid" "$CONTAINER:/etc" "$MNT" >"$WORKDIR/tls.out" 2>&1 </dev/null || status=$?
	if [ "$status" -eq 0 ] && is_fuse_mounted "$MNT"; then
		pass "$desc: mounted"
		cap got cat "$MNT/alpine-release"
		assert_match "$desc: reads /etc/alpine-release" '^3\.' "$got"
		check "$desc: unmounted" timeout 10 fusermount3 -u "$MNT"
		check "$desc: the process exits" wait_until 10 pid_gone "$(cat "$WORKDIR/tls.pid")"
	else
		fail "$desc: mounted (exit $status)"
		show_file "docker mount output" "$WORKDIR/tls.out"
	fi
}
plugin_tls "docker --context dfreal-ctx mount (TLS context)" --context dfreal-ctx
plugin_tls "docker -H tcp --tlsverify --tlscacert/--tlscert/--tlskey mount" -H "$TCP" --tlsverify \
	--tlscacert "$CERTS/ca.pem" --tlscert "$CERTS/cert.pem" --tlskey "$CERTS/key.pem"

real_diff_clean "$before"
finish
