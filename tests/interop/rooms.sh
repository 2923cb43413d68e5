# Chat rooms hosted by the hub (issue 11) through Kamailio member edges,
# sourced by run.sh (the hub runs with its default rooms domain,
# rooms.localhost, which both Kamailios route to the hub as a foreign
# domain).
#
# case_room_pager (HOSTING.md R1): a room with alice@a (owner) and bob@b,
# made with hubctl; alice (SIPp) sends a MESSAGE to the room through
# Kamailio A and gets 200 (after the commit); bob (SIPp, registered at
# Kamailio B) receives one MESSAGE From the room with the body prefixed by
# alice's nickname and full address, Content-Type kept; the room's history
# has it.
#
# case_room_roster (R4): alice watches the room's roster (SUBSCRIBE Event:
# conference through Kamailio A): 200, a full conference-info NOTIFY naming
# bob, a partial NOTIFY (version 2) after carol is added, and the final
# NOTIFY after her unsubscribe; a watcher banned from the room gets 403.

ROOMS_DOMAIN=rooms.localhost

rooms_onboard() {
	hubctl network update net-a --services presence,im,session,chat &&
		hubctl network update net-b --services presence,im,session,chat &&
		hubctl policy allow net-b --from net-a --services chat &&
		hubctl policy allow net-a --from net-b --services chat
}

case_room_pager() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	local tok uas rc=0
	rooms_onboard || return 1
	hubctl room create interop --subject Interop --owner "alice@$A_DOMAIN" || return 1
	hubctl room add interop "bob@$B_DOMAIN" >/dev/null || return 1
	sipp_run reg-bob "$B_IP" "$BOB_PORT" register.xml "$B_IP:$MEMBER_SIP_PORT" \
		-key user bob -key domain "$B_DOMAIN" || return 1
	tok=$(token)
	sipp_start uas uas-bob "$B_IP" "$BOB_PORT" message_uas.xml "" -key user bob -key domain "$B_DOMAIN" -timeout_error
	wait_until 50 0.1 udp_bound "$B_IP" "$BOB_PORT" || { echo "uas did not bind"; return 1; }
	sipp_run uac-alice "$A_IP" "$ALICE_PORT" message_uac.xml "$A_IP:$MEMBER_SIP_PORT" \
		-key user alice -key domain "$A_DOMAIN" -key peer interop -key peer_domain "$ROOMS_DOMAIN" -key token "$tok" || rc=1
	grep -q "^SIP/2.0 200" "$CASE_DIR/uac-alice.msg" || { echo "alice did not get 200 from the room"; rc=1; }
	CALL_IDS+=("$(call_id_of "$CASE_DIR/uac-alice.msg")")
	sipp_wait uas-bob "$uas" || rc=1
	grep -q "alice (alice@$A_DOMAIN): interop-im $tok from alice@$A_DOMAIN" "$CASE_DIR/uas-bob.msg" ||
		{ echo "bob did not get alice's message with the sender prefix"; rc=1; }
	grep -q "^From: <sip:interop@$ROOMS_DOMAIN>" "$CASE_DIR/uas-bob.msg" || { echo "the copy is not From the room"; rc=1; }
	grep -q "^Content-Type: text/plain" "$CASE_DIR/uas-bob.msg" || { echo "Content-Type not kept"; rc=1; }
	hubctl room history interop | grep -qF "$tok" || { echo "the room's history lacks the message"; rc=1; }
	return "$rc"
}

case_room_roster() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	local w rc=0
	if ! hubctl room get interop >/dev/null 2>&1; then
		rooms_onboard || return 1
		hubctl room create interop --owner "alice@$A_DOMAIN" >/dev/null || return 1
		hubctl room add interop "bob@$B_DOMAIN" >/dev/null || return 1
	fi
	sipp_start w alice "$A_IP" "$ALICE_PORT" room_subscribe_uac.xml "$A_IP:$MEMBER_SIP_PORT" \
		-key user alice -key domain "$A_DOMAIN" -key peer interop -key peer_domain "$ROOMS_DOMAIN" -timeout_error
	wait_until 100 0.1 grep -qs 'state="full"' "$CASE_DIR/alice.msg" || { echo "no full roster NOTIFY"; sipp_wait alice "$w"; return 1; }
	hubctl room add interop "carol@$B_DOMAIN" >/dev/null || rc=1
	sipp_wait alice "$w" || rc=1
	CALL_IDS+=("$(call_id_of "$CASE_DIR/alice.msg")")
	grep -q '^Content-Type: application/conference-info+xml' "$CASE_DIR/alice.msg" || { echo "no conference-info NOTIFY"; rc=1; }
	grep -q 'entity="sip:carol@b.example" state="full"' "$CASE_DIR/alice.msg" || { echo "carol not in the partial NOTIFY"; rc=1; }
	# A banned watcher is refused.
	hubctl room ban interop "sip:dave@$A_DOMAIN" --reason interop >/dev/null || rc=1
	sipp_start w dave "$A_IP" $((ALICE_PORT + 20)) room_subscribe_uac.xml "$A_IP:$MEMBER_SIP_PORT" \
		-key user dave -key domain "$A_DOMAIN" -key peer interop -key peer_domain "$ROOMS_DOMAIN"
	sipp_wait dave "$w"
	grep -q "^SIP/2.0 403 Banned From Room" "$CASE_DIR/dave.msg" || { echo "banned watcher not refused with 403"; rc=1; }
	return "$rc"
}
