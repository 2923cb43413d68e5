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
