#!/usr/bin/env bash
# Interop suite: the hub against real third-party SIP software, on loopback.
#
#   alice (SIPp, 127.0.0.2:5072)            bob (SIPp, 127.0.0.3:5073)
#        |                                        |
#   Kamailio A  a.example  127.0.0.2   ---  hubd  127.0.0.1  ---   Kamailio B  b.example  127.0.0.3
#   (registrar, presence server, edge)                            (registrar, presence server, edge)
#
# Each Kamailio sends every request for a foreign domain to FOREIGN_HOP:
# the hub (MODE=hub, the default) or, with MODE=direct, the other Kamailio
# (that validates configs and scenarios without a hub). The networks are
# onboarded with bin/hubctl exactly as an operator would.
#
# Cases print PASS/FAIL/SKIP with their name; the script exits non-zero on
# any FAIL. Logs stay in the work directory on failure (KEEP=1 keeps them
# always) and failing cases print the tail of theirs.
#
# Usage: tests/interop/run.sh            (make interop builds bin/ first)
#        MODE=direct tests/interop/run.sh
#        CASES="message-a-to-b presence" tests/interop/run.sh
set -uo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE=${MODE:-hub}
HUB_IP=${HUB_IP:-127.0.0.1}
HUB_SIP_PORT=${HUB_SIP_PORT:-5060}
HUB_TLS_PORT=${HUB_TLS_PORT:-5061}
HUB=${HUB:-$HUB_IP:$HUB_SIP_PORT}
HUB_TLS=${HUB_TLS:-$HUB_IP:$HUB_TLS_PORT}
HUB_ADMIN=${HUB_ADMIN:-127.0.0.1:19443}
HUB_RAFT=${HUB_RAFT:-127.0.0.1:19444}
HUB_HTTP=${HUB_HTTP:-127.0.0.1:19090}

A_IP=${A_IP:-127.0.0.2}
B_IP=${B_IP:-127.0.0.3}
A_DOMAIN=a.example
B_DOMAIN=b.example
MEMBER_SIP_PORT=${MEMBER_SIP_PORT:-5060}
MEMBER_TLS_PORT=${MEMBER_TLS_PORT:-5061}
ALICE_PORT=${ALICE_PORT:-5072}
BOB_PORT=${BOB_PORT:-5073}
SPOOF_PORT=${SPOOF_PORT:-5090}
SIPP_TIMEOUT=${SIPP_TIMEOUT:-20}
KAM_DEBUG=${KAM_DEBUG:-2}
CASES=${CASES:-}
KEEP=${KEEP:-0}

case "$MODE" in hub | direct) ;; *) die "MODE must be hub or direct, got $MODE" ;; esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/clearhub-interop.XXXXXX")
DATA=$WORK/hub-data
PASSED=0 FAILED=0 SKIPPED=0
SUMMARY=()
CALL_IDS=() # Call-IDs the hub must show in its audit export
SPOOF_CALL_ID=""

finish() {
	local rc=$?
	stop_all
	if ((FAILED > 0 || rc != 0)) || [[ "$KEEP" == 1 ]]; then
		log "logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap finish EXIT
trap 'exit 130' INT TERM

# --- cases ------------------------------------------------------------------

want_case() { [[ -z "$CASES" || " $CASES " == *" $1 "* ]]; }

# Cases run a second time when the first attempt fails, for a timing race
# in the peer, not in the hub: Kamailio 5.6's presence on db_sqlite answers
# 500 "database is locked" to concurrent SUBSCRIBEs, the hub retries that
# back end and its extra (correct) partial NOTIFY can land while SIPp's
# fixed scenario is sending the un-SUBSCRIBE, which SIPp counts as
# unexpected. The summary names every case that passed only on a retry.
RETRY_ONCE=${RETRY_ONCE-"list-subscription list-sharing"}

# run_case NAME FUNC [ARGS]: runs one case in its own log directory.
run_case() {
	local name=$1 t0 rc
	shift
	want_case "$name" || return 0
	CASE_DIR=$WORK/cases/$name
	mkdir -p "$CASE_DIR"
	t0=$EPOCHREALTIME
	"$@" >"$CASE_DIR/case.log" 2>&1
	rc=$?
	local retried=""
	if ((rc != 0 && rc != 77)) && [[ " $RETRY_ONCE " == *" $name "* ]]; then
		# A known timing race in the third-party peer (see RETRY_ONCE):
		# the first attempt's logs are kept and the summary says so.
		mv "$CASE_DIR" "$CASE_DIR.first-try"
		mkdir -p "$CASE_DIR"
		"$@" >"$CASE_DIR/case.log" 2>&1
		rc=$?
		retried=", on the second try (first failed; logs in cases/$name.first-try)"
	fi
	local dt
	dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	case $rc in
	0)
		PASSED=$((PASSED + 1))
		SUMMARY+=("PASS $name (${dt}s$retried)")
		echo "PASS $name (${dt}s$retried)"
		;;
	77)
		SKIPPED=$((SKIPPED + 1))
		SUMMARY+=("SKIP $name: $(tail -n 1 "$CASE_DIR/case.log")")
		echo "SKIP $name: $(tail -n 1 "$CASE_DIR/case.log")"
		;;
	*)
		FAILED=$((FAILED + 1))
		SUMMARY+=("FAIL $name")
		echo "FAIL $name (${dt}s, rc=$rc)"
		show_case_logs "$name"
		;;
	esac
}

show_case_logs() {
	local f
	echo "---- $1: case log"
	tail -n 20 "$CASE_DIR/case.log" | sed 's/^/    /'
	for f in "$CASE_DIR"/*.err "$CASE_DIR"/*.log "$CASE_DIR"/*.msg; do
		[[ -s "$f" && "$f" != "$CASE_DIR/case.log" ]] || continue
		echo "---- $1: $(basename "$f") (tail)"
		tail -n 25 "$f" | sed 's/^/    /'
	done
	for f in "$WORK"/kamailio-*.log "$WORK"/hubd.log; do
		[[ -s "$f" ]] || continue
		echo "---- $(basename "$f") (tail)"
		tail -n 25 "$f" | sed 's/^/    /'
	done
	echo "----"
}

# sipp_start VAR NAME IP PORT SCENARIO REMOTE [sipp args]: starts one SIPp
# user in the background (one call, bounded by SIPP_TIMEOUT) bound to
# IP:PORT and stores its PID in VAR. REMOTE "" makes it a server.
sipp_start() {
	local var=$1 name=$2 ip=$3 port=$4 scen=$5 remote=$6
	shift 6
	local args=(-sf "$SCEN/$scen" -i "$ip" -bind_local -p "$port" -mi "$ip" -ci "$ip"
		-m 1 -timeout "${SIPP_TIMEOUT}s" -nostdin
		-trace_err -error_file "$CASE_DIR/$name.err"
		-trace_msg -message_file "$CASE_DIR/$name.msg"
		-trace_logs -log_file "$CASE_DIR/$name.log" "$@")
	[[ -n "$remote" ]] && args=("$remote" "${args[@]}")
	echo "sipp ${args[*]}"
	"$SIPP" "${args[@]}" >"$CASE_DIR/$name.out" 2>&1 &
	local started=$!
	own "$started"
	printf -v "$var" '%s' "$started"
}

# sipp_run NAME IP PORT SCENARIO REMOTE [sipp args]: runs one SIPp user to
# completion and returns its exit status (0: the call succeeded).
sipp_run() {
	local uac_pid
	sipp_start uac_pid "$@" -timeout_error
	wait_pid_timeout "$uac_pid" $((SIPP_TIMEOUT + 5))
	local rc=$?
	echo "sipp $1 exited $rc"
	return "$rc"
}

sipp_wait() {
	local name=$1 pid=$2 rc
	wait_pid_timeout "$pid" $((SIPP_TIMEOUT + 5))
	rc=$?
	echo "sipp $name exited $rc"
	return "$rc"
}

# call_id_of FILE: the first Call-ID SIPp sent (message log).
call_id_of() { grep -m1 -i '^Call-ID:' "$1" 2>/dev/null | sed 's/^[^:]*: *//' | tr -d '\r'; }

token() { echo "t$(date +%s%N | tail -c 10)$RANDOM"; }

ALICE=(alice "$A_IP" "$ALICE_PORT" "$A_DOMAIN")
BOB=(bob "$B_IP" "$BOB_PORT" "$B_DOMAIN")

case_register() {
	sipp_run reg-alice "$A_IP" "$ALICE_PORT" register.xml "$A_IP:$MEMBER_SIP_PORT" \
		-key user alice -key domain "$A_DOMAIN" || return 1
	sipp_run reg-bob "$B_IP" "$BOB_PORT" register.xml "$B_IP:$MEMBER_SIP_PORT" \
		-key user bob -key domain "$B_DOMAIN" || return 1
}

# case_message FROM... TO...: user FROM sends a pager MESSAGE through its
# own network to user TO, who must receive it with the exact token.
case_message() {
	local fu=$1 fip=$2 fport=$3 fdom=$4 tu=$5 tip=$6 tport=$7 tdom=$8 tok uas rc=0
	tok=$(token)
	sipp_start uas "uas-$tu" "$tip" "$tport" message_uas.xml "" -key user "$tu" -key domain "$tdom" -timeout_error
	wait_until 50 0.1 udp_bound "$tip" "$tport" || { echo "uas did not bind"; return 1; }
	sipp_run "uac-$fu" "$fip" "$fport" message_uac.xml "$fip:$MEMBER_SIP_PORT" \
		-key user "$fu" -key domain "$fdom" -key peer "$tu" -key peer_domain "$tdom" -key token "$tok" || rc=1
	sipp_wait "uas-$tu" "$uas" || rc=1
	CALL_IDS+=("$(call_id_of "$CASE_DIR/uac-$fu.msg")")
	if ! grep -q "interop-im $tok from $fu@$fdom" "$CASE_DIR/uas-$tu.msg"; then
		echo "token $tok not delivered to $tu"
		rc=1
	fi
	return "$rc"
}

# notify_via_hub CID MIN: Kamailio A saw at least MIN NOTIFYs of the
# dialog CID arrive from the hub's address.
notify_via_hub() {
	local cid=$1 min=$2 n
	n=$(grep -F "cid=$cid" "$WORK/kamailio-a.log" | grep -c "in NOTIFY .* from $HUB_IP:")
	echo "NOTIFYs for $cid received by Kamailio A from the hub: $n"
	((n >= min))
}

# case_presence: bob publishes, alice (other network) subscribes and
# sees the initial, the updated and the terminating NOTIFY.
case_presence() {
	local pub rc=0 cid
	sipp_start pub pub-bob "$B_IP" "$BOB_PORT" publish.xml "$B_IP:$MEMBER_SIP_PORT" \
		-key user bob -key domain "$B_DOMAIN" -timeout_error
	wait_until 50 0.1 grep -qs "^SIP/2.0 200" "$CASE_DIR/pub-bob.msg" ||
		{ echo "PUBLISH not accepted"; sipp_wait pub-bob "$pub"; return 1; }
	sipp_run sub-alice "$A_IP" "$ALICE_PORT" subscribe_uac.xml "$A_IP:$MEMBER_SIP_PORT" \
		-key user alice -key domain "$A_DOMAIN" -key peer bob -key peer_domain "$B_DOMAIN" || rc=1
	sipp_wait pub-bob "$pub" || rc=1
	cid=$(call_id_of "$CASE_DIR/sub-alice.msg")
	CALL_IDS+=("$cid")
	grep -c '^NOTIFY ' "$CASE_DIR/sub-alice.msg" | sed 's/^/NOTIFYs received by alice: /'
	if [[ "$MODE" == hub ]]; then
		notify_via_hub "$cid" 3 || rc=1
	fi
	return "$rc"
}

# case_session: alice INVITEs bob with an MSRP offer; 200/ACK/BYE.
case_session() {
	local uas rc=0
	sipp_start uas uas-bob "$B_IP" "$BOB_PORT" invite_uas.xml "" -key user bob -key domain "$B_DOMAIN" -timeout_error
	wait_until 50 0.1 udp_bound "$B_IP" "$BOB_PORT" || { echo "uas did not bind"; return 1; }
	sipp_run uac-alice "$A_IP" "$ALICE_PORT" invite_uac.xml "$A_IP:$MEMBER_SIP_PORT" \
		-key user alice -key domain "$A_DOMAIN" -key peer bob -key peer_domain "$B_DOMAIN" || rc=1
	sipp_wait uas-bob "$uas" || rc=1
	CALL_IDS+=("$(call_id_of "$CASE_DIR/uac-alice.msg")")
	return "$rc"
}

# case_spoof: a UAC on network A's address sends straight to the hub with
# a From in b.example; the hub answers 403 and bob receives nothing.
case_spoof() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	local uas rc=0 tok
	tok=$(token)
	sipp_start uas uas-bob "$B_IP" "$BOB_PORT" message_uas.xml "" -key user bob -key domain "$B_DOMAIN" -timeout 6s
	wait_until 50 0.1 udp_bound "$B_IP" "$BOB_PORT" || { echo "uas did not bind"; return 1; }
	sipp_run spoof "$A_IP" "$SPOOF_PORT" spoof_uac.xml "$HUB" \
		-key user mallory -key peer bob -key peer_domain "$B_DOMAIN" -key token "$tok" || rc=1
	SPOOF_CALL_ID=$(call_id_of "$CASE_DIR/spoof.msg")
	wait_pid_timeout "$uas" 10
	if grep -q "$tok" "$CASE_DIR/uas-bob.msg" 2>/dev/null; then
		echo "spoofed MESSAGE was delivered to bob"
		rc=1
	fi
	if grep -F "cid=$SPOOF_CALL_ID" "$WORK/kamailio-b.log" | grep -q 'in MESSAGE'; then
		echo "spoofed MESSAGE reached Kamailio B"
		rc=1
	fi
	return "$rc"
}

# --- TLS refusals -------------------------------------------------------------

# sip_over_tls OUT CERT KEY: opens a TLS connection to the TLS target with
# the given client certificate (none when CERT is empty), sends one
# OPTIONS and records what comes back. Succeeds when a SIP response came.
sip_over_tls() {
	local out=$1 cert=$2 key=$3 target=$4 ca=$5 req
	req=$CASE_DIR/options.txt
	printf 'OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/TLS %s:5999;branch=z9hG4bK-%s\r\nMax-Forwards: 70\r\nFrom: <sip:probe@%s>;tag=p1\r\nTo: <sip:%s>\r\nCall-ID: probe-%s@%s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n' \
		"$B_DOMAIN" "$A_IP" "$RANDOM" "$A_DOMAIN" "$B_DOMAIN" "$RANDOM" "$A_IP" >"$req"
	local args=(s_client -quiet -connect "$target" -CAfile "$ca")
	[[ -n "$cert" ]] && args+=(-cert "$cert" -key "$key")
	# -quiet keeps reading after stdin ends; the server's answer, alert or
	# close ends it, the timeout bounds it.
	(
		cat "$req"
		sleep 2
	) | timeout 4 openssl "${args[@]}" >"$out.stdout" 2>"$out.stderr"
	echo "openssl exit $?; stderr:"
	sed 's/^/    /' "$out.stderr" | tail -n 8
	grep -q '^SIP/2.0 [0-9]' "$out.stdout"
}

case_tls_control() {
	sip_over_tls "$CASE_DIR/member" "$TLS_A_CERT" "$TLS_A_KEY" "$TLS_TARGET" "$TLS_CA" || {
		echo "no SIP response with the member certificate: refusal checks would prove nothing"
		return 1
	}
	head -n 1 "$CASE_DIR/member.stdout"
}

case_tls_other_ca() {
	if sip_over_tls "$CASE_DIR/other" "$WORK/other-ca/client.crt" "$WORK/other-ca/client.key" "$TLS_TARGET" "$TLS_CA"; then
		echo "the hub completed the TLS handshake with a certificate from another CA and answered at the SIP layer (want: refused at the handshake):"
		head -n 3 "$CASE_DIR/other.stdout"
		return 1
	fi
	grep -iE 'alert|error|unknown ca|certificate' "$CASE_DIR/other.stderr" | head -n 2
	return 0
}

case_tls_no_cert() {
	if sip_over_tls "$CASE_DIR/none" "" "" "$TLS_TARGET" "$TLS_CA"; then
		echo "the hub completed the TLS handshake without a client certificate and answered at the SIP layer (want: refused at the handshake):"
		head -n 3 "$CASE_DIR/none.stdout"
		return 1
	fi
	grep -iE 'alert|error|certificate' "$CASE_DIR/none.stderr" | head -n 2
	return 0
}

# make_other_ca: a CA unrelated to the hub and a client certificate from it.
make_other_ca() {
	local d=$WORK/other-ca
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=Other Interop CA" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-subj "/OU=member/CN=a.example" -keyout "$d/client.key" -out "$d/client.csr" 2>/dev/null &&
		openssl x509 -req -in "$d/client.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
			-days 2 -out "$d/client.crt" 2>/dev/null
}

# make_direct_pki: for MODE=direct, a lab CA and member certificates made
# with openssl in place of the hub's (hubctl certs member needs a hub).
make_direct_pki() {
	local d=$WORK/direct-pki n ip
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=Direct Interop CA" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null || return 1
	for n in a b; do
		[[ $n == a ]] && ip=$A_IP || ip=$B_IP
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/OU=member/CN=$n.example" \
			-keyout "$d/$n.example.key" -out "$d/$n.csr" 2>/dev/null || return 1
		printf 'subjectAltName=DNS:%s.example,IP:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$n" "$ip" >"$d/$n.ext"
		openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
			-days 2 -extfile "$d/$n.ext" -out "$d/$n.example.crt" 2>/dev/null || return 1
	done
}

# --- topology ---------------------------------------------------------------

# member_cfg NAME IP DOMAIN FOREIGN_HOP CONTACT [TLS_CERT TLS_KEY TLS_CA]
member_cfg() {
	local name=$1 ip=$2 dom=$3 hop=$4 contact=$5 cert=${6:-none} key=${7:-none} ca=${8:-none}
	local db=$WORK/$name-$RANDOM.sqlite
	{
		cat /usr/share/kamailio/db_sqlite/standard-create.sql
		cat /usr/share/kamailio/db_sqlite/presence-create.sql
	} | sqlite3 "$db" || die "sqlite schema for $name"
	render_cfg "$KCFG/member.cfg" "$WORK/kamailio-$name.cfg" \
		"DEBUG=$KAM_DEBUG" "NAME=$name" "IP=$ip" "SIP_PORT=$MEMBER_SIP_PORT" "TLS_PORT=$MEMBER_TLS_PORT" \
		"DOMAIN=$dom" "MPATH=$(kamailio_mpath)" "DB=$db" "PRESENCE_CONTACT=$contact" \
		"FOREIGN_HOP=$hop" "TLS_CERT=$cert" "TLS_KEY=$key" "TLS_CA=$ca"
}

start_members() { # TLS(0|1) A_HOP B_HOP
	local tls=$1 ahop=$2 bhop=$3 extra=() acontact bcontact
	acontact="sip:$A_IP:$MEMBER_SIP_PORT"
	bcontact="sip:$B_IP:$MEMBER_SIP_PORT"
	if [[ $tls == 1 ]]; then
		# The presence server's Contact is where in-dialog SUBSCRIBEs come
		# back: over TLS it must name the TLS listener.
		acontact="sip:$A_IP:$MEMBER_TLS_PORT;transport=tls"
		bcontact="sip:$B_IP:$MEMBER_TLS_PORT;transport=tls"
		extra=(-A WITH_TLS)
		member_cfg a "$A_IP" "$A_DOMAIN" "$ahop" "$acontact" "$TLS_A_CERT" "$TLS_A_KEY" "$TLS_CA"
		member_cfg b "$B_IP" "$B_DOMAIN" "$bhop" "$bcontact" "$TLS_B_CERT" "$TLS_B_KEY" "$TLS_CA"
	else
		member_cfg a "$A_IP" "$A_DOMAIN" "$ahop" "$acontact"
		member_cfg b "$B_IP" "$B_DOMAIN" "$bhop" "$bcontact"
	fi
	# Logs of a restarted member go on in the same file.
	[[ -e "$WORK/kamailio-a.log" ]] && cat "$WORK/kamailio-a.log" >>"$WORK/kamailio-a.prev.log"
	[[ -e "$WORK/kamailio-b.log" ]] && cat "$WORK/kamailio-b.log" >>"$WORK/kamailio-b.prev.log"
	start_kamailio a "$WORK/kamailio-a.cfg" "$A_IP" "$MEMBER_SIP_PORT" "$WORK/kamailio-a.log" "${extra[@]}"
	start_kamailio b "$WORK/kamailio-b.cfg" "$B_IP" "$MEMBER_SIP_PORT" "$WORK/kamailio-b.log" "${extra[@]}"
}

hubctl() { "$HUBCTL" --data "$DATA" "$@"; }

start_hub() {
	[[ -x "$HUBD" && -x "$HUBCTL" ]] || {
		log "building hubd and hubctl"
		make -C "$ROOT" build >"$WORK/build.log" 2>&1 || {
			tail -n 20 "$WORK/build.log" >&2
			die "make build failed: the hub does not build"
		}
	}
	mkdir -p "$DATA"
	"$HUBD" --data "$DATA" --node-id interop1 \
		--sip-udp "$HUB" --sip-tcp "$HUB" --sip-tls "$HUB_TLS" \
		--admin "$HUB_ADMIN" --raft "$HUB_RAFT" --http "$HUB_HTTP" --lists-domain lists.hub.example >"$WORK/hubd.log" 2>&1 &
	HUB_PID=$!
	own "$HUB_PID"
	if ! wait_until 120 0.25 curl -fs -o /dev/null "http://$HUB_HTTP/readyz"; then
		tail -n 30 "$WORK/hubd.log" >&2
		die "hubd not ready at http://$HUB_HTTP/readyz"
	fi
	wait_until 40 0.25 test -s "$DATA/admin.addr" || die "hubd wrote no $DATA/admin.addr"
	log "hubd up (pid $HUB_PID, SIP $HUB udp/tcp, $HUB_TLS tls)"
}

onboard() {
	hubctl network add net-a --domain "$A_DOMAIN" --edge "sip:$A_IP:$MEMBER_SIP_PORT" \
		--cidr "$A_IP/32" --member-ca "$DATA/pki/ca.crt" --services presence,im,session &&
		hubctl network add net-b --domain "$B_DOMAIN" --edge "sip:$B_IP:$MEMBER_SIP_PORT" \
			--cidr "$B_IP/32" --member-ca "$DATA/pki/ca.crt" --services presence,im,session &&
		hubctl policy allow net-b --from net-a --services presence,im,session &&
		hubctl policy allow net-a --from net-b --services presence,im,session
}

# onboard_tls: the edges become sips: and source addresses no longer
# identify anyone, so only the client certificates can.
onboard_tls() {
	hubctl network update net-a --edge "sips:$A_IP:$MEMBER_TLS_PORT" &&
		hubctl network update net-b --edge "sips:$B_IP:$MEMBER_TLS_PORT" || return 1
	if hubctl network update net-a --cidr= && hubctl network update net-b --cidr=; then
		echo "CIDRs removed: TLS members identified by certificate only"
	else
		echo "could not clear the CIDRs; TLS members may also match by address"
	fi
}

case_audit() {
	if ! hubctl audit --help >/dev/null 2>&1; then
		echo "hubctl audit not available yet"
		return 77
	fi
	local f=$WORK/audit.jsonl rc=0 cid
	hubctl audit export "$f" || return 1
	echo "exported $(wc -l <"$f") entries"
	"$HUBCTL" audit verify "$f" || { echo "audit verify failed"; rc=1; }
	for cid in "${CALL_IDS[@]}"; do
		[[ -n "$cid" ]] || continue
		grep -qF "$cid" "$f" || { echo "Call-ID $cid missing from the audit export"; rc=1; }
	done
	if [[ -n "$SPOOF_CALL_ID" ]]; then
		grep -F "$SPOOF_CALL_ID" "$f" | grep -q 403 ||
			{ echo "the spoof refusal (403, $SPOOF_CALL_ID) is not in the audit export"; rc=1; }
	fi
	return "$rc"
}

# --- main -------------------------------------------------------------------

need_packages
log "work dir $WORK (MODE=$MODE)"
mkdir -p "$WORK/cases"

if [[ "$MODE" == hub ]]; then
	start_hub
	mkdir -p "$WORK/cases/onboard"
	onboard >"$WORK/cases/onboard/case.log" 2>&1 || {
		cat "$WORK/cases/onboard/case.log" >&2
		die "onboarding with hubctl failed"
	}
	A_HOP="sip:$HUB"
	B_HOP="sip:$HUB"
else
	A_HOP="sip:$B_IP:$MEMBER_SIP_PORT"
	B_HOP="sip:$A_IP:$MEMBER_SIP_PORT"
fi

# Plain (UDP) topology.
start_members 0 "$A_HOP" "$B_HOP"
run_case register case_register
run_case message-a-to-b case_message "${ALICE[@]}" "${BOB[@]}"
run_case message-b-to-a case_message "${BOB[@]}" "${ALICE[@]}"
run_case presence case_presence
run_case session case_session
run_case spoofed-from-refused case_spoof
source "$(dirname "${BASH_SOURCE[0]}")/queue.sh" && run_case store-and-forward case_store_forward
source "$(dirname "${BASH_SOURCE[0]}")/lists.sh" && { run_case list-subscription case_list_subscription; run_case list-sharing case_list_sharing; run_case list-linphone case_list_linphone; run_case list-rls case_list_rls; }
source "$(dirname "${BASH_SOURCE[0]}")/rooms.sh" && { run_case room-pager case_room_pager; run_case room-roster case_room_roster; run_case room-join-ban case_room_join_ban; run_case room-linphone case_room_linphone; }
source "$(dirname "${BASH_SOURCE[0]}")/msrp.sh" && run_case msrp-relay case_msrp_relay
run_case msrp-hubd case_msrp_hubd
run_case msrp-sipp case_msrp_sipp
source "$(dirname "${BASH_SOURCE[0]}")/echo.sh" && run_case echo-user case_echo_user

# The same topology over TLS.
if want_case tls || [[ -z "$CASES" ]]; then
	make_other_ca || die "openssl: could not make the other CA"
	if [[ "$MODE" == hub ]]; then
		hubctl certs member "$A_DOMAIN" --host "$A_IP" --host "$A_DOMAIN" >/dev/null &&
			hubctl certs member "$B_DOMAIN" --host "$B_IP" --host "$B_DOMAIN" >/dev/null ||
			die "hubctl certs member failed"
		TLS_CA=$DATA/pki/ca.crt
		TLS_A_CERT=$DATA/members/$A_DOMAIN.crt TLS_A_KEY=$DATA/members/$A_DOMAIN.key
		TLS_B_CERT=$DATA/members/$B_DOMAIN.crt TLS_B_KEY=$DATA/members/$B_DOMAIN.key
		onboard_tls >"$WORK/cases/onboard/tls.log" 2>&1 || {
			cat "$WORK/cases/onboard/tls.log" >&2
			die "hubctl network update (TLS edges) failed"
		}
		TLS_TARGET=$HUB_TLS
		A_HOP="sip:$HUB_TLS;transport=tls"
		B_HOP="sip:$HUB_TLS;transport=tls"
	else
		make_direct_pki || die "openssl: could not make the direct-mode PKI"
		TLS_CA=$WORK/direct-pki/ca.crt
		TLS_A_CERT=$WORK/direct-pki/$A_DOMAIN.crt TLS_A_KEY=$WORK/direct-pki/$A_DOMAIN.key
		TLS_B_CERT=$WORK/direct-pki/$B_DOMAIN.crt TLS_B_KEY=$WORK/direct-pki/$B_DOMAIN.key
		TLS_TARGET=$B_IP:$MEMBER_TLS_PORT
		A_HOP="sip:$B_IP:$MEMBER_TLS_PORT;transport=tls"
		B_HOP="sip:$A_IP:$MEMBER_TLS_PORT;transport=tls"
	fi
	stop_kamailio a
	stop_kamailio b
	start_members 1 "$A_HOP" "$B_HOP"
	run_case tls-register case_register
	run_case tls-message-a-to-b case_message "${ALICE[@]}" "${BOB[@]}"
	run_case tls-message-b-to-a case_message "${BOB[@]}" "${ALICE[@]}"
	run_case tls-presence case_presence
	run_case tls-session case_session
	run_case tls-member-cert-accepted case_tls_control
	run_case tls-other-ca-refused case_tls_other_ca
	run_case tls-no-cert-refused case_tls_no_cert
fi

if [[ "$MODE" == hub ]]; then
	run_case audit-export-verify case_audit
fi

echo
echo "interop summary (MODE=$MODE):"
printf '  %s\n' "${SUMMARY[@]}"
echo "interop: $PASSED passed, $FAILED failed, $SKIPPED skipped"
((FAILED == 0))
