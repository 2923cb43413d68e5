#!/usr/bin/env bash
# Load ramp: SIPp sends pager MESSAGEs from network A's address (127.0.0.2)
# through the hub to a SIPp UAS on network B's address (127.0.0.3), at
# rising rates, ~STEP_SECS per step, until the first failed call or the
# first retransmission (or the achieved rate falls well short of the target).
# Then the same ramp with a Kamailio stateful proxy (t_relay, record_route,
# acc to its log file) in the hub's place. Prints both side by side.
#
# Per step: target and achieved rate, failed calls, retransmissions, p50 and
# p99 response time (SIPp -trace_rtt), and the CPU the proxy used (from
# /proc/PID/stat, 100% = one core; Kamailio summed over its children).
#
# Bounded: at most |RATES| steps per system, each STEP_SECS + a few seconds.
#
# A cross-check with third-party tools only, not the bench of record: SIPp
# tops out near 12,000/s on two cores and this Kamailio (proxy.cfg) is not
# tuned. make bench runs tests/load/bench.sh (the project's driver against a
# tuned Kamailio, pinned and unpinned) instead.
#
# Usage: tests/interop/bench.sh      (make bench builds bin/ first)
#        RATES="500 1000" STEP_SECS=5 tests/interop/bench.sh
#        SYSTEMS=kamailio tests/interop/bench.sh
set -uo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATES=${RATES:-500 1000 2000 4000 8000 12000}
STEP_SECS=${STEP_SECS:-10}
SYSTEMS=${SYSTEMS:-hub kamailio}
# A step whose achieved rate is below this share of the target ends the ramp
# (the proxy, or SIPp itself, is saturated).
MIN_ACHIEVED_PCT=${MIN_ACHIEVED_PCT:-90}

HUB_IP=${HUB_IP:-127.0.0.1}
HUB_SIP_PORT=${HUB_SIP_PORT:-5060}
HUB=${HUB:-$HUB_IP:$HUB_SIP_PORT}
HUB_TLS=${HUB_TLS:-$HUB_IP:5061}
HUB_ADMIN=${HUB_ADMIN:-127.0.0.1:19543}
HUB_RAFT=${HUB_RAFT:-127.0.0.1:19544}
HUB_HTTP=${HUB_HTTP:-127.0.0.1:19190}
KPROXY_IP=${KPROXY_IP:-127.0.0.1}
KPROXY_PORT=${KPROXY_PORT:-5070}
KPROXY_CHILDREN=${KPROXY_CHILDREN:-4}
A_IP=${A_IP:-127.0.0.2}
B_IP=${B_IP:-127.0.0.3}
UAC_PORT=${UAC_PORT:-5100}
UAS_PORT=${UAS_PORT:-5060}
KEEP=${KEEP:-0}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/clearhub-bench.XXXXXX")
DATA=$WORK/hub-data
TICKS=$(getconf CLK_TCK)
declare -A ROW # ROW[system:rate] = formatted result
declare -A STOPPED_AT

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

hubctl() { "$HUBCTL" --data "$DATA" "$@"; }

start_hub() {
	[[ -x "$HUBD" && -x "$HUBCTL" ]] || make -C "$ROOT" build >"$WORK/build.log" 2>&1 ||
		die "make build failed: $(tail -n 5 "$WORK/build.log")"
	mkdir -p "$DATA"
	"$HUBD" --data "$DATA" --node-id bench1 --log-level warn \
		--sip-udp "$HUB" --sip-tcp "$HUB" --sip-tls "$HUB_TLS" \
		--admin "$HUB_ADMIN" --raft "$HUB_RAFT" --http "$HUB_HTTP" >"$WORK/hubd.log" 2>&1 &
	PROXY_PID=$!
	own "$PROXY_PID"
	wait_until 120 0.25 curl -fs -o /dev/null "http://$HUB_HTTP/readyz" ||
		die "hubd not ready: $(tail -n 10 "$WORK/hubd.log")"
	wait_until 40 0.25 test -s "$DATA/admin.addr" || die "hubd wrote no admin.addr"
	{
		hubctl network add net-a --domain a.example --edge "sip:$A_IP:5060" --cidr "$A_IP/32" --services im &&
			hubctl network add net-b --domain b.example --edge "sip:$B_IP:$UAS_PORT" --cidr "$B_IP/32" --services im &&
			hubctl policy allow net-b --from net-a --services im &&
			hubctl policy allow net-a --from net-b --services im
	} >"$WORK/onboard.log" 2>&1 || die "onboarding failed: $(tail -n 5 "$WORK/onboard.log")"
	TARGET=$HUB
	log "hubd up (pid $PROXY_PID)"
}

start_kproxy() {
	render_cfg "$KCFG/proxy.cfg" "$WORK/proxy.cfg" "IP=$KPROXY_IP" "PORT=$KPROXY_PORT" \
		"CHILDREN=$KPROXY_CHILDREN" "MPATH=$(kamailio_mpath)" "EDGE=sip:$B_IP:$UAS_PORT"
	# Shared memory for ~tens of thousands of transactions in their wait
	# state (tm keeps each for 5 s after the final response).
	KAM_SHM=1024 start_kamailio proxy "$WORK/proxy.cfg" "$KPROXY_IP" "$KPROXY_PORT" "$WORK/kamailio-proxy.log"
	PROXY_PID=$KPID_proxy
	TARGET=$KPROXY_IP:$KPROXY_PORT
}

start_uas() {
	"$SIPP" -sf "$SCEN/bench_uas.xml" -i "$B_IP" -bind_local -p "$UAS_PORT" -mi "$B_IP" -ci "$B_IP" \
		-nostdin -buff_size 8388608 -timeout 900s >"$WORK/uas.out" 2>&1 &
	UAS_PID=$!
	own "$UAS_PID"
	wait_until 50 0.1 udp_bound "$B_IP" "$UAS_PORT" || die "UAS did not bind $B_IP:$UAS_PORT"
}

# csv_field FILE NAME: the value of column NAME in the last line of a
# SIPp statistics file.
csv_field() {
	awk -F';' -v name="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
		{ last = $col } END { print (col ? last : "?") }' "$1"
}

# step SYSTEM RATE: one step; prints a row and returns 1 when the ramp ends.
step() {
	local sys=$1 rate=$2 dir calls t0 t1 c0 c1 rc
	dir=$WORK/$sys-$rate
	mkdir -p "$dir"
	calls=$((rate * STEP_SECS))
	c0=$(proc_cpu_ticks "$PROXY_PID")
	t0=$EPOCHREALTIME
	(cd "$dir" && exec "$SIPP" "$TARGET" -sf "$SCEN/bench_uac.xml" -i "$A_IP" -bind_local -p "$UAC_PORT" -mi "$A_IP" -ci "$A_IP" \
		-r "$rate" -rp 1000 -m "$calls" -timer_resol 1 -timeout "$((STEP_SECS + 15))s" -nostdin -buff_size 8388608 \
		-trace_stat -stf "$dir/stat.csv" -fd 1 -trace_rtt -rtt_freq 100 -trace_err -error_file "$dir/err.log" \
		>"$dir/sipp.out" 2>&1) &
	local pid=$!
	own "$pid"
	wait_pid_timeout "$pid" $((STEP_SECS + 20))
	rc=$?
	t1=$EPOCHREALTIME
	c1=$(proc_cpu_ticks "$PROXY_PID")

	local ok failed retrans rtt p50 p99 achieved cpu wall
	ok=$(csv_field "$dir/stat.csv" 'SuccessfulCall(C)')
	failed=$(csv_field "$dir/stat.csv" 'FailedCall(C)')
	retrans=$(csv_field "$dir/stat.csv" 'Retransmissions(C)')
	rtt=$(ls "$dir"/*_rtt.csv 2>/dev/null | head -1)
	# response_time_ms is the second column, one line per call (1 ms
	# resolution: SIPp's clock).
	read -r p50 p99 < <(awk -F';' 'NR > 1 && $2 != "" { print $2 }' "${rtt:-/dev/null}" | sort -g |
		awk '{ t[NR] = $1 }
		END { if (NR == 0) { print "? ?"; exit }
			i = int(NR * 0.5); if (i < 1) i = 1
			j = int(NR * 0.99); if (j < 1) j = 1
			print t[i], t[j] }')
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
	# Achieved rate: SIPp's cumulative call rate when the last call was
	# created, scaled by the share of calls that succeeded.
	achieved=$(awk -F';' -v total="$calls" -v ok="${ok:-0}" '
		NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "CallRate(C)") r = i; if ($i == "OutgoingCall(C)") o = i }; next }
		rate == "" && $o + 0 >= total { rate = $r }
		{ lastrate = $r; out = $o }
		END { if (rate == "") rate = lastrate; if (out + 0 == 0) { print 0; exit }; printf "%d", rate * ok / out }' "$dir/stat.csv")
	cpu=$(awk -v d="$((c1 - c0))" -v hz="$TICKS" -v w="$wall" 'BEGIN { printf "%.0f%%", 100 * d / hz / w }')
	ROW[$sys:$rate]=$(printf '%7s %6s %6s %6s %7s %7s %6s' "$achieved" "${failed:-?}" "${retrans:-?}" \
		"${p50}" "${p99}" "$cpu" "rc=$rc")
	printf '%-9s target %6d/s  achieved %7s/s  failed %6s  retrans %6s  p50 %7s ms  p99 %7s ms  cpu %6s  (sipp rc=%s)\n' \
		"$sys" "$rate" "$achieved" "${failed:-?}" "${retrans:-?}" "$p50" "$p99" "$cpu" "$rc"
	if [[ "${failed:-1}" != 0 || "${retrans:-1}" != 0 ]]; then
		# What went wrong, in a line or two: unexpected answers and timeouts.
		{
			grep -o "received 'SIP/2.0 [0-9]* [^'$(printf '\r')]*" "$dir/err.log" 2>/dev/null | sort | uniq -c | sort -rn | head -n 3
			grep -c 'timed out\|Max Retrans\|max retrans' "$dir/err.log" 2>/dev/null | sed 's/^/  timeouts: /'
		} | sed "s/^/  $sys $rate\/s errors: /"
		STOPPED_AT[$sys]="$rate/s: first failure or retransmission"
		return 1
	fi
	if ((achieved * 100 < rate * MIN_ACHIEVED_PCT)); then
		STOPPED_AT[$sys]="$rate/s: achieved below ${MIN_ACHIEVED_PCT}% of target"
		return 1
	fi
	return 0
}

ramp() {
	local sys=$1 rate
	for rate in $RATES; do
		step "$sys" "$rate" || break
		sleep 1
	done
	[[ -n "${STOPPED_AT[$sys]:-}" ]] || STOPPED_AT[$sys]="completed all steps"
}

need_packages
log "work dir $WORK; rates: $RATES; $STEP_SECS s per step"
start_uas
for sys in $SYSTEMS; do
	case $sys in
	hub) start_hub ;;
	kamailio) start_kproxy ;;
	*) die "unknown system $sys" ;;
	esac
	ramp "$sys"
	if [[ $sys == hub ]]; then
		stop_pid "$PROXY_PID"
		disown_pid "$PROXY_PID"
	else
		stop_kamailio proxy
	fi
	sleep 1
done

echo
echo "MESSAGE ramp, $STEP_SECS s per step (achieved/s, failed, retrans, p50 ms, p99 ms (SIPp: 1 ms resolution), proxy cpu; 100% = one core)"
header="target/s"
for sys in $SYSTEMS; do header+=$(printf ' | %-54s' "$sys"); done
echo "$header"
for rate in $RATES; do
	line=$(printf '%8d' "$rate")
	any=0
	for sys in $SYSTEMS; do
		if [[ -n "${ROW[$sys:$rate]:-}" ]]; then
			line+=$(printf ' | %-54s' "${ROW[$sys:$rate]}")
			any=1
		else
			line+=$(printf ' | %-54s' "-")
		fi
	done
	((any)) && echo "$line"
done
for sys in $SYSTEMS; do echo "$sys: ramp ended at ${STOPPED_AT[$sys]}"; done
