# Resource lists hosted by the hub (issue 13) against Kamailio presence
# servers, sourced by run.sh (the hub runs with --lists-domain).
#
# case_list_subscription: a personal list of alice's {bob@b, carol@b}; bob
# publishes at Kamailio B; alice (SIPp) subscribes to the list through
# Kamailio A. Checks: 200 with Require: eventlist; the first NOTIFY is
# multipart/related with the boundary last and unquoted and RLMI version 0
# full state; the hub's back-end SUBSCRIBEs for bob and carol reach
# Kamailio B from the hub; bob's re-PUBLISH comes as a partial NOTIFY
# (fullState="false") with his new note, and partial NOTIFYs about bob
# are at least 5 s apart (the throttle); the unsubscribe ends it.
#
# case_list_sharing: three watchers of a.example subscribe to a public list
# with bob; with b's shared view granted to a, Kamailio B sees one back-end
# SUBSCRIBE for bob from the hub, not three, and every watcher still gets
# bob's state.

LISTS_DOMAIN=lists.hub.example

# list_subscribe NAME USER PORT LIST: one list watcher through Kamailio A.
list_subscribe() {
	sipp_start "$1" "$2" "$A_IP" "$3" list_subscribe_uac.xml "$A_IP:$MEMBER_SIP_PORT" \
		-key user "$2" -key domain "$A_DOMAIN" -key list "$4" -key list_domain "$LISTS_DOMAIN" -timeout_error
}

# partial_times FILE USER: the times (s since midnight) of the partial
# NOTIFYs (fullState="false") received that name USER@b.
partial_times() {
	awk -v who="resource uri=\"sip:$2@" '
		/^----------------------------------------------- / { split($3, t, ":"); ts = t[1] * 3600 + t[2] * 60 + t[3]; rx = 0; partial = 0; named = 0; done = 0; next }
		/message received/ { rx = 1; next }
		rx && /fullState="false"/ { partial = 1 }
		rx && index($0, who) { named = 1 }
		rx && partial && named && !done { print ts; done = 1 }
	' "$1"
}

# backend_subscribes USER: initial back-end SUBSCRIBEs for USER@b that
# Kamailio B received from the hub (lines logged by its request_route).
backend_subscribes() {
	grep -F "in SUBSCRIBE sip:$1@$B_DOMAIN from $HUB_IP:" "$WORK/kamailio-b.log" | grep -c .
}

case_list_subscription() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	local pub w rc=0 f cid
	hubctl list create "sip:alice-buddies@$LISTS_DOMAIN" --owner "sip:alice@$A_DOMAIN" \
		--entry "sip:bob@$B_DOMAIN=Bob" --entry "sip:carol@$B_DOMAIN" || return 1
	sipp_start pub pub-bob "$B_IP" "$BOB_PORT" list_publish.xml "$B_IP:$MEMBER_SIP_PORT" \
		-key user bob -key domain "$B_DOMAIN" -timeout_error
	wait_until 50 0.1 grep -qs "^SIP/2.0 200" "$CASE_DIR/pub-bob.msg" ||
		{ echo "PUBLISH not accepted"; sipp_wait pub-bob "$pub"; return 1; }
	list_subscribe w alice "$ALICE_PORT" alice-buddies
	sipp_wait alice "$w" || rc=1
	sipp_wait pub-bob "$pub" || rc=1
	f=$CASE_DIR/alice.msg
	cid=$(call_id_of "$f")
	CALL_IDS+=("$cid")
	grep -q '^Require: eventlist' "$f" || { echo "no Require: eventlist from the hub"; rc=1; }
	grep -Eq '^Content-Type: multipart/related;type="application/rlmi\+xml";start="<[^>]+>";boundary=[0-9a-f]+.?$' "$f" ||
		{ echo "NOTIFY Content-Type not in the belle-sip-safe form (boundary last, unquoted)"; grep -m2 '^Content-Type: multipart' "$f"; rc=1; }
	grep -q 'version="0" fullState="true"' "$f" || { echo "no version 0 full-state NOTIFY"; rc=1; }
	grep -q 'fullState="false"' "$f" || { echo "no partial NOTIFY"; rc=1; }
	grep -q 'Subscription-State: terminated' "$f" || { echo "no terminating NOTIFY"; rc=1; }
	echo "back-end SUBSCRIBEs at Kamailio B from the hub: bob $(backend_subscribes bob), carol $(backend_subscribes carol)"
	(($(backend_subscribes bob) >= 1 && $(backend_subscribes carol) >= 1)) || { echo "back-end SUBSCRIBEs missing"; rc=1; }
	# The throttle: partial NOTIFYs about bob at least 5 s apart (a
	# back end that failed first, e.g. Kamailio's sqlite "database is
	# locked" 500, counts: its state was sent too). bob's last note must
	# have come as a partial NOTIFY.
	local times
	times=$(partial_times "$f" bob | tr '\n' ' ')
	echo "partial NOTIFYs about bob at: $times"
	awk -v ts="$times" 'BEGIN { n = split(ts, a, " "); for (i = 2; i <= n; i++) if (a[i] - a[i - 1] < 4.9) exit 1 }' ||
		{ echo "two partial NOTIFYs about bob less than 5 s apart (throttle)"; rc=1; }
	awk '/message received/ { rx = 1 } rx && /fullState="false"/ { p = 1 } rx && p && /interop-second/ { found = 1 } /^-------/ { rx = 0; p = 0 } END { exit !found }' "$f" ||
		{ echo "bob's re-PUBLISH (interop-second) never came as a partial NOTIFY"; rc=1; }
	return "$rc"
}

case_list_sharing() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	local pub rc=0 before after i
	local -a pids
	hubctl list create "sip:team@$LISTS_DOMAIN" --entry "sip:bob@$B_DOMAIN=Bob" || return 1
	hubctl policy allow net-b --from net-a --services presence --share-views || return 1
	before=$(backend_subscribes bob)
	sipp_start pub pub-bob "$B_IP" "$BOB_PORT" list_publish.xml "$B_IP:$MEMBER_SIP_PORT" \
		-key user bob -key domain "$B_DOMAIN" -timeout_error
	wait_until 50 0.1 grep -qs "^SIP/2.0 200" "$CASE_DIR/pub-bob.msg" ||
		{ echo "PUBLISH not accepted"; sipp_wait pub-bob "$pub"; return 1; }
	for i in 1 2 3; do
		list_subscribe "pids[$i]" "watcher$i" $((ALICE_PORT + 10 + i)) team
	done
	for i in 1 2 3; do
		sipp_wait "watcher$i" "${pids[$i]}" || rc=1
		grep -q 'interop-second' "$CASE_DIR/watcher$i.msg" || { echo "watcher$i never saw bob's state"; rc=1; }
	done
	sipp_wait pub-bob "$pub" || rc=1
	after=$(backend_subscribes bob)
	echo "back-end SUBSCRIBEs for bob from the hub during the case: $((after - before)) (three watchers, shared view)"
	grep -F "in SUBSCRIBE sip:bob@$B_DOMAIN from $HUB_IP:" "$WORK/kamailio-b.log" | tail -n 3
	(((after - before) == 1)) || { echo "want one shared back-end subscription"; rc=1; }
	hubctl policy allow net-b --from net-a --services presence --share-views=false || rc=1
	return "$rc"
}
