# Store and forward against Kamailio (issue 12), sourced by run.sh.
#
# case_store_forward: Kamailio B is stopped; alice's MESSAGE through
# Kamailio A to bob gets 202 from the hub (stored after the silent edge's
# transaction timeout, under Kamailio A's 5 s fr_timer); Kamailio B comes
# back, bob registers again, the hub delivers the stored MESSAGE with the
# original Call-ID and the exact token in the body.

case_store_forward() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	local tok uas rc=0 cid got
	tok=$(token)
	stop_kamailio b
	sipp_run uac-alice "$A_IP" "$ALICE_PORT" message_uac.xml "$A_IP:$MEMBER_SIP_PORT" \
		-key user alice -key domain "$A_DOMAIN" -key peer bob -key peer_domain "$B_DOMAIN" -key token "$tok" || rc=1
	cid=$(call_id_of "$CASE_DIR/uac-alice.msg")
	CALL_IDS+=("$cid")
	grep -q "^SIP/2.0 202" "$CASE_DIR/uac-alice.msg" || { echo "alice did not get 202 Accepted"; rc=1; }
	hubctl queue list --network net-b || rc=1
	hubctl queue show net-b | grep -qF "$cid" || { echo "the hub's queue for net-b does not hold $cid"; rc=1; }

	# B returns (its registrations are gone with it: bob registers again).
	# Until bob has, B's registrar answers 404, which is a final answer the
	# hub honours (the message would be dropped, correctly): so the hub's
	# own probes must not find B before bob is back. net-b's edge points at
	# a closed port while B restarts, and is restored once bob listens.
	hubctl network update net-b --edge "sip:$B_IP:5999" >/dev/null || rc=1
	cat "$WORK/kamailio-b.log" >>"$WORK/kamailio-b.prev.log"
	start_kamailio b "$WORK/kamailio-b.cfg" "$B_IP" "$MEMBER_SIP_PORT" "$WORK/kamailio-b.log"
	sipp_run reg-bob "$B_IP" "$BOB_PORT" register.xml "$B_IP:$MEMBER_SIP_PORT" \
		-key user bob -key domain "$B_DOMAIN" || rc=1
	sipp_start uas uas-bob "$B_IP" "$BOB_PORT" message_uas.xml "" -key user bob -key domain "$B_DOMAIN" -timeout_error
	wait_until 50 0.1 udp_bound "$B_IP" "$BOB_PORT" || { echo "uas did not bind"; return 1; }
	hubctl network update net-b --edge "sip:$B_IP:$MEMBER_SIP_PORT" >/dev/null || rc=1
	hubctl queue retry net-b || rc=1
	sipp_wait uas-bob "$uas" || rc=1
	grep -q "interop-im $tok from alice@$A_DOMAIN" "$CASE_DIR/uas-bob.msg" || { echo "stored token $tok not delivered to bob"; rc=1; }
	got=$(call_id_of "$CASE_DIR/uas-bob.msg")
	[[ "$got" == "$cid" ]] || { echo "delivered with Call-ID $got, want the original $cid"; rc=1; }
	wait_until 50 0.2 sh -c "! \"$HUBCTL\" --data \"$DATA\" queue show net-b | grep -qF \"$cid\"" ||
		{ echo "$cid still stored after delivery"; rc=1; }
	return "$rc"
}
