# shellcheck shell=bash disable=SC2034,SC2317 # variables are for the caller; helpers run via check/wait_until
# A second Docker engine for the TLS scenario (sourced after lib.sh):
#   real_certs DIR             CA, server cert (SAN IP:127.0.0.1) and client
#                              cert/key in DIR (ca.pem cert.pem key.pem and
#                              server-*.pem), made with openssl
#   real_second_dockerd DIR PORT
#                              dockerd with its own --data-root/--exec-root/
#                              --pidfile, -H unix://$DIR/docker.sock and
#                              -H tcp://127.0.0.1:PORT --tlsverify, no bridge
#                              and no iptables (it shares the host with the
#                              main engine); stopped, and its state removed,
#                              on every exit path (on_exit). Sets REAL_SOCK.

# real_certs DIR
real_certs() {
	local d=$1
	mkdir -p "$d"
	(
		cd "$d" || exit 1
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=dfreal-ca \
			-keyout ca-key.pem -out ca.pem
		openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server-key.pem -out server.csr
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
		openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
			-extfile server.ext -out server-cert.pem
		openssl req -newkey rsa:2048 -nodes -subj /CN=dfreal-client -keyout key.pem -out client.csr
		printf 'extendedKeyUsage=clientAuth\n' >client.ext
		openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
			-extfile client.ext -out cert.pem
		chmod 600 ./*key.pem
	) >"$d/openssl.log" 2>&1
}

# real_stop_dockerd DIR: stop the engine started in DIR (its containers
# first), wait for it, unmount what it left and remove its state.
real_stop_dockerd() {
	local d=$1 pid m
	if [ -S "$d/docker.sock" ]; then
		timeout 30 docker -H "unix://$d/docker.sock" ps -aq 2>/dev/null |
			xargs -r timeout 60 docker -H "unix://$d/docker.sock" rm -f >/dev/null 2>&1 || true
	fi
	pid=$(cat "$d/docker.pid" 2>/dev/null || true)
	if [ -n "$pid" ] && pid_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		wait_until 30 pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
	fi
	awk -v b="$d/" 'index($2, b) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf --one-file-system "$d/data" "$d/exec" 2>/dev/null || true
	ip link delete "$REAL_BRIDGE" 2>/dev/null || true
}

# The second engine gets a bridge of its own: with --bridge=none dockerd
# deletes the *default* bridge (docker0) at start, which breaks every
# container the first engine starts afterwards.
REAL_BRIDGE=dfreal-br0

# real_second_dockerd DIR PORT: start it and wait (60 s) until it answers.
real_second_dockerd() {
	local d=$1 port=$2 pid
	mkdir -p "$d/data" "$d/exec"
	on_exit "$(printf 'real_stop_dockerd %q' "$d")"
	ip link add "$REAL_BRIDGE" type bridge 2>/dev/null || true
	ip link set "$REAL_BRIDGE" up
	REAL_SOCK=unix://$d/docker.sock
	dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/docker.pid" \
		-H "$REAL_SOCK" -H "tcp://127.0.0.1:$port" \
		--tlsverify --tlscacert "$d/certs/ca.pem" --tlscert "$d/certs/server-cert.pem" --tlskey "$d/certs/server-key.pem" \
		--bridge="$REAL_BRIDGE" --iptables=false --ip-masq=false --storage-driver=overlay2 \
		>"$d/dockerd.log" 2>&1 </dev/null &
	pid=$!
	up() { pid_alive "$pid" && timeout 10 docker -H "$REAL_SOCK" version >/dev/null 2>&1; }
	wait_until 60 up
}
