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

# case_room_join_ban (R2, R3): bob joins a public room in band ("#join"
# through Kamailio B), is a participant; a ban of his whole network takes
# him out and his next message gets 403 Banned From Room; after the unban
# he joins again, and suspending network B evicts him from the room in the
# same log entry (resumed at the end so later cases see B active).
case_room_join_ban() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	local rc=0
	rooms_onboard || return 1
	hubctl room create lobby --subject Lobby --owner "alice@$A_DOMAIN" >/dev/null || return 1
	say() { # say NAME BODY SCENARIO
		sipp_run "$1" "$B_IP" "$BOB_PORT" "$3" "$B_IP:$MEMBER_SIP_PORT" \
			-key user bob -key domain "$B_DOMAIN" -key peer lobby -key peer_domain "$ROOMS_DOMAIN" -key body "$2"
	}
	in_room() { hubctl room get lobby -o json | grep -q "\"user\": \"sip:bob@$B_DOMAIN\""; }
	say join1 "#join" room_say_uac.xml || { echo "#join not answered 200"; rc=1; }
	wait_until 50 0.1 in_room || { echo "bob not a participant after #join"; rc=1; }
	hubctl room ban lobby "network:net-b" --reason interop >/dev/null || rc=1
	in_room && { echo "the network ban left bob in the room"; rc=1; }
	say banned "after the ban" room_refused_uac.xml || rc=1
	grep -q "^SIP/2.0 403 Banned From Room" "$CASE_DIR/banned.msg" || { echo "no 403 Banned From Room"; rc=1; }
	hubctl room unban lobby "network:net-b" >/dev/null || rc=1
	say join2 "#join" room_say_uac.xml || rc=1
	wait_until 50 0.1 in_room || { echo "bob could not join again after the unban"; rc=1; }
	hubctl network suspend net-b >/dev/null || rc=1
	in_room && { echo "suspending net-b left bob in the room"; rc=1; }
	hubctl network resume net-b >/dev/null || rc=1
	return "$rc"
}

# case_room_linphone (R1 with a real client): Debian's linphonec
# (liblinphone 5.1.65), registered at Kamailio A as carol, sends a chat
# message to a room ("chat sip:ROOM ..."): dan (SIPp at Kamailio B, his
# own port: bob's may still get retransmitted room replies of earlier
# cases) gets the copy From the room with carol's prefix; then dan speaks
# and linphonec prints the fan-out copy ("Message received from <room>:
# dan (...): ..."). linphonec's IMDN back to the room must not be posted.
# Plain text: linphone's basic chat answers 488 to CPIM from a room.
case_room_linphone() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	if ! command -v linphonec >/dev/null; then
		echo "linphonec not installed (apt-get install linphone-cli)"
		return 77
	fi
	local rc=0 rcf=$CASE_DIR/linphonerc uas tok port=$((LINPHONE_PORT + 1)) lpid dport=$((BOB_PORT + 30))
	rooms_onboard || return 1
	hubctl room delete lphone >/dev/null 2>&1 || true
	hubctl room create lphone --owner "dan@$B_DOMAIN" >/dev/null || return 1
	hubctl room add lphone "carol@$A_DOMAIN" >/dev/null || return 1
	cat >"$rcf" <<-RC
		[sip]
		sip_port=$port
		sip_tcp_port=0
		sip_tls_port=0
		default_proxy=0
		[proxy_0]
		reg_proxy=<sip:$A_IP:$MEMBER_SIP_PORT;transport=udp>
		reg_route=<sip:$A_IP:$MEMBER_SIP_PORT;transport=udp;lr>
		reg_identity=sip:carol@$A_DOMAIN
		reg_expires=120
		reg_sendregister=1
		publish=0
	RC
	sipp_run reg-dan "$B_IP" "$dport" register.xml "$B_IP:$MEMBER_SIP_PORT" \
		-key user dan -key domain "$B_DOMAIN" || return 1
	tok=$(token)
	sipp_start uas uas-dan "$B_IP" "$dport" message_uas.xml "" -key user dan -key domain "$B_DOMAIN" -timeout_error
	wait_until 50 0.1 udp_bound "$B_IP" "$dport" || { echo "uas did not bind"; return 1; }
	mkdir -p "$CASE_DIR/home/.local/share/linphone"
	# stdin: wait for the registration, chat, then stay 10 s to receive.
	({
		sleep 4
		printf 'chat sip:lphone@%s "interop-im %s from linphonec"\n' "$ROOMS_DOMAIN" "$tok"
		sleep 10
	} | HOME=$CASE_DIR/home linphonec -c "$rcf" -d 6 -l "$CASE_DIR/linphonec.log" >"$CASE_DIR/linphonec.out" 2>&1) &
	own "$!"
	sipp_wait uas-dan "$uas" || { echo "dan got no copy of linphonec's message"; rc=1; }
	# linphonec keeps the command's quotes in the body.
	grep -q "carol (carol@$A_DOMAIN): \"\?interop-im $tok from linphonec" "$CASE_DIR/uas-dan.msg" ||
		{ echo "dan's copy lacks carol's prefix"; rc=1; }
	sipp_run dan-says "$B_IP" "$dport" room_say_uac.xml "$B_IP:$MEMBER_SIP_PORT" \
		-key user dan -key domain "$B_DOMAIN" -key peer lphone -key peer_domain "$ROOMS_DOMAIN" -key body "back to linphonec $tok" || rc=1
	wait_until 80 0.1 grep -qF "dan (dan@$B_DOMAIN): back to linphonec $tok" "$CASE_DIR/linphonec.out" ||
		{ echo "linphonec did not show the room's copy:"; grep -i "message" "$CASE_DIR/linphonec.out" | tail -n 3; rc=1; }
	grep -F "Message received" "$CASE_DIR/linphonec.out" | tail -n 2
	# linphonec answers the copy with an IMDN (message/imdn+xml) to the
	# room: accepted, never posted as a room message.
	sleep 1
	if hubctl room history lphone | grep -q "imdn"; then
		echo "linphonec's IMDN was posted to the room"
		rc=1
	fi
	lpid=$(pgrep -f "linphonec -c $rcf" | head -1)
	[[ -n "$lpid" ]] && stop_pid "$lpid"
	return "$rc"
}
