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
