#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2153 # Go templates and jq programs in single quotes; cap sets variables
# CLI plugin scenario: dockerfuse as `docker mount`, through the real docker
# CLI, in a docker configuration directory of its own (DOCKER_CONFIG):
#   `dockerfuse install-plugin --dir`, the metadata answer, `docker info`
#   listing the plugin, `docker mount --help`, `docker mount -d
#   CONTAINER:PATH DIR` (read and write through it), `docker --context CTX
#   mount` with a context on the local socket, the docker CLI's errors
#   passed on (unknown context, unreachable -H, unknown container with the
#   running ones as a hint); then dockerfuse's own --context flag and its
#   precedence (over DOCKER_HOST and DOCKER_CONTEXT; with -H: usage error).
# Environment: DOCKERFUSE, CONTAINER (running alpine), WORKDIR.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR

export DOCKER_CONFIG=$WORKDIR/docker-config
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
mkdir -p "$DOCKER_CONFIG"
MNT=$WORKDIR/mnt-plugin
mkdir -p "$MNT"
CTX=dfit-plugin-ctx-$$
on_exit "$(printf 'docker context rm -f %q >/dev/null 2>&1' "$CTX")"
ALPINE_RELEASE=$(dx cat /etc/alpine-release)

# --- installation and discovery ------------------------------------------------
check "dockerfuse install-plugin --dir \$DOCKER_CONFIG/cli-plugins" \
	"$DOCKERFUSE" install-plugin --dir "$DOCKER_CONFIG/cli-plugins"
PLUGIN=$DOCKER_CONFIG/cli-plugins/docker-mount
check "docker-mount is a link to the binary" test "$(readlink -f "$PLUGIN")" = "$(readlink -f "$DOCKERFUSE")"
cap META "$PLUGIN" docker-cli-plugin-metadata
assert_eq "metadata: SchemaVersion 0.1.0" 0.1.0 "$(jq -r .SchemaVersion <<<"$META")"
assert_eq "metadata: Vendor, Version, ShortDescription, URL all set" 4 \
	"$(jq '[.Vendor, .Version, .ShortDescription, .URL] | map(select(type == "string" and length > 0)) | length' <<<"$META")"
cap PLUGIN_LIST timeout 60 docker info --format '{{json .ClientInfo.Plugins}}'
assert_eq "docker info lists the mount plugin at its path" "$PLUGIN" \
	"$(jq -r '.[] | select(.Name == "mount") | .Path' <<<"$PLUGIN_LIST")"
assert_eq "docker info reports no error for it" "" \
	"$(jq -r '.[] | select(.Name == "mount") | .Err // empty' <<<"$PLUGIN_LIST")"
cap HELP timeout 30 docker mount --help
assert_match "docker mount --help: usage line" 'Usage: +docker mount \[OPTIONS\] CONTAINER\[:PATH\] MOUNTPOINT' "$HELP"
assert_match "docker mount --help: lists --read-only" '--read-only' "$HELP"
cap HELP timeout 30 docker --help
assert_match "docker --help lists mount among the commands" '^ +mount\*? +Mount a container' "$HELP"

# --- mounting through the docker CLI ----------------------------------------------
# plugin_mount DESC ARGS...: `docker ARGS...` (daemonized), then checks.
plugin_mount() {
	local desc=$1 st=0 out
	shift
	on_exit "$(printf 'dfit_unmount %q %q' "$MNT" "$WORKDIR/plugin.pid")"
	out=$(timeout -k 5 "$DFIT_MOUNT_TIMEOUT" docker "$@" 2>&1 </dev/null) || st=$?
	if [ "$st" -eq 0 ] && is_fuse_mounted "$MNT"; then
		pass "$desc: mounted"
	else
		fail "$desc: mounted (exit $st)"
		printf '%s\n' "$out" | detail
		return 1
	fi
}
plugin_unmount() {
	local pid
	pid=$(cat "$WORKDIR/plugin.pid" 2>/dev/null || true)
	check "$1: fusermount3 -u" timeout 10 fusermount3 -u "$MNT"
	check "$1: the serving process exits" wait_until 10 pid_gone "$pid"
}

if plugin_mount "docker mount -d $CONTAINER:/etc DIR" \
	mount -d --pid-file "$WORKDIR/plugin.pid" "$CONTAINER:/etc" "$MNT"; then
	assert_eq "docker mount: /etc/alpine-release through the mount" "$ALPINE_RELEASE" "$(run_sh "cat '$MNT/alpine-release'")"
	check "docker mount: write a file through the mount" run_sh "echo plugin-$$ >'$MNT/dfit-plugin'"
	assert_eq "docker mount: the container sees it" "plugin-$$" "$(dx cat /etc/dfit-plugin)"
	dx rm -f /etc/dfit-plugin
	plugin_unmount "docker mount"
fi

check "docker context create $CTX (the local socket)" \
	timeout 30 docker context create "$CTX" --docker host=unix:///var/run/docker.sock
if plugin_mount "docker --context $CTX -D mount" \
	--context "$CTX" -D mount -d --pid-file "$WORKDIR/plugin.pid" --log-file "$WORKDIR/plugin.log" "$CONTAINER" "$MNT"; then
	check "docker --context: / of the container" test -f "$MNT/etc/alpine-release"
	assert_match "docker -D: the plugin logs at debug level" 'DEBUG' "$(cat "$WORKDIR/plugin.log")"
	plugin_unmount "docker --context"
fi

# expect_fail DESC STATUS ERE CMD...: CMD exits STATUS with output matching ERE.
expect_fail() {
	local desc=$1 want=$2 re=$3 st=0
	shift 3
	OUT=$(timeout -k 5 60 "$@" 2>&1 </dev/null) || st=$?
	assert_eq "$desc: exit status $want" "$want" "$st"
	assert_match "$desc: says why" "$re" "$OUT"
	check "$desc: nothing mounted" not_mounted "$MNT"
}
expect_fail "docker --context nope mount" 1 'context nope.*not found' \
	docker --context nope mount "$CONTAINER" "$MNT"
expect_fail "docker -H unix:///nonexistent mount" 1 'cannot reach the Docker engine at unix:///nonexistent' \
	docker -H unix:///nonexistent.sock mount "$CONTAINER" "$MNT"
expect_fail "docker mount of an unknown container" 1 "no such container" \
	docker mount "dfit-nope-$$" "$MNT"
assert_match "docker mount of an unknown container: hint names $CONTAINER" "^hint: running containers: .*$CONTAINER" "$OUT"
expect_fail "docker mount without a mount point" 2 'MOUNTPOINT|required' \
	docker mount "$CONTAINER"

# --- dockerfuse --context ----------------------------------------------------------
# df_mount DESC ARGS...: dockerfuse ARGS... -d, mounted, then unmounted.
df_mount() {
	local desc=$1 st=0 out
	shift
	on_exit "$(printf 'dfit_unmount %q %q' "$MNT" "$WORKDIR/plugin.pid")"
	out=$(timeout -k 5 "$DFIT_MOUNT_TIMEOUT" "$@" -d --pid-file "$WORKDIR/plugin.pid" 2>&1 </dev/null) || st=$?
	if [ "$st" -eq 0 ] && is_fuse_mounted "$MNT" && test -f "$MNT/etc/alpine-release"; then
		pass "$desc: mounted"
		plugin_unmount "$desc"
	else
		fail "$desc: mounted (exit $st)"
		printf '%s\n' "$out" | detail
	fi
}
df_mount "dockerfuse --context $CTX" "$DOCKERFUSE" --context "$CTX" "$CONTAINER" "$MNT"
df_mount "--context beats DOCKER_HOST" env DOCKER_HOST=tcp://127.0.0.1:1 \
	"$DOCKERFUSE" -context "$CTX" -id "$CONTAINER" -mount "$MNT"
df_mount "--context default beats DOCKER_CONTEXT" env DOCKER_CONTEXT=nope \
	"$DOCKERFUSE" --context default "$CONTAINER" "$MNT"
expect_fail "dockerfuse --context nope" 1 'context nope.*(--context).*not found' \
	env DOCKER_CONTEXT="$CTX" "$DOCKERFUSE" --context nope "$CONTAINER" "$MNT"
expect_fail "dockerfuse --context with -H" 2 'cannot be used with' \
	"$DOCKERFUSE" --context "$CTX" -H unix:///var/run/docker.sock "$CONTAINER" "$MNT"

finish
