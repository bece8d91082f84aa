#!/usr/bin/env bash
# Rootless Docker: a user with subuid/subgid ranges (dfu-rootless, made
# here if missing) runs dockerd-rootless.sh (docker.io's contrib script,
# or the one on PATH: NixOS's dockerd-rootless) under rootlesskit, with
# its socket, data and exec
# roots under its own XDG_RUNTIME_DIR in the scratch directory; the test
# image is loaded from a `docker save` of root's engine. dockerfuse, run as
# that user with DOCKER_HOST pointing at the socket, passes the core
# scenario (core.sh as the user), and a mount of its own takes the local
# transport (the satellite runs in the user's own user namespace), says so
# in `list` and -debug, and tells how the container's ids map to the host;
# --idmap shows the container's root files as the user's.
# rootlesskit runs with --net=host and dockerd with --bridge=none: the
# containers run with --network none, and slirp4netns needs /dev/net/tun,
# which is 0600 on some machines (as /dev/fuse: see users-lib.sh). The
# mounts are made in a private mount namespace with a 0666 /dev/fuse node.
# The daemon (rootlesskit and dockerd), its containers and its data are
# removed on every exit path.
# Environment: DOCKERFUSE, WORKDIR, CARCH (amd64|arm64). Needs root (to make
# the user), rootlesskit, uidmap (newuidmap), docker.io.
# shellcheck disable=SC2016 # the pid file line runs in the user's shell
# shellcheck disable=SC2317 # helpers run via check/on_exit
set -euo pipefail
# shellcheck source=SCRIPTDIR/../users-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../users-lib.sh"
in_fuse_namespace "$@"
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE WORKDIR CARCH
require_tools rootlesskit dockerd newuidmap newgidmap useradd usermod runuser unshare mknod getent docker curl
got=''

# moby's contrib/dockerd-rootless.sh: on PATH as such, or as NixOS's pkgs.docker
# installs it (bin/dockerd-rootless, wrapped with rootlesskit on its PATH), or
# where Debian's docker.io leaves it
ROOTLESS_SH=$(command -v dockerd-rootless.sh || command -v dockerd-rootless || echo /usr/share/docker.io/contrib/dockerd-rootless.sh)
[ -x "$ROOTLESS_SH" ] || abort "dockerd-rootless.sh not found (dockerd-rootless.sh or dockerd-rootless on PATH, or in /usr/share/docker.io/contrib)"
U=dfu-rootless
ensure_user "$U" "" subids
check "$U has subuid and subgid ranges" grep -q "^$U:" /etc/subuid /etc/subgid
user_binary
USER_RUNTIME=$WORKDIR/xdg-$U
user_dir "$U" "$USER_RUNTIME"
SOCK=$USER_RUNTIME/docker.sock
USER_PASS="DOCKER_HOST"
NAME=dfit-rootless-docker-$CARCH-$$
RK_PIDFILE=$USER_RUNTIME/rootlesskit.pid
RUNNER=

# dr CMD...: the docker CLI against the rootless engine, as the user.
dr() { DOCKER_HOST=unix://$SOCK as_user "$U" timeout 120 docker "$@"; }

rootless_down() {
	local pid
	dr rm -f "$NAME" >/dev/null 2>&1 || true
	pid=$(cat "$RK_PIDFILE" 2>/dev/null || true)
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait_until 20 pid_gone "$pid" || kill -9 "$pid" 2>/dev/null || true
	fi
	kill_runtime_procs "$U"
	[ -z "$RUNNER" ] || kill "$RUNNER" 2>/dev/null || true
	rm -rf --one-file-system "$USER_RUNTIME" 2>/dev/null || true
}
on_exit rootless_down

fuse_dev_mode 0666
env -u DOCKER_HOST docker save "dockerfuse-test/alpine:$CARCH" -o "$WORKDIR/alpine.tar"
chmod 0644 "$WORKDIR/alpine.tar"
as_user "$U" sh -c 'echo $$ >"$1"; shift; exec env DOCKERD_ROOTLESS_ROOTLESSKIT_NET=host DOCKERD_ROOTLESS_ROOTLESSKIT_PORT_DRIVER=none "$@"' \
	sh "$RK_PIDFILE" "$ROOTLESS_SH" --bridge=none --iptables=false --ip6tables=false \
	--data-root "$USER_RUNTIME/data" --exec-root "$USER_RUNTIME/exec" --pidfile "$USER_RUNTIME/dockerd.pid" \
	-H "unix://$SOCK" >"$WORKDIR/dockerd-rootless.log" 2>&1 </dev/null &
RUNNER=$!
svc_up() { curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }
if wait_until 60 svc_up; then
	pass "rootless dockerd answers on $SOCK"
else
	fail "rootless dockerd answers on $SOCK"
	show_file "dockerd-rootless.sh" "$WORKDIR/dockerd-rootless.log"
	stop_here
fi
export DOCKER_HOST=unix://$SOCK
cap got dr info --format '{{.SecurityOptions}}'
assert_match "the engine says it runs rootless" 'rootless' "$got"
check "docker load as $U" dr load -q -i "$WORKDIR/alpine.tar"
if ! out=$(dr run -d --name "$NAME" --network none "dockerfuse-test/alpine:$CARCH" sleep infinity 2>&1); then
	fail "rootless docker container $NAME started"
	printf '%s\n' "$out" | detail
	stop_here
fi
pass "rootless docker container $NAME started"

rootless_core_and_local "rootless docker"
idmap_checks "$U" "$NAME" "$UW/mnt-idmap"
finish
