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
# are at least 5 s apart (the throttle); the unsubscribe ends it. The
# NOTIFYs (over 1300 bytes) reach Kamailio A over TCP, though net-a's edge
# is a UDP URI (RFC 3261 18.1.1).
#
# case_list_sharing: three watchers of a.example subscribe to a public list
# with bob; with b's shared view granted to a, Kamailio B sees one back-end
# SUBSCRIBE for bob from the hub, not three, and every watcher still gets
# bob's state (counted as distinct Call-IDs: a SUBSCRIBE sent again after
# a sqlite 500 is the same subscription).
#
# case_list_linphone, case_list_rls: below.

LISTS_DOMAIN=lists.hub.example
LINPHONE_PORT=${LINPHONE_PORT:-5098}

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

# backend_dialogs USER FROM_LINE: distinct back-end subscriptions (Call-IDs)
# for USER@b that Kamailio B saw from the hub after line FROM_LINE of its
# log. A SUBSCRIBE the hub sent again after a 500 (sqlite "database is
# locked") is the same subscription, not a second one.
backend_dialogs() {
	tail -n +"$(($2 + 1))" "$WORK/kamailio-b.log" | grep -F "in SUBSCRIBE sip:$1@$B_DOMAIN from $HUB_IP:" |
		grep -o 'cid=[^ ]*' | sort -u | grep -c .
}

# list_create URI ARGS...: create a list afresh (a case run again after a
# first failed attempt finds the list it made).
list_create() {
	hubctl list delete "$1" >/dev/null 2>&1 || true
	hubctl list create "$@"
}

case_list_subscription() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	local pub w rc=0 f cid
	list_create "sip:alice-buddies@$LISTS_DOMAIN" --owner "sip:alice@$A_DOMAIN" \
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
	# RFC 3261 18.1.1: the list NOTIFYs are over 1300 bytes, and net-a's
	# only edge is UDP; the hub sends them over TCP to that edge's address
	# (Kamailio A listens on both), never as a datagram.
	local tcp udp
	tcp=$(grep -c "in NOTIFY sip:alice@.* from $HUB_IP:[0-9]* (tcp) cid=$cid" "$WORK/kamailio-a.log")
	udp=$(grep -c "in NOTIFY sip:alice@.* from $HUB_IP:[0-9]* (udp) cid=$cid" "$WORK/kamailio-a.log")
	echo "list NOTIFYs at Kamailio A: $tcp over TCP, $udp over UDP"
	((tcp >= 2)) || { echo "the large list NOTIFYs did not come over TCP"; rc=1; }
	return "$rc"
}

case_list_sharing() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	local pub rc=0 before after i
	local -a pids
	list_create "sip:team@$LISTS_DOMAIN" --entry "sip:bob@$B_DOMAIN=Bob" || return 1
	hubctl policy allow net-b --from net-a --services presence --share-views || return 1
	before=$(wc -l <"$WORK/kamailio-b.log")
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
	after=$(backend_dialogs bob "$before")
	echo "back-end subscriptions for bob from the hub during the case: $after (three watchers, shared view)"
	grep -F "in SUBSCRIBE sip:bob@$B_DOMAIN from $HUB_IP:" "$WORK/kamailio-b.log" | tail -n 3
	((after == 1)) || { echo "want one shared back-end subscription"; rc=1; }
	hubctl policy allow net-b --from net-a --services presence --share-views=false || rc=1
	return "$rc"
}

# case_list_linphone: Debian's linphonec (liblinphone 5.1.65) with an
# rls_uri in the lists domain and two friends subscribes with an RFC 5367
# request-contained list (Require: recipient-list-subscribe, zlib deflate
# body) through Kamailio A. The hub must answer 200, subscribe to bob and
# carol at Kamailio B, and linphonec must answer 200 to the hub's NOTIFYs
# and still be running at the end (belle-sip 5.1.64 crashed on a quoted
# multipart boundary). linphonec is a SUBSCRIBE generator and a crash
# canary here, not an RLMI oracle (its multipart receive bug: HOSTING.md).
case_list_linphone() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	if ! command -v linphonec >/dev/null; then
		echo "linphonec not installed (apt-get install linphone-cli)"
		return 77
	fi
	local rc=0 rcf=$CASE_DIR/linphonerc lpid cid n before_b before_c
	cat >"$rcf" <<-RC
		[sip]
		sip_port=$LINPHONE_PORT
		sip_tcp_port=0
		sip_tls_port=0
		rls_uri=sip:rls@$LISTS_DOMAIN
		subscribe_presence_only_when_registered=0
		default_proxy=0
		[proxy_0]
		reg_proxy=<sip:$A_IP:$MEMBER_SIP_PORT;transport=udp>
		reg_route=<sip:$A_IP:$MEMBER_SIP_PORT;transport=udp;lr>
		reg_identity=sip:alice@$A_DOMAIN
		reg_sendregister=0
		publish=0
		[friend_0]
		url="Bob" <sip:bob@$B_DOMAIN>
		pol=accept
		subscribe=1
		[friend_1]
		url="Carol" <sip:carol@$B_DOMAIN>
		pol=accept
		subscribe=1
	RC
	before_b=$(backend_subscribes bob)
	before_c=$(backend_subscribes carol)
	# stdin held open for 12 s, then closed: linphonec quits.
	# Its own HOME: without a writable linphone.db it loads no friends.
	mkdir -p "$CASE_DIR/home/.local/share/linphone"
	(sleep 12 | HOME=$CASE_DIR/home linphonec -c "$rcf" -d 6 -l "$CASE_DIR/linphonec.log" >"$CASE_DIR/linphonec.out" 2>&1) &
	own "$!"
	wait_until 80 0.1 grep -qF "in SUBSCRIBE sip:rls@$LISTS_DOMAIN" "$WORK/kamailio-a.log" ||
		{ echo "linphonec sent no list SUBSCRIBE through Kamailio A"; rc=1; }
	sleep 6
	lpid=$(pgrep -f "linphonec -c $rcf" | head -1)
	if [[ -z "$lpid" ]]; then
		echo "linphonec is not running any more (crash?):"
		tail -n 5 "$CASE_DIR/linphonec.out"
		rc=1
	fi
	cid=$(grep -F "in SUBSCRIBE sip:rls@$LISTS_DOMAIN" "$WORK/kamailio-a.log" | tail -1 | sed 's/.*cid=//')
	echo "list SUBSCRIBE Call-ID: $cid"
	CALL_IDS+=("$cid")
	grep -q 'recipient-list-subscribe' "$CASE_DIR/linphonec.log" 2>/dev/null && echo "linphonec sent Require: recipient-list-subscribe"
	grep -q 'Content-Encoding: deflate' "$CASE_DIR/linphonec.log" 2>/dev/null && echo "with Content-Encoding: deflate"
	n=$(grep -F "cid=$cid" "$WORK/kamailio-a.log" | grep -c "in NOTIFY .* from $HUB_IP:")
	echo "hub NOTIFYs to linphonec through Kamailio A: $n"
	((n >= 1)) || rc=1
	grep -E "reply 200 [Oo][Kk] for NOTIFY from 127\.0\.0\.[0-9]+:$LINPHONE_PORT" "$WORK/kamailio-a.log" | tail -n 2
	grep -qE "reply 200 [Oo][Kk] for NOTIFY from 127\.0\.0\.[0-9]+:$LINPHONE_PORT" "$WORK/kamailio-a.log" ||
		{ echo "linphonec did not answer 200 to the hub's NOTIFY"; rc=1; }
	grep -E "reply [0-9]+ .* for SUBSCRIBE from $HUB_IP" "$WORK/kamailio-a.log" | tail -n 2
	# Its in-dialog refresh repeats Require: recipient-list-subscribe
	# without a body: it must keep the list (200), not get a 400.
	if grep -E "reply [3-6][0-9][0-9] .* for SUBSCRIBE from $HUB_IP" "$WORK/kamailio-a.log"; then
		echo "the hub refused one of linphonec's SUBSCRIBEs"
		rc=1
	fi
	echo "back-end SUBSCRIBEs at Kamailio B: bob +$(($(backend_subscribes bob) - before_b)), carol +$(($(backend_subscribes carol) - before_c))"
	(($(backend_subscribes bob) > before_b && $(backend_subscribes carol) > before_c)) || { echo "back-end SUBSCRIBEs missing"; rc=1; }
	[[ -n "$lpid" ]] && { stop_pid "$lpid"; }
	return "$rc"
}

# case_list_rls: Kamailio's own rls (Kamailio R, network net-r, lists in
# its integrated XCAP table) as the second implementation next to the hub.
# Three watchers of r.example subscribe to the same list with bob at R;
# rls subscribes to bob through the hub once per watcher (its back-end
# subscriptions are keyed by the RLS dialog and carry the watcher's URI):
# Kamailio B sees three back-end subscriptions for bob where the hub, in
# list-sharing, made one. The case checks the three.
R_IP=${R_IP:-127.0.0.4}
R_DOMAIN=r.example

case_list_rls() {
	if [[ "$MODE" != hub ]]; then
		echo "needs the hub (MODE=direct)"
		return 77
	fi
	local db=$WORK/r-$RANDOM.sqlite rc=0 before n i doc
	local -a pids
	{
		cat /usr/share/kamailio/db_sqlite/standard-create.sql
		cat /usr/share/kamailio/db_sqlite/presence-create.sql
		cat /usr/share/kamailio/db_sqlite/rls-create.sql
	} | sqlite3 "$db" || return 1
	doc="<?xml version=\"1.0\" encoding=\"UTF-8\"?><rls-services xmlns=\"urn:ietf:params:xml:ns:rls-services\" xmlns:rl=\"urn:ietf:params:xml:ns:resource-lists\"><service uri=\"sip:buddies@$R_DOMAIN\"><list name=\"buddies\"><rl:entry uri=\"sip:bob@$B_DOMAIN\"/></list><packages><package>presence</package></packages></service></rls-services>"
	for i in 1 2 3; do
		# rls reads the rls-services document of the subscriber (doc_type 8
		# = RLS_SERVICE in Kamailio's XCAP tables).
		sqlite3 "$db" "INSERT INTO xcap (username, domain, doc, doc_type, etag, source, doc_uri, port) VALUES ('watcher$i', '$R_DOMAIN', '$doc', 8, 'e$i', 1, 'rls-services/users/watcher$i@$R_DOMAIN/index', 0);" || return 1
	done
	render_cfg "$KCFG/rls.cfg" "$WORK/kamailio-r.cfg" "DEBUG=$KAM_DEBUG" "NAME=r" "IP=$R_IP" "SIP_PORT=$MEMBER_SIP_PORT" \
		"DOMAIN=$R_DOMAIN" "MPATH=$(kamailio_mpath)" "DB=$db" "HUB=$HUB" || return 1
	start_kamailio r "$WORK/kamailio-r.cfg" "$R_IP" "$MEMBER_SIP_PORT" "$WORK/kamailio-r.log"
	hubctl network remove net-r >/dev/null 2>&1 || true # left by a first attempt
	hubctl network add net-r --domain "$R_DOMAIN" --edge "sip:$R_IP:$MEMBER_SIP_PORT" --cidr "$R_IP/32" --services presence >/dev/null || return 1
	hubctl policy allow net-b --from net-r --services presence || rc=1
	hubctl policy allow net-r --from net-b --services presence || rc=1
	sleep 1 # the edge and policy reach the SIP plane
	before=$(wc -l <"$WORK/kamailio-b.log")
	for i in 1 2 3; do
		sipp_start "pids[$i]" "rls-watcher$i" "$R_IP" $((ALICE_PORT + 20 + i)) list_subscribe_uac.xml "$R_IP:$MEMBER_SIP_PORT" \
			-key user "watcher$i" -key domain "$R_DOMAIN" -key list buddies -key list_domain "$R_DOMAIN"
	done
	wait_until 50 0.2 test "$(backend_dialogs bob "$before")" -ge 3 || true
	sleep 1
	n=$(backend_dialogs bob "$before")
	echo "back-end subscriptions for bob at Kamailio B, three rls watchers at Kamailio R: $n (the hub, shared view: 1)"
	grep -F "in SUBSCRIBE sip:bob@$B_DOMAIN from $HUB_IP:" "$WORK/kamailio-b.log" | tail -n 3
	((n == 3)) || { echo "want three: rls shares nothing"; tail -n 20 "$WORK/kamailio-r.log"; rc=1; }
	for i in 1 2 3; do
		stop_pid "${pids[$i]}"
	done
	stop_kamailio r
	hubctl network remove net-r >/dev/null 2>&1 || true # and its policy: later cases see the usual two
	return "$rc"
}
