# The hub's echo user (issue 15) through a Kamailio member edge, sourced by
# run.sh (the hub runs with its default service domain, hub.localhost,
# which Kamailio A routes to the hub as a foreign domain).
#
# case_echo_user: alice registers a second contact at Kamailio A (a SIPp
# UAS), sends a MESSAGE to sip:echo@hub.localhost from another port and
# gets 200; the hub's MESSAGE back, From the echo user, reaches her UAS
# through Kamailio A and says what the hub saw: the source network net-a,
# the lab prefix of Kamailio A's address, the From, and Kamailio A's Via
# as received.

ECHO_DOMAIN=hub.localhost

case_echo_user() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	local tok uas rc=0 port=$((ALICE_PORT + 30))
	sipp_run reg-alice-echo "$A_IP" "$port" register.xml "$A_IP:$MEMBER_SIP_PORT" \
		-key user alice -key domain "$A_DOMAIN" || return 1
	sipp_start uas uas-alice "$A_IP" "$port" echo_uas.xml "" -timeout_error
	wait_until 50 0.1 udp_bound "$A_IP" "$port" || { echo "uas did not bind"; return 1; }
	tok=$(token)
	sipp_run uac-alice "$A_IP" "$ALICE_PORT" message_uac.xml "$A_IP:$MEMBER_SIP_PORT" \
		-key user alice -key domain "$A_DOMAIN" -key peer echo -key peer_domain "$ECHO_DOMAIN" -key token "$tok" || rc=1
	grep -q "^SIP/2.0 200" "$CASE_DIR/uac-alice.msg" || { echo "alice did not get 200 from the echo user"; rc=1; }
	CALL_IDS+=("$(call_id_of "$CASE_DIR/uac-alice.msg")")
	sipp_wait uas-alice "$uas" || rc=1
	for want in "^From: <sip:echo@$ECHO_DOMAIN>" "source network: net-a" "in lab prefix $A_IP/" \
		"from: sip:alice@$A_DOMAIN" "via: SIP/2.0/UDP $A_IP"; do
		grep -q "$want" "$CASE_DIR/uas-alice.msg" || { echo "the echo reply lacks: $want"; rc=1; }
	done
	return "$rc"
}
