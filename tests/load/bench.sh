#!/usr/bin/env bash
# The load bench of issue 10, one command: hubd and a tuned Kamailio side
# by side, each pinned (server on CPU 0, driver and responder on CPU 1)
# and unpinned, driven by the project's own load driver (tests/load/cmd/
# sipload: raw UDP with batched writes, pipelined TLS; no SIP library).
#
# Per case: a MESSAGE ramp over UDP (STEP_SECS per step) from network A's
# address (127.0.0.2) through the proxy to a responder at network B's edge
# (127.0.0.3), ending at the first step that is not clean (any failure,
# 503, timeout, or the driver falling short of the target), then the
# OVERLOAD multiples of the highest clean rate (shedding and memory); then
# a shorter TLS ramp over persistent pipelined connections. Every step
# prints offered, achieved (2xx), failed, shed (503), timeouts (no answer
# in 2 s; never retransmitted), p50/p99/p99.9 of the 2xx round trips, the
# proxy's CPU per answered message (utime+stime from /proc) and memory
# (VmRSS for hubd, Pss summed over Kamailio's processes). The driver's own
# ceiling (UAC to UAS, nothing between) is measured first. The summary
# checks the targets of issue 10.
#
# hubd runs with its ledger on and fsync'd (the default), in a data
# directory on disk, not on tmpfs. Kamailio 5.6 is tuned as the issue
# states: t_relay, record_route, one acc line per request, tlsf allocator,
# 2 UDP (and 2 TLS) workers, shared memory sized for the rates.
#
# Loopback only. Bounded: at most |UDP_RATES| + |OVERLOAD| + |TLS_RATES|
# steps per case, each STEP_SECS (TLS_STEP_SECS) + 2 s drain + 1 s gap.
# Every process started here is stopped by PID on exit.
#
# Usage: tests/load/bench.sh             (make bench builds bin/ first)
#        SYSTEMS=kamailio PINNINGS=unpinned UDP_RATES="2000 4000" tests/load/bench.sh
#        PROFILE=1 tests/load/bench.sh    (adds a CPU profile of hubd at PROFILE_RATE)
set -uo pipefail

LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../interop/lib.sh
source "$LOAD_DIR/../interop/lib.sh"

UDP_RATES=${UDP_RATES:-1000 2000 3000 4000 6000 8000 10000 12000 15000 20000 25000 30000}
TLS_RATES=${TLS_RATES:-1000 2000 4000 6000 8000 12000 16000 18000 20000 24000}
CEILING_RATES=${CEILING_RATES:-10000 20000 30000 40000 60000}
STEP_SECS=${STEP_SECS:-10}
TLS_STEP_SECS=${TLS_STEP_SECS:-5}
CEILING_STEP_SECS=${CEILING_STEP_SECS:-3}
OVERLOAD=${OVERLOAD-2 5} # empty: no overload steps
SYSTEMS=${SYSTEMS:-hubd kamailio}
PINNINGS=${PINNINGS:-pinned unpinned}
TRANSPORTS=${TRANSPORTS:-udp tls}
CEILING=${CEILING:-1}
PROFILE=${PROFILE:-0}
PROFILE_RATE=${PROFILE_RATE:-5000}
PROFILE_SECS=${PROFILE_SECS:-20}
TLS_CONNS=${TLS_CONNS:-8}
UDP_SOCKETS=${UDP_SOCKETS:-4}
KEEP=${KEEP:-0}
FAIRNESS=${FAIRNESS:-1}
FAIR_RATE=${FAIR_RATE:-200}
FAIR_SECS=${FAIR_SECS:-20}
FLOOD_RATE=${FLOOD_RATE:-}

# Every address and port can be overridden (two benches on one machine).
HUB_IP=${HUB_IP:-127.0.0.1}
HUB_UDP=${HUB_UDP:-$HUB_IP:5060}
HUB_TLS=${HUB_TLS:-$HUB_IP:5061}
HUB_ADMIN=${HUB_ADMIN:-127.0.0.1:19543}
HUB_RAFT=${HUB_RAFT:-127.0.0.1:19544}
HUB_HTTP=${HUB_HTTP:-127.0.0.1:19190}
K_IP=${K_IP:-127.0.0.1}
K_UDP_PORT=${K_UDP_PORT:-5070}
K_TLS_PORT=${K_TLS_PORT:-5071}
K_CHILDREN=${K_CHILDREN:-2}
K_SHM=${K_SHM:-1024}
A_IP=${A_IP:-127.0.0.2}
B_IP=${B_IP:-127.0.0.3}
C_IP=${C_IP:-127.0.0.4}
EDGE_UDP_PORT=${EDGE_UDP_PORT:-5060}
EDGE_TLS_PORT=${EDGE_TLS_PORT:-5061}
SERVER_CPU=${SERVER_CPU:-0}
DRIVER_CPU=${DRIVER_CPU:-1}

SIPLOAD=$ROOT/bin/sipload
WORK=$(mktemp -d "${TMPDIR:-/tmp}/clearhub-load.XXXXXX")
TSV=$WORK/steps.tsv
: >"$TSV"

finish() {
	local rc=$?
	stop_all
	if ((rc != 0)) || [[ "$KEEP" == 1 ]]; then
		log "logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap finish EXIT
trap 'exit 130' INT TERM

need_bench_packages() {
	local missing=()
	command -v kamailio >/dev/null || missing+=(kamailio)
	[[ -e "$(kamailio_mpath 2>/dev/null)/tls.so" ]] || missing+=(kamailio-tls-modules)
	command -v taskset >/dev/null || missing+=(util-linux)
	command -v openssl >/dev/null || missing+=(openssl)
	command -v curl >/dev/null || missing+=(curl)
	command -v ss >/dev/null || missing+=(iproute2)
	command -v ps >/dev/null || missing+=(procps)
	((${#missing[@]} == 0)) && return 0
	[[ " ${missing[*]} " == *" kamailio "* ]] && missing+=(kamailio-tls-modules)
	log "installing: ${missing[*]}"
	local sudo=()
	((EUID != 0)) && sudo=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
		"${sudo[@]}" apt-get update >/dev/null || die "apt-get update failed"
		"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
			die "apt-get install ${missing[*]} failed"
	fi
}

build() {
	if [[ ! -x "$HUBD" || ! -x "$HUBCTL" ]]; then
		make -C "$ROOT" build >"$WORK/build.log" 2>&1 || die "make build failed: $(tail -n 5 "$WORK/build.log")"
	fi
	(cd "$ROOT" && go build -o "$SIPLOAD" ./tests/load/cmd/sipload) >"$WORK/build-sipload.log" 2>&1 ||
		die "building sipload failed: $(tail -n 5 "$WORK/build-sipload.log")"
}

# pin_server / pin_driver: the taskset prefix of a case ("" unpinned).
PIN_SERVER=()
PIN_DRIVER=()
set_pinning() {
	if [[ $1 == pinned ]]; then
		PIN_SERVER=(taskset -c "$SERVER_CPU")
		PIN_DRIVER=(taskset -c "$DRIVER_CPU")
	else
		PIN_SERVER=()
		PIN_DRIVER=()
	fi
}

hubctl() { "$HUBCTL" --data "$DATA" "$@"; }

# start_hubd [extra hubd flags]: a fresh single-node hub with nets a and b.
start_hubd() {
	DATA=$WORK/hub-data-$CASE
	mkdir -p "$DATA"
	"${PIN_SERVER[@]}" "$HUBD" --data "$DATA" --node-id bench1 --log-level warn \
		--sip-udp "$HUB_UDP" --sip-tcp "$HUB_UDP" --sip-tls "$HUB_TLS" \
		--admin "$HUB_ADMIN" --raft "$HUB_RAFT" --http "$HUB_HTTP" "$@" >"$WORK/hubd-$CASE.log" 2>&1 &
	SERVER_PID=$!
	own "$SERVER_PID"
	wait_until 120 0.25 curl -fs -o /dev/null "http://$HUB_HTTP/readyz" ||
		die "hubd not ready: $(tail -n 10 "$WORK/hubd-$CASE.log")"
	wait_until 40 0.25 test -s "$DATA/admin.addr" || die "hubd wrote no admin.addr"
	{
		hubctl network add net-a --domain a.example --edge "sip:$A_IP:5060" --cidr "$A_IP/32" \
			--member-ca "$DATA/pki/ca.crt" --services im &&
			hubctl network add net-b --domain b.example --edge "sip:$B_IP:$EDGE_UDP_PORT" --cidr "$B_IP/32" \
				--member-ca "$DATA/pki/ca.crt" --services im &&
			hubctl policy allow net-b --from net-a --services im &&
			hubctl certs member a.example --host "$A_IP" --host a.example &&
			hubctl certs member b.example --host "$B_IP" --host b.example
	} >"$WORK/onboard-$CASE.log" 2>&1 || die "onboarding failed: $(tail -n 5 "$WORK/onboard-$CASE.log")"
	UDP_TARGET=$HUB_UDP
	TLS_TARGET=$HUB_TLS
	TREE=()
	EDGE_CERT=(-cert "$DATA/members/b.example.crt" -key "$DATA/members/b.example.key")
	UAC_CERT=(-cert "$DATA/members/a.example.crt" -key "$DATA/members/a.example.key")
	log "hubd up (pid $SERVER_PID, ${PIN_SERVER[*]:-unpinned})"
}

# hub_edge_tls: net-b's edge becomes its TLS listener (the UDP ramp is over).
hub_edge_tls() {
	hubctl network update net-b --edge "sips:$B_IP:$EDGE_TLS_PORT" >>"$WORK/onboard-$CASE.log" 2>&1 ||
		die "hubctl network update net-b --edge sips: failed"
}

start_kamailio_bench() {
	local cfg=$WORK/kamailio-$CASE.cfg rundir=$WORK/run-kamailio-$CASE
	if [[ ! -e $WORK/kamailio.key ]]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=kamailio-bench" \
			-keyout "$WORK/kamailio.key" -out "$WORK/kamailio.crt" 2>/dev/null || die "openssl: Kamailio certificate"
	fi
	render_cfg "$KCFG/bench-proxy.cfg" "$cfg" "IP=$K_IP" "PORT=$K_UDP_PORT" "TLS_PORT=$K_TLS_PORT" \
		"CHILDREN=$K_CHILDREN" "MPATH=$(kamailio_mpath)" "TLS_KEY=$WORK/kamailio.key" "TLS_CERT=$WORK/kamailio.crt" \
		"EDGE=sip:$B_IP:$EDGE_UDP_PORT" "EDGE_TLS=sip:$B_IP:$EDGE_TLS_PORT;transport=tls"
	mkdir -p "$rundir"
	"$KAMAILIO" -c -f "$cfg" -L "$(kamailio_mpath)" -x tlsf -X tlsf >"$WORK/kamailio-$CASE.check" 2>&1 ||
		die "kamailio config check failed: $(tail -n 5 "$WORK/kamailio-$CASE.check")"
	"${PIN_SERVER[@]}" "$KAMAILIO" -f "$cfg" -L "$(kamailio_mpath)" -DD -E -Y "$rundir" -P "$rundir/kamailio.pid" \
		-x tlsf -X tlsf -m "$K_SHM" -M 16 >"$WORK/kamailio-$CASE.log" 2>&1 &
	SERVER_PID=$!
	own "$SERVER_PID"
	wait_until 50 0.2 udp_bound "$K_IP" "$K_UDP_PORT" || die "kamailio did not listen: $(tail -n 5 "$WORK/kamailio-$CASE.log")"
	wait_until 50 0.2 tcp_bound "$K_IP" "$K_TLS_PORT" || die "kamailio did not listen on TLS"
	UDP_TARGET=$K_IP:$K_UDP_PORT
	TLS_TARGET=$K_IP:$K_TLS_PORT
	TREE=(-tree)
	EDGE_CERT=()
	UAC_CERT=()
	log "kamailio up (pid $SERVER_PID, ${PIN_SERVER[*]:-unpinned})"
}

start_edge() {
	"${PIN_DRIVER[@]}" "$SIPLOAD" uas -udp "$B_IP:$EDGE_UDP_PORT" -tls "$B_IP:$EDGE_TLS_PORT" "${EDGE_CERT[@]}" \
		-lifetime 1h >"$WORK/edge-$CASE.log" 2>&1 &
	EDGE_PID=$!
	own "$EDGE_PID"
	wait_until 50 0.1 udp_bound "$B_IP" "$EDGE_UDP_PORT" || die "edge did not bind: $(tail -n 5 "$WORK/edge-$CASE.log")"
	wait_until 50 0.1 tcp_bound "$B_IP" "$EDGE_TLS_PORT" || die "edge did not bind TLS"
}

# uac TRANSPORT TARGET RATES STEP [extra flags]: one ramp, table to stdout.
uac() {
	local tr=$1 target=$2 rates=$3 step=$4 pid
	shift 4
	"${PIN_DRIVER[@]}" "$SIPLOAD" uac -transport "$tr" -target "$target" -local "$A_IP" \
		-sockets "$UDP_SOCKETS" -conns "$TLS_CONNS" -rates "$rates" -step "${step}s" \
		-label "$CASE-$tr" -tsv "$TSV" "$@" 2>>"$WORK/uac-$CASE.log" &
	pid=$!
	own "$pid"
	local n
	n=$(wc -w <<<"$rates $OVERLOAD")
	wait_pid_timeout "$pid" $((n * (step + 4) + 30)) || log "driver $CASE-$tr ended with status $?"
}

# warmup TRANSPORT TARGET [flags]: 2 s at 200/s, not counted: the proxy's
# workers are up, its connection to the edge is open and its caches warm
# before the first measured step.
warmup() {
	local tr=$1 target=$2
	shift 2
	"${PIN_DRIVER[@]}" "$SIPLOAD" uac -transport "$tr" -target "$target" -local "$A_IP" -sockets 1 -conns 2 \
		-rates 200 -step 2s -label "warmup-$CASE-$tr" "$@" >>"$WORK/warmup-$CASE.log" 2>&1 &
	local pid=$!
	own "$pid"
	wait_pid_timeout "$pid" 20 || log "warm-up $CASE $tr: driver status $? (see $WORK/warmup-$CASE.log)"
	grep -q 'max_clean=200 ' "$WORK/warmup-$CASE.log" 2>/dev/null || log "warm-up $CASE $tr was not clean"
	: >"$WORK/warmup-$CASE.log"
	sleep 1
}

stop_case() {
	stop_pid "$EDGE_PID"
	disown_pid "$EDGE_PID"
	stop_pid "$SERVER_PID"
	disown_pid "$SERVER_PID"
	sleep 1
}

run_case() {
	local sys=$1 pin=$2
	CASE=$sys-$pin
	set_pinning "$pin"
	case $sys in
	hubd) start_hubd ;;
	kamailio) start_kamailio_bench ;;
	*) die "unknown system $sys" ;;
	esac
	start_edge
	if [[ " $TRANSPORTS " == *" udp "* ]]; then
		warmup udp "$UDP_TARGET"
		uac udp "$UDP_TARGET" "$UDP_RATES" "$STEP_SECS" -pid "$SERVER_PID" "${TREE[@]}" -overload "$OVERLOAD"
		echo
		sleep 2
	fi
	if [[ " $TRANSPORTS " == *" tls "* ]]; then
		[[ $sys == hubd ]] && hub_edge_tls
		warmup tls "$TLS_TARGET" "${UAC_CERT[@]}"
		uac tls "$TLS_TARGET" "$TLS_RATES" "$TLS_STEP_SECS" -pid "$SERVER_PID" "${TREE[@]}" "${UAC_CERT[@]}"
		echo
	fi
	stop_case
}

run_ceiling() {
	local pin tr rates
	for pin in $PINNINGS; do
		set_pinning "$pin"
		for tr in $TRANSPORTS; do
			CASE=ceiling-$pin
			"${PIN_DRIVER[@]}" "$SIPLOAD" ceiling -transport "$tr" -target "$B_IP:$((EDGE_UDP_PORT + 900))" -local "$A_IP" \
				-sockets "$UDP_SOCKETS" -conns "$TLS_CONNS" -rates "$CEILING_RATES" -step "${CEILING_STEP_SECS}s" \
				-label "ceiling-$pin-$tr" -tsv "$TSV" 2>>"$WORK/uac-ceiling.log" &
			local pid=$!
			own "$pid"
			wait_pid_timeout "$pid" $(($(wc -w <<<"$CEILING_RATES") * (CEILING_STEP_SECS + 4) + 30)) ||
				log "ceiling $pin $tr ended with status $?"
			echo
		done
	done
}

# run_profile: hubd unpinned at PROFILE_RATE over UDP with pprof on; the
# top 25 of a PROFILE_SECS CPU profile.
run_profile() {
	CASE=profile
	set_pinning unpinned
	start_hubd --pprof
	start_edge
	warmup udp "$HUB_UDP"
	"$SIPLOAD" uac -transport udp -target "$HUB_UDP" -local "$A_IP" -sockets "$UDP_SOCKETS" \
		-rates "$PROFILE_RATE" -step "$((PROFILE_SECS + 6))s" -pid "$SERVER_PID" -label profile-udp \
		2>>"$WORK/uac-profile.log" &
	local pid=$!
	own "$pid"
	sleep 3
	curl -fsS -o "$WORK/hubd-cpu.pprof" "http://$HUB_HTTP/debug/pprof/profile?seconds=$PROFILE_SECS" ||
		log "could not fetch the CPU profile"
	wait_pid_timeout "$pid" $((PROFILE_SECS + 30))
	echo
	if [[ -s "$WORK/hubd-cpu.pprof" ]]; then
		echo "hubd CPU profile at $PROFILE_RATE MESSAGE/s over UDP, $PROFILE_SECS s (go tool pprof -top):"
		go tool pprof -top -nodecount=25 "$HUBD" "$WORK/hubd-cpu.pprof" 2>/dev/null | sed 1,4d
		cp "$WORK/hubd-cpu.pprof" "$ROOT/bin/hubd-cpu.pprof" 2>/dev/null &&
			echo "(profile kept in bin/hubd-cpu.pprof: go tool pprof -http=: bin/hubd-cpu.pprof)"
		echo
	fi
	stop_case
}

# run_fairness: issue 10's fairness case on hubd, unpinned: net-c
# (C_IP) sends FAIR_RATE MESSAGE/s to net-b alone, then again while net-a
# floods at FLOOD_RATE (default: the highest clean UDP rate hubd reached
# unpinned in this run, else 10,000/s) with the default limits. The
# target: the victim's success rate and p99 within 10% of its own baseline.
run_fairness() {
	CASE=fairness
	set_pinning unpinned
	start_hubd
	{
		hubctl network add net-c --domain c.example --edge "sip:$C_IP:5060" --cidr "$C_IP/32" \
			--member-ca "$DATA/pki/ca.crt" --services im &&
			hubctl policy allow net-b --from net-c --services im
	} >>"$WORK/onboard-$CASE.log" 2>&1 || die "onboarding net-c failed: $(tail -n 5 "$WORK/onboard-$CASE.log")"
	start_edge
	warmup udp "$HUB_UDP"
	local flood=$FLOOD_RATE
	if [[ -z $flood ]]; then
		flood=$(awk -F'\t' '$1 == "hubd-unpinned-udp" && $3 == "ramp" && $17 == 1 && $4 + 0 > m { m = $4 + 0 } END { print m + 0 }' "$TSV")
		((flood > 0)) || flood=10000
	fi
	log "fairness: victim net-c at $FAIR_RATE/s for $FAIR_SECS s, alone and beside net-a flooding at $flood/s"
	"$SIPLOAD" uac -transport udp -target "$HUB_UDP" -local "$C_IP" -sockets 1 -rates "$FAIR_RATE" -step "${FAIR_SECS}s" \
		-label fair-victim-alone -tsv "$TSV" -from-domain c.example -from-user victim 2>>"$WORK/uac-fair.log" >>"$WORK/fair.out" &
	local v=$!
	own "$v"
	wait_pid_timeout "$v" $((FAIR_SECS + 30))
	sleep 2
	"$SIPLOAD" uac -transport udp -target "$HUB_UDP" -local "$A_IP" -sockets "$UDP_SOCKETS" -rates "$flood" \
		-step "$((FAIR_SECS + 4))s" -label fair-flood -tsv "$TSV" 2>>"$WORK/uac-fair.log" >>"$WORK/fair.out" &
	local f=$!
	own "$f"
	sleep 2
	"$SIPLOAD" uac -transport udp -target "$HUB_UDP" -local "$C_IP" -sockets 1 -rates "$FAIR_RATE" -step "${FAIR_SECS}s" \
		-label fair-victim-flooded -tsv "$TSV" -from-domain c.example -from-user victim -pid "$SERVER_PID" 2>>"$WORK/uac-fair.log" >>"$WORK/fair.out" &
	v=$!
	own "$v"
	wait_pid_timeout "$v" $((FAIR_SECS + 30))
	wait_pid_timeout "$f" 30
	stop_case
}

summary() {
	echo "=== summary (issue 10 targets; loopback, $(nproc) CPUs; pinned: server on CPU $SERVER_CPU, driver and edge on CPU $DRIVER_CPU) ==="
	# Other work on the machine skews every figure: say how much there was.
	echo "load average at start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
	awk -F'\t' -v systems="$SYSTEMS" -v pinnings="$PINNINGS" -v transports="$TRANSPORTS" '
	# columns: 1 label 2 transport 3 phase 4 target 5 offered/s 6 ok/s 7 failed 8 shed 9 timeouts
	#          10 p50 11 p99 12 p99.9 13 cpu% 14 cpuus 15 memMB 16 drvus 17 clean
	{
		l = $1
		seen[l] = 1
		if ($3 == "ramp" && $17 == 1 && $4 + 0 > max[l]) { max[l] = $4 + 0; cpu[l] = $14; }
		if ($3 == "ramp" && $17 == 1) { n = ++nclean[l]; ct[l, n] = $4 + 0; c50[l, n] = $10; c99[l, n] = $11 }
		if ($3 == "ramp" && $17 != 1) ended[l] = 1
		if ($3 ~ /^overload/) { no = ++nover[l]; ov[l, no] = $0 }
	}
	function yn(b) { return b ? "MET" : "missed" }
	END {
		ns = split(systems, S, " "); np = split(pinnings, P, " "); nt = split(transports, T, " ")
		for (p = 1; p <= np; p++) for (t = 1; t <= nt; t++) {
			l = "ceiling-" P[p] "-" T[t]
			if (l in seen) printf "driver ceiling %-8s %-3s (UAC->UAS, no proxy): clean up to %d/s%s\n", P[p], T[t], max[l], (ended[l] ? "" : " (every step clean: a lower bound)")
		}
		for (t = 1; t <= nt; t++) for (p = 1; p <= np; p++) {
			h = "hubd-" P[p] "-" T[t]; k = "kamailio-" P[p] "-" T[t]
			for (s = 1; s <= ns; s++) {
				l = S[s] "-" P[p] "-" T[t]
				if (!(l in seen)) continue
				printf "%-24s highest 0-failure rate %6d/s   cpu %s us/msg at that rate%s\n", l, max[l], (cpu[l] == "" ? "-" : cpu[l]), (ended[l] ? "" : " (every step clean: a lower bound)")
			}
			if ((h in seen) && (k in seen)) {
				r = (max[k] > 0) ? max[h] / max[k] : 0
				printf "  hubd/kamailio %s %s: %.2fx  (target >= 1.5x: %s)\n", P[p], T[t], r, yn(r >= 1.5)
			}
			if (h in seen) {
				if (T[t] == "udp") printf "  hubd CPU per message %s: %s us (target <= 40: %s)\n", P[p], cpu[h], yn(cpu[h] != "-" && cpu[h] + 0 <= 40 && max[h] > 0)
				# latency at 50% of the hub s own maximum: the highest clean step at or below it
				half = max[h] / 2; bi = 0
				for (i = 1; i <= nclean[h]; i++) if (ct[h, i] <= half && (bi == 0 || ct[h, i] > ct[h, bi])) bi = i
				if (bi) printf "  hubd at %d/s (<= 50%% of max) %s: p50 %.2f ms, p99 %.2f ms (target p50 < 0.5 and p99 < 2: %s)\n", ct[h, bi], P[p], c50[h, bi], c99[h, bi], yn(c50[h, bi] < 0.5 && c99[h, bi] < 2)
				else printf "  hubd at 50%% of max %s: no clean step that low (max %d/s)\n", P[p], max[h]
				for (i = 1; i <= nover[h]; i++) {
					split(ov[h, i], f, "\t")
					printf "  hubd %s %s at %d/s offered %.0f/s: ok %.0f/s, shed %d, failed %d, timeouts %d, p99 %.2f ms, RSS %s MB (RSS <= 300 MB: %s; admitted p99 < 50 ms and none failed: %s)\n", f[3], P[p], f[4], f[5], f[6], f[8], f[7], f[9], f[11], f[15], yn(f[15] != "-" && f[15] + 0 <= 300), yn(f[11] + 0 < 50 && f[7] == 0 && f[9] == 0)
				}
			}
		}
	}' "$TSV"
	awk -F'\t' '
	$1 == "fair-victim-alone" { ao = $6; ao_off = $5; a99 = $11 }
	$1 == "fair-victim-flooded" { fo = $6; fo_off = $5; f99 = $11; mem = $15 }
	$1 == "fair-flood" { fl_off = $5; fl_ok = $6; fl_shed = $8 }
	END {
		if (ao_off == "" || fo_off == "") exit
		as = 100 * ao / ao_off; fs = 100 * fo / fo_off
		printf "fairness (hubd unpinned, default limits): victim alone %.1f%% ok, p99 %.2f ms; beside a flood of %.0f/s (%.0f/s ok, %d shed) %.1f%% ok, p99 %.2f ms, hub RSS %s MB\n", as, a99, fl_off, fl_ok, fl_shed, fs, f99, mem
		printf "  victim success within 10%%: %s; victim p99 within 10%%: %s\n", (fs >= 0.9 * as ? "MET" : "missed"), (f99 <= 1.1 * a99 ? "MET" : "missed")
	}' "$TSV"
	echo "(the 0-failure rate is the highest ramp step with no failure, no 503, no timeout and the driver offering >= 97% of the target; a value at the driver ceiling is a lower bound)"
}

need_bench_packages
build
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "work dir $WORK; UDP rates: $UDP_RATES ($STEP_SECS s per step); TLS rates: $TLS_RATES ($TLS_STEP_SECS s); overload: $OVERLOAD x max"
log "note: figures from a shared machine are noisy; pinned cases assume CPUs $SERVER_CPU and $DRIVER_CPU exist"
((CEILING)) && run_ceiling
for sys in $SYSTEMS; do
	for pin in $PINNINGS; do
		run_case "$sys" "$pin"
	done
done
((PROFILE)) && run_profile
((FAIRNESS)) && [[ " $SYSTEMS " == *" hubd "* ]] && run_fairness
summary
