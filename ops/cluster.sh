#!/usr/bin/env bash
# Three clearhub nodes on loopback, the second and third joined to the first
# with a join token. Data in ./cluster-data/nN. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
DATA=${DATA:-cluster-data}
mkdir -p "$DATA"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait || true
}
trap cleanup EXIT INT TERM

node() { # node N [extra args...]
	local n=$1; shift
	"$BIN/hubd" --data "$DATA/n$n" --node-id "n$n" \
		--admin "127.0.0.1:$((9443 + 100 * (n - 1)))" \
		--raft "127.0.0.1:$((9444 + 100 * (n - 1)))" \
		--http "127.0.0.1:$((9090 + 100 * (n - 1)))" \
		--sip-udp "127.0.0.1:$((5060 + 100 * (n - 1)))" \
		--sip-tcp "127.0.0.1:$((5060 + 100 * (n - 1)))" \
		--sip-tls "127.0.0.1:$((5061 + 100 * (n - 1)))" "$@" &
	pids+=($!)
}

wait_ready() { # wait_ready N
	local port=$((9090 + 100 * ($1 - 1)))
	for _ in $(seq 1 150); do
		curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "node n$1 not ready" >&2
	return 1
}

node 1
wait_ready 1
if [ ! -d "$DATA/n2/pki" ] || [ ! -d "$DATA/n3/pki" ]; then
	token=$("$BIN/hubctl" --data "$DATA/n1" --addr 127.0.0.1:9443 cluster token)
fi
for n in 2 3; do
	if [ -d "$DATA/n$n/pki" ]; then node "$n"; else node "$n" --join 127.0.0.1:9443 --join-token "$token"; fi
done
wait_ready 2
wait_ready 3
"$BIN/hubctl" --data "$DATA/n1" --addr 127.0.0.1:9443 cluster status
echo "three nodes up; hubctl --data $DATA/n1 --addr 127.0.0.1:9443 ...; Ctrl-C stops them"
wait
