# MSRP through a member's own RFC 4976 relay (issue 14), sourced by run.sh.
#
# case_msrp_relay (HOSTING.md M3): Kamailio 5.6's msrp module
# (kamailio/msrp-relay.cfg, Digest AUTH, msrp_cmap) is network B's relay in
# front of B's MSRP endpoint. msrpdrive runs the hub's MSRP relay code
# (hub/msrp, as hubd does) with net-b's relay settings and both Go MSRP
# endpoints (no Debian package has an MSRP client), and sets the sessions
# up through Offer/Answer as the proxy does. Passes when: the hub's leg
# AUTHs (Kamailio logs the 401 challenge and the accepted AUTH), the offer
# toward B carries Kamailio's Use-Path before the hub's URI, a 100 KB
# message reaches B through Kamailio in chunks of at most 8 KiB (Kamailio
# 5.6 refuses bodies over 10240 bytes), B's reply reaches A, a 1 MB RFC
# 5547 file arrives intact, a single 16 KiB chunk (net-b's max_chunk
# raised for one session) does not pass Kamailio, and the audit entries show both messages and
# the file with sha1=verified.
#
# The SIP signalling of MSRP sessions through Kamailio members and hubd is
# case_session in run.sh and TestMSRPThroughHub in tests/msrp_test.go.

MSRP_RELAY_IP=${MSRP_RELAY_IP:-127.0.0.5}
MSRP_RELAY_PORT=${MSRP_RELAY_PORT:-2855}

case_msrp_relay() {
	local rc=0 drive=$WORK/msrpdrive audit=$CASE_DIR/msrp-audit.jsonl
	(cd "$ROOT" && "${GO:-go}" build -o "$drive" ./tests/interop/msrpdrive) || { echo "msrpdrive does not build"; return 1; }
	render_cfg "$INTEROP_DIR/kamailio/msrp-relay.cfg" "$WORK/kamailio-msrp.cfg" IP="$MSRP_RELAY_IP" PORT="$MSRP_RELAY_PORT" \
		REALM="$B_DOMAIN" USER=hub PASSWORD=interop-msrp-pw DEBUG="$KAM_DEBUG"
	start_kamailio msrp "$WORK/kamailio-msrp.cfg" "$MSRP_RELAY_IP" "$MSRP_RELAY_PORT" "$WORK/kamailio-msrp.log"
	timeout 90 "$drive" -relay "msrp://$MSRP_RELAY_IP:$MSRP_RELAY_PORT;tcp" -user hub -password interop-msrp-pw \
		-hub-ip "$HUB_IP" -a-ip "$A_IP" -b-ip "$B_IP" -audit "$audit" >"$CASE_DIR/msrpdrive.out" 2>"$CASE_DIR/msrpdrive.log" || rc=1
	cat "$CASE_DIR/msrpdrive.out"
	stop_kamailio msrp
	grep -q "msrp-auth challenge" "$WORK/kamailio-msrp.log" || { echo "Kamailio did not challenge the hub's AUTH"; rc=1; }
	grep -q "msrp-auth ok user=hub" "$WORK/kamailio-msrp.log" || { echo "Kamailio did not accept the hub's AUTH"; rc=1; }
	grep -q "a=path:msrp://$MSRP_RELAY_IP:$MSRP_RELAY_PORT/[^ ]* msrp://" "$CASE_DIR/msrpdrive.out" ||
		{ echo "the offer toward B lacks Kamailio's Use-Path"; rc=1; }
	grep -q "largest 8192 bytes" "$CASE_DIR/msrpdrive.out" || { echo "chunks toward Kamailio not 8 KiB"; rc=1; }
	grep -q "16 KiB single chunk toward Kamailio: not relayed" "$CASE_DIR/msrpdrive.out" ||
		{ echo "the 16 KiB negative check did not run"; rc=1; }
	grep -q '"method":"MSRP",.*"status":200,"reason":"message-id=chat-100k bytes=100000' "$audit" ||
		{ echo "no audit entry for the 100 KB message"; rc=1; }
	grep -q '"method":"MSRP",.*"src_net":"net-b".*"status":200,"reason":"message-id=reply-1' "$audit" ||
		{ echo "no audit entry for B's reply"; rc=1; }
	grep -q '"method":"MSRP-FILE",.*"status":200,.*sha1=verified' "$audit" ||
		{ echo "no audit entry with sha1=verified for the file"; rc=1; }
	return "$rc"
}

# case_msrp_hubd: the same relay, now behind a real hubd and real SIP. The
# suite's hubd is restarted on its data directory with MSRP anchoring on
# (msrp.tcp, msrp.host) and net-b gets Kamailio's relay with hubctl
# (--msrp-relay, --msrp-relay-user, --msrp-relay-password-file);
# msrphubd (tests/interop/msrphubd) registers alice at Kamailio A and bob
# at Kamailio B and INVITEs bob through Kamailio A -> hubd -> Kamailio B,
# with Go MSRP endpoints at the addresses in the SDP. Passes when: hubd
# AUTHs to Kamailio (challenge and accepted AUTH in its log), bob's offer
# names Kamailio's Use-Path before hubd's URI, a 100 KB message and a
# 1 MB file reach bob through Kamailio in chunks of at most 8 KiB, bob's
# reply reaches alice, BYE ends both calls, and `hubctl audit export
# --kind msrp` shows both messages and the file with sha1=verified.
# Afterwards the hub is restarted as the suite started it, and net-b's
# relay, services and policy are put back.

MSRP_HUB_LISTEN=${MSRP_HUB_LISTEN:-$HUB_IP:2856}
MSRP_ALICE_SIP=${MSRP_ALICE_SIP:-$A_IP:5082}
MSRP_BOB_SIP=${MSRP_BOB_SIP:-$B_IP:5083}

# hub_restart [hubd flags]: stops the suite's hubd and runs start_hub again
# on the same data directory, through a wrapper that adds the flags, so
# the suite's own command line and readiness checks are reused.
hub_restart() {
	local wrapper=$WORK/hubd-wrapper
	stop_pid "$HUB_PID"
	disown_pid "$HUB_PID"
	cat "$WORK/hubd.log" >>"$WORK/hubd.prev.log"
	printf '#!/bin/sh\nexec %q "$@"' "$HUBD" >"$wrapper"
	(($# > 0)) && printf ' %q' "$@" >>"$wrapper"
	printf '\n' >>"$wrapper"
	chmod +x "$wrapper"
	HUBD=$wrapper start_hub
}

# audit_has FILE PATTERN: the export holds a line matching PATTERN.
audit_has() { grep -q "$2" "$1"; }

case_msrp_hubd() {
	local rc=0 drive=$WORK/msrphubd cfg=$WORK/hubd-msrp.yaml pw=$WORK/msrp-relay.pw audit=$CASE_DIR/msrp-audit.jsonl
	local klog=$WORK/kamailio-msrphubd.log relay="msrp://$MSRP_RELAY_IP:$MSRP_RELAY_PORT;tcp"
	(cd "$ROOT" && "${GO:-go}" build -o "$drive" ./tests/interop/msrphubd) || { echo "msrphubd does not build"; return 1; }
	printf 'msrp:\n  tcp: %s\n  host: %s\n' "$MSRP_HUB_LISTEN" "$HUB_IP" >"$cfg"
	printf 'interop-msrp-pw\n' >"$pw"
	render_cfg "$INTEROP_DIR/kamailio/msrp-relay.cfg" "$WORK/kamailio-msrphubd.cfg" IP="$MSRP_RELAY_IP" PORT="$MSRP_RELAY_PORT" \
		REALM="$B_DOMAIN" USER=hub PASSWORD=interop-msrp-pw DEBUG="$KAM_DEBUG"
	start_kamailio msrphubd "$WORK/kamailio-msrphubd.cfg" "$MSRP_RELAY_IP" "$MSRP_RELAY_PORT" "$klog"
	hub_restart --config "$cfg"
	tcp_bound "${MSRP_HUB_LISTEN%:*}" "${MSRP_HUB_LISTEN##*:}" || { echo "hubd does not listen for MSRP on $MSRP_HUB_LISTEN"; rc=1; }
	{ hubctl network update net-a --services presence,im,session,file &&
		hubctl network update net-b --services presence,im,session,file &&
		hubctl policy allow net-b --from net-a --services presence,im,session,file &&
		hubctl network update net-b --msrp-relay "$relay" --msrp-relay-user hub --msrp-relay-password-file "$pw"; } >/dev/null ||
		{ echo "hubctl could not set net-b's relay"; rc=1; }
	if ((rc == 0)); then
		timeout 60 "$drive" -alice "$MSRP_ALICE_SIP" -bob "$MSRP_BOB_SIP" -kam-a "$A_IP:$MEMBER_SIP_PORT" \
			-kam-b "$B_IP:$MEMBER_SIP_PORT" -relay "msrp://$MSRP_RELAY_IP:$MSRP_RELAY_PORT/" -hub-msrp "$MSRP_HUB_LISTEN" \
			>"$CASE_DIR/msrphubd.out" 2>"$CASE_DIR/msrphubd.log" || rc=1
		cat "$CASE_DIR/msrphubd.out"
	fi
	# The file's entry is written when its last chunk is in; give the
	# ledger writer a moment.
	wait_until 20 0.25 sh -c "'$HUBCTL' --data '$DATA' audit export '$audit' --kind msrp 2>/dev/null && grep -q sha1=verified '$audit'"
	echo "audit export --kind msrp: $(wc -l <"$audit" 2>/dev/null || echo 0) entries"
	grep -q "msrp-auth challenge" "$klog" || { echo "Kamailio did not challenge hubd's AUTH"; rc=1; }
	grep -q "msrp-auth ok user=hub" "$klog" || { echo "Kamailio did not accept hubd's AUTH"; rc=1; }
	grep -q "largest 8192 bytes" "$CASE_DIR/msrphubd.out" || { echo "chunks toward Kamailio not cut to 8 KiB"; rc=1; }
	audit_has "$audit" 'message-id=hubd-chat-100k bytes=100000' || { echo "no audit entry for the 100 KB message"; rc=1; }
	audit_has "$audit" 'message-id=hubd-reply-1' || { echo "no audit entry for bob's reply"; rc=1; }
	audit_has "$audit" 'hubd-interop.bin.*sha1=verified\|sha1=verified.*hubd-interop.bin' ||
		{ echo "no audit entry with sha1=verified for the file"; rc=1; }
	# Put back what the other cases expect.
	{ hubctl network update net-b --msrp-relay= &&
		hubctl network update net-a --services presence,im,session &&
		hubctl network update net-b --services presence,im,session &&
		hubctl policy allow net-b --from net-a --services presence,im,session; } >/dev/null || { echo "could not restore net-b"; rc=1; }
	stop_kamailio msrphubd
	cp "$WORK/hubd.log" "$CASE_DIR/hubd-msrp.log"
	hub_restart
	return "$rc"
}

# case_msrp_sipp (issue 14, "SIPp announces, Go MSRP endpoints at its
# addresses"): the SIP side is all SIPp, the MSRP side Go. The suite's hubd
# is restarted with msrp.tcp as for msrp-hubd (no member relay: net-b's is
# cleared), bob is registered at Kamailio B by SIPp, and two calls go
# alice (SIPp UAC) -> Kamailio A -> hubd -> Kamailio B -> bob (SIPp UAS):
# a chat session carrying a 100 KB message and an RFC 5547 push carrying a
# 1 MB file whose a=file-selector has its SHA-1. Per call:
#
#   1. msrpsipp recv listens at the fixed MSRP URI bob's scenario answers
#      with (a=setup:passive), so the hub, active toward bob, connects to it
#      and binds with a bodiless SEND;
#   2. SIPp alice offers its own fixed URI with a=setup:active; the hub
#      answers a=setup:passive with its own a=path. SIPp does not pass that
#      SDP on, so the UAC scenario <ereg>s it out of the 200 OK and <log>s a
#      "hub-answer ... path=URI setup=..." line (SIPp flushes its log file
#      at once); this script waits for that line, takes the path, and starts
#      msrpsipp send with it (the From-Path it sends is alice's announced
#      URI, which the hub checks);
#   3. SIPp can wait for no outside event within a call (<exec> returns at
#      once; it takes no per-call commands), so alice holds the call for
#      MSRP_SIPP_HOLD_MS (<pause/>, -d) and then sends BYE. Both Go
#      endpoints stay on their legs until the hub closes them on that BYE:
#      a BYE before the message was through fails the case with that reason,
#      a leg the BYE did not close fails it too.
#
# Passes when: each SIPp side sees the hub's rewrite (bob's offer has the
# hub's path and a=setup:actpass, alice's answer the hub's path and
# a=setup:passive, the file lines kept byte for byte), both SIPp calls
# complete, the bytes received at bob's endpoint equal those sent (in chunks
# of at most 8 KiB, the hub's max_chunk toward members), both legs close on
# BYE, and `hubctl audit export --kind msrp` has, under each SIPp Call-ID,
# the message (status 200, its Message-ID and size) and the file's
# MSRP-FILE entry with sha1=verified.

MSRP_SIPP_HOLD_MS=${MSRP_SIPP_HOLD_MS:-3000}
MSRP_SIPP_CHAT_PORT=${MSRP_SIPP_CHAT_PORT:-2861} # bob's Go endpoint, chat call
MSRP_SIPP_FILE_PORT=${MSRP_SIPP_FILE_PORT:-2862} # bob's Go endpoint, file call

# msrp_sipp_call KIND PORT IN CTYPE MSGID [UAC keys]: one call of the
# case (KIND chat or file: scenarios msrp_KIND_uac.xml/msrp_KIND_uas.xml)
# carrying the file IN as the MSRP message MSGID; bob's endpoint listens on
# B_IP:PORT. Sets MSRP_SIPP_CID to the call's Call-ID.
msrp_sipp_call() {
	local kind=$1 port=$2 in=$3 ctype=$4 msgid=$5
	shift 5
	local tool=$WORK/msrpsipp a_sess b_sess a_path b_path got=$CASE_DIR/$kind.received
	local recv uas uac send="" line hubpath hubsetup rc=0
	# Session ids unique per run, fixed for the call: the scenarios write
	# them into the SDP, the Go endpoints use the same URIs.
	a_sess="sipp-$kind-a-$(token)" b_sess="sipp-$kind-b-$(token)"
	a_path="msrp://$A_IP:9/$a_sess;tcp" b_path="msrp://$B_IP:$port/$b_sess;tcp"
	MSRP_SIPP_CID=""

	"$tool" recv -path "$b_path" -out "$got" -timeout 30s >"$CASE_DIR/$kind-recv.out" 2>"$CASE_DIR/$kind-recv.log" &
	recv=$!
	own "$recv"
	wait_until 50 0.1 tcp_bound "$B_IP" "$port" || { echo "$kind: bob's MSRP endpoint does not listen on $B_IP:$port"; return 1; }
	sipp_start uas "uas-$kind" "$B_IP" "$BOB_PORT" "msrp_${kind}_uas.xml" "" -key user bob -key domain "$B_DOMAIN" \
		-key msrp_port "$port" -key msrp_session "$b_sess" -timeout_error
	wait_until 50 0.1 udp_bound "$B_IP" "$BOB_PORT" || { echo "$kind: SIPp bob did not bind $B_IP:$BOB_PORT"; return 1; }
	sipp_start uac "uac-$kind" "$A_IP" "$ALICE_PORT" "msrp_${kind}_uac.xml" "$A_IP:$MEMBER_SIP_PORT" \
		-key user alice -key domain "$A_DOMAIN" -key peer bob -key peer_domain "$B_DOMAIN" \
		-key msrp_session "$a_sess" -d "$MSRP_SIPP_HOLD_MS" -timeout_error "$@"

	# Until the line is there or alice's SIPp gave up (see its .err).
	wait_until 100 0.1 sh -c "grep -qs '^hub-answer ' '$CASE_DIR/uac-$kind.log' || ! kill -0 $uac 2>/dev/null"
	if grep -qs '^hub-answer ' "$CASE_DIR/uac-$kind.log"; then
		line=$(grep -m1 '^hub-answer ' "$CASE_DIR/uac-$kind.log")
		echo "$kind: SIPp alice got $line"
		hubpath=$(sed -n 's/.* path=\([^ ]*\) .*/\1/p' <<<"$line")
		hubsetup=$(sed -n 's/.* setup=\([a-z]*\) .*/\1/p' <<<"$line")
		[[ "$hubpath" == "msrp://$MSRP_HUB_LISTEN/"* ]] ||
			{ echo "$kind: the answer at alice does not name the hub's MSRP listener $MSRP_HUB_LISTEN: path=$hubpath"; rc=1; }
		[[ "$hubsetup" == passive ]] || { echo "$kind: the hub answered a=setup:$hubsetup to alice's active (want passive)"; rc=1; }
		"$tool" send -path "$a_path" -to "$hubpath" -in "$in" -message-id "$msgid" -content-type "$ctype" -timeout 30s \
			>"$CASE_DIR/$kind-send.out" 2>"$CASE_DIR/$kind-send.log" &
		send=$!
		own "$send"
	else
		echo "$kind: no 200 OK with the hub's MSRP answer reached SIPp alice within 10 s"
		rc=1
	fi
	if ! sipp_wait "uac-$kind" "$uac"; then
		echo "$kind: SIPp alice's call failed: $(tr -d '\r' <"$CASE_DIR/uac-$kind.err" 2>/dev/null | grep -v '^The following' | tail -n 2)"
		rc=1
		# Nothing more can happen in this call: do not wait out bob's timeouts.
		stop_pid "$uas"
		stop_pid "$recv"
	fi
	sipp_wait "uas-$kind" "$uas" || { echo "$kind: SIPp bob's call failed (see uas-$kind.err/.msg)"; rc=1; }
	MSRP_SIPP_CID=$(call_id_of "$CASE_DIR/uac-$kind.msg")
	if [[ -n "$send" ]]; then
		wait_pid_timeout "$send" 10 || { echo "$kind: alice's MSRP endpoint failed"; rc=1; }
		sed "s/^/$kind send: /" "$CASE_DIR/$kind-send.out"
	fi
	wait_pid_timeout "$recv" 10 || { echo "$kind: bob's MSRP endpoint failed"; rc=1; }
	sed "s/^/$kind recv: /" "$CASE_DIR/$kind-recv.out"
	# The INVITE reached bob through the hub (its Record-Route), not around it.
	grep -q "^Record-Route: <sip:$HUB[;>]" "$CASE_DIR/uas-$kind.msg" 2>/dev/null ||
		{ echo "$kind: the INVITE at bob carries no Record-Route of the hub ($HUB)"; rc=1; }
	line=$(grep -m1 '^hub-offer ' "$CASE_DIR/uas-$kind.log" 2>/dev/null)
	echo "$kind: SIPp bob got ${line:-no offer}"
	[[ "$line" == *" path=msrp://$MSRP_HUB_LISTEN/"* ]] || { echo "$kind: the offer at bob does not name the hub's MSRP listener"; rc=1; }
	[[ "$line" == *" setup=actpass "* ]] || { echo "$kind: the hub's offer to bob lacks a=setup:actpass"; rc=1; }
	if cmp -s "$in" "$got"; then
		echo "$kind: bob's endpoint received the $(wc -c <"$in") bytes alice's sent, intact"
	else
		echo "$kind: what bob's endpoint received ($(cat "$got" 2>/dev/null | wc -c) bytes) differs from what alice's sent ($(wc -c <"$in"))"
		rc=1
	fi
	return "$rc"
}

# audit_for FILE CALL_ID METHOD: the export's METHOD entries of that call.
audit_for() { grep -F "\"call_id\":\"$2\"" "$1" | grep -F "\"method\":\"$3\""; }

case_msrp_sipp() {
	local rc=0 cfg=$WORK/hubd-msrp-sipp.yaml audit=$CASE_DIR/msrp-audit.jsonl
	local chat=$CASE_DIR/chat.txt file=$CASE_DIR/sipp-interop.bin sha tid chat_id file_id chat_cid file_cid
	(cd "$ROOT" && "${GO:-go}" build -o "$WORK/msrpsipp" ./tests/interop/msrpsipp) || { echo "msrpsipp does not build"; return 1; }
	printf 'msrp:\n  tcp: %s\n  host: %s\n' "$MSRP_HUB_LISTEN" "$HUB_IP" >"$cfg"
	hub_restart --config "$cfg"
	tcp_bound "${MSRP_HUB_LISTEN%:*}" "${MSRP_HUB_LISTEN##*:}" || { echo "hubd does not listen for MSRP on $MSRP_HUB_LISTEN"; rc=1; }
	# RFC 5547 offers need the file service; no member relay in this case.
	{ hubctl network update net-a --services presence,im,session,file &&
		hubctl network update net-b --services presence,im,session,file --msrp-relay= &&
		hubctl policy allow net-b --from net-a --services presence,im,session,file; } >/dev/null ||
		{ echo "hubctl could not open net-a -> net-b for session and file"; rc=1; }
	# bob's contact is SIPp's address (the same binding the register case makes).
	sipp_run reg-bob "$B_IP" "$BOB_PORT" register.xml "$B_IP:$MEMBER_SIP_PORT" -key user bob -key domain "$B_DOMAIN" ||
		{ echo "SIPp bob could not register at Kamailio B"; rc=1; }

	yes 'clearhub msrp-sipp: 100 KB from a SIPp call through Kamailio A, hubd and Kamailio B. ' | head -c 100000 >"$chat"
	head -c 1048576 /dev/urandom >"$file"
	# RFC 5547 hash form: upper-case hex pairs joined by colons.
	sha=$(sha1sum "$file" | cut -c1-40 | tr a-f A-F | sed 's/../&:/g; s/:$//')
	tid="sipp-ft-$(token)" chat_id="sipp-chat-$(token)" file_id="sipp-file-$(token)"
	if ((rc == 0)); then
		msrp_sipp_call chat "$MSRP_SIPP_CHAT_PORT" "$chat" text/plain "$chat_id" || rc=1
		chat_cid=$MSRP_SIPP_CID
		msrp_sipp_call file "$MSRP_SIPP_FILE_PORT" "$file" application/octet-stream "$file_id" \
			-key xfer_name sipp-interop.bin -key xfer_size "$(wc -c <"$file")" -key xfer_sha1 "$sha" -key xfer_id "$tid" || rc=1
		file_cid=$MSRP_SIPP_CID
		# audit-export-verify checks that the INVITEs are in the ledger too.
		CALL_IDS+=("$chat_cid" "$file_cid")
		grep -qF "a=file-selector:name:\"sipp-interop.bin\" type:application/octet-stream size:1048576 hash:sha-1:$sha" "$CASE_DIR/uas-file.msg" ||
			{ echo "the file-selector did not reach bob byte for byte"; rc=1; }

		# The file's entry is written when its last chunk is in.
		wait_until 20 0.25 sh -c "'$HUBCTL' --data '$DATA' audit export '$audit' --kind msrp 2>/dev/null && grep -qF '$tid' '$audit'"
		echo "audit export --kind msrp: $(wc -l <"$audit" 2>/dev/null || echo 0) entries"
		if [[ -z "$chat_cid" || -z "$file_cid" ]]; then
			echo "no Call-ID from SIPp alice's calls: the audit cannot be matched to them"
			rc=1
		else
			audit_for "$audit" "$chat_cid" MSRP | grep -q "\"status\":200,.*message-id=$chat_id bytes=100000 " ||
				{ echo "no audit entry (status 200) for the 100 KB message under Call-ID $chat_cid"; rc=1; }
			audit_for "$audit" "$file_cid" MSRP | grep -q "\"status\":200,.*message-id=$file_id bytes=1048576 " ||
				{ echo "no audit entry (status 200) for the 1 MB file's message under Call-ID $file_cid"; rc=1; }
			audit_for "$audit" "$file_cid" MSRP-FILE | grep -q "\"status\":200,.*file-transfer-id=$tid .*sha1=verified" ||
				{ echo "no MSRP-FILE audit entry with sha1=verified under Call-ID $file_cid"; rc=1; }
			audit_for "$audit" "$file_cid" MSRP-FILE | grep -o 'offered-sha1=[0-9a-f]* hub-sha1=[0-9a-f]* sha1=[a-z]*'
		fi
	fi
	# Put back what the other cases expect.
	{ hubctl network update net-a --services presence,im,session &&
		hubctl network update net-b --services presence,im,session &&
		hubctl policy allow net-b --from net-a --services presence,im,session; } >/dev/null || { echo "could not restore net-a/net-b"; rc=1; }
	cp "$WORK/hubd.log" "$CASE_DIR/hubd-msrp.log"
	hub_restart
	return "$rc"
}
