#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317 # code for the cleanup registry in single quotes; helpers run via check
# ssh:// engine scenario: an OpenSSH server of the scenario's own on
# 127.0.0.1 (own config, two ports, own host key, started here and stopped
# on every exit path) in front of the engine, reached the way the docker CLI
# does (`ssh ... docker system dial-stdio`, the real ssh client with a
# config of the test's own: its key, its known_hosts, put first in PATH).
#   DOCKER_HOST=ssh://root@127.0.0.1:PORT mounts, reads and writes; a
#   docker context with an ssh endpoint, through dockerfuse --context and
#   through `docker --context CTX mount`; errors with a cause and a hint for
#   a refused key (user nobody), an unknown host key (localhost is not in
#   known_hosts) and a remote without docker (the second port runs commands
#   with an empty PATH).
# Environment: DOCKERFUSE, CONTAINER (running alpine), WORKDIR; needs root
# and openssh-server (integration/setup-engine.sh installs it).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_env DOCKERFUSE CONTAINER WORKDIR
[ -x /usr/sbin/sshd ] || abort "/usr/sbin/sshd missing (run integration/setup-engine.sh)"

S=$WORKDIR/ssh
mkdir -p "$S/bin" "$S/keys" /run/sshd
chmod 0700 "$S"
P1=$((20000 + $$ % 20000))
P2=$((P1 + 1))
ssh-keygen -q -t ed25519 -N '' -f "$S/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$S/id_ed25519"
cp "$S/id_ed25519.pub" "$S/keys/root"
cat >"$S/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $P1
Port $P2
HostKey $S/host_key
PidFile $S/sshd.pid
AuthorizedKeysFile $S/keys/%u
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Match LocalPort $P2
	ForceCommand env PATH=/nonexistent /bin/sh -c "\$SSH_ORIGINAL_COMMAND"
CONF
check "sshd -t accepts the configuration" /usr/sbin/sshd -t -f "$S/sshd_config"
on_exit "$(printf 'kill "$(cat %q 2>/dev/null)" 2>/dev/null' "$S/sshd.pid")"
check "sshd starts on 127.0.0.1:$P1 and :$P2" /usr/sbin/sshd -f "$S/sshd_config" -E "$S/sshd.log"
sshd_up() { ss -ltn | grep -q "127.0.0.1:$P2 "; }
check "sshd listens" wait_until 10 sshd_up

# The client: the real ssh with the test's key and known_hosts.
cat >"$S/ssh_config" <<CONF
Host *
	IdentityFile $S/id_ed25519
	IdentitiesOnly yes
	UserKnownHostsFile $S/known_hosts
	GlobalKnownHostsFile /dev/null
CONF
printf '[127.0.0.1]:%s %s\n' "$P1" "$(cat "$S/host_key.pub")" "$P2" "$(cat "$S/host_key.pub")" >"$S/known_hosts"
printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$S/ssh_config" >"$S/bin/ssh"
chmod +x "$S/bin/ssh"
export PATH=$S/bin:$PATH
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
export DOCKER_CONFIG=$WORKDIR/docker-config
mkdir -p "$DOCKER_CONFIG"
check "ssh root@127.0.0.1 -p $P1 docker version works" \
	timeout 60 ssh -o BatchMode=yes -p "$P1" root@127.0.0.1 docker version

MNT=$WORKDIR/mnt
mkdir -p "$MNT"
RELEASE=$(dx cat /etc/alpine-release)
# ssh_mount DESC ENV... -- ARGS...: dockerfuse over ssh, read, write, unmount.
ssh_mount() {
	local desc=$1 envs=() st=0 pid
	shift
	while [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	rm -f "$WORKDIR/ssh.pid"
	on_exit "$(printf 'dfit_unmount %q %q' "$MNT" "$WORKDIR/ssh.pid")"
	timeout -k 5 "$DFIT_MOUNT_TIMEOUT" env "${envs[@]}" "$@" -d --pid-file "$WORKDIR/ssh.pid" \
		--log-file "$WORKDIR/ssh.log" >"$WORKDIR/ssh.out" 2>&1 </dev/null || st=$?
	if [ "$st" -ne 0 ] || ! is_fuse_mounted "$MNT"; then
		fail "$desc: mounted (exit $st)"
		show_file "output" "$WORKDIR/ssh.out"
		return 0
	fi
	pass "$desc: mounted"
	pid=$(cat "$WORKDIR/ssh.pid")
	check "$desc: its engine connections are ssh processes" pgrep -P "$pid" -f 'dial-stdio'
	assert_eq "$desc: reads /etc/alpine-release" "$RELEASE" "$(run_sh "cat '$MNT/etc/alpine-release'")"
	check "$desc: writes through" run_sh "echo ssh-$$ >'$MNT/tmp/dfit-ssh'"
	assert_eq "$desc: the container sees the write" "ssh-$$" "$(dx cat /tmp/dfit-ssh)"
	check "$desc: unmount" timeout 30 "$DOCKERFUSE" unmount "$MNT"
	check "$desc: the process has exited" pid_gone "$pid"
}
ssh_mount "DOCKER_HOST=ssh://root@127.0.0.1:$P1" DOCKER_HOST="ssh://root@127.0.0.1:$P1" -- \
	"$DOCKERFUSE" "$CONTAINER" "$MNT"
CTX=dfit-ssh-$$
check "docker context create $CTX (ssh endpoint)" \
	timeout 30 docker context create "$CTX" --docker "host=ssh://root@127.0.0.1:$P1"
ssh_mount "dockerfuse --context $CTX" -- "$DOCKERFUSE" --context "$CTX" "$CONTAINER" "$MNT"
check "install-plugin" "$DOCKERFUSE" install-plugin --dir "$DOCKER_CONFIG/cli-plugins"
ssh_mount "docker --context $CTX mount" -- docker --context "$CTX" mount "$CONTAINER" "$MNT"

# ssh_error DESC ERE HINT_ERE URL: the mount fails with ERE and a hint.
ssh_error() {
	local desc=$1 re=$2 hint=$3 url=$4 st=0 out
	out=$(timeout -k 5 90 env DOCKER_HOST="$url" "$DOCKERFUSE" "$CONTAINER" "$MNT" 2>&1 </dev/null) || st=$?
	assert_eq "$desc: exit status 1" 1 "$st"
	assert_match "$desc: says why" "$re" "$out"
	assert_match "$desc: a hint" "^hint: .*$hint" "$out"
	check "$desc: nothing mounted" not_mounted "$MNT"
}
ssh_error "refused key (nobody)" 'ssh to nobody@127.0.0.1.*key was refused' 'BatchMode' \
	"ssh://nobody@127.0.0.1:$P1"
ssh_error "unknown host key (localhost)" 'host key is not known' 'known_hosts' \
	"ssh://root@localhost:$P1"
ssh_error "remote without docker" 'no docker command on the remote' 'PATH' \
	"ssh://root@127.0.0.1:$P2"
ssh_error "nothing listening" 'ssh failed|refused' 'ssh ' "ssh://root@127.0.0.1:1"

finish
