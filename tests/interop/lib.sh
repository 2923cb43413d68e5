# shellcheck shell=bash
# Shared helpers of run.sh and bench.sh: dependency install, process
# ownership (every process we start is recorded and stopped by PID), bounded
# waits, Kamailio and hubd start-up. Sourced, never run.

INTEROP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$INTEROP_DIR/../.." && pwd)
SCEN="$INTEROP_DIR/scenarios"
KCFG="$INTEROP_DIR/kamailio"

HUBD=${HUBD:-$ROOT/bin/hubd}
HUBCTL=${HUBCTL:-$ROOT/bin/hubctl}
KAMAILIO=${KAMAILIO:-kamailio}
SIPP=${SIPP:-sipp}

# PIDs this script started, stopped in reverse order on exit.
OWNED_PIDS=()

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 2; }

# need_packages installs the Debian packages the suite needs when a tool
# is missing. Runs as root; apt-get update only when the first try fails.
need_packages() {
	local missing=()
	command -v kamailio >/dev/null || missing+=(kamailio)
	[[ -e "$(kamailio_mpath 2>/dev/null)/presence.so" ]] || missing+=(kamailio-presence-modules)
	[[ -e "$(kamailio_mpath 2>/dev/null)/presence_xml.so" ]] || missing+=(kamailio-xml-modules)
	[[ -e "$(kamailio_mpath 2>/dev/null)/db_sqlite.so" ]] || missing+=(kamailio-sqlite-modules)
	[[ -e "$(kamailio_mpath 2>/dev/null)/tls.so" ]] || missing+=(kamailio-tls-modules)
	command -v sipp >/dev/null || missing+=(sip-tester)
	command -v sqlite3 >/dev/null || missing+=(sqlite3)
	command -v openssl >/dev/null || missing+=(openssl)
	command -v curl >/dev/null || missing+=(curl)
	command -v ss >/dev/null || missing+=(iproute2)
	command -v ps >/dev/null || missing+=(procps)
	# The list-linphone case: a real client's RFC 5367 + deflate SUBSCRIBE.
	command -v linphonec >/dev/null || missing+=(linphone-cli)
	((${#missing[@]} == 0)) && return 0
	# kamailio itself is missing: its module packages are wanted too.
	if [[ " ${missing[*]} " == *" kamailio "* ]]; then
		missing+=(kamailio-presence-modules kamailio-xml-modules kamailio-sqlite-modules kamailio-tls-modules)
	fi
	log "installing: ${missing[*]}"
	local sudo=()
	((EUID != 0)) && sudo=(sudo)
	export DEBIAN_FRONTEND=noninteractive
	if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; then
		"${sudo[@]}" apt-get update >/dev/null || die "apt-get update failed"
		"${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
			die "apt-get install ${missing[*]} failed"
	fi
	# Debian starts the packaged kamailio service on install only when it
	# is enabled; it is not, but make sure nothing of ours collides.
}

# kamailio_mpath prints the directory of Kamailio's modules.
kamailio_mpath() {
	local d
	for d in /usr/lib/x86_64-linux-gnu/kamailio/modules /usr/lib/aarch64-linux-gnu/kamailio/modules \
		/usr/lib/kamailio/modules /usr/lib64/kamailio/modules /usr/local/lib64/kamailio/modules; do
		[[ -e "$d/tm.so" ]] && { echo "$d"; return 0; }
	done
	d=$(dpkg -L kamailio 2>/dev/null | grep '/modules/tm\.so$' | head -1)
	[[ -n "$d" ]] && { dirname "$d"; return 0; }
	return 1
}

# own PID records a process for stopping on exit.
own() { OWNED_PIDS+=("$1"); }

# stop_pid stops one process we started: TERM, up to 5 s, then KILL.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# disown_pid forgets a process that has ended (or that we stopped).
disown_pid() {
	local pid=$1 i
	for i in "${!OWNED_PIDS[@]}"; do
		[[ "${OWNED_PIDS[$i]}" == "$pid" ]] && unset 'OWNED_PIDS[i]'
	done
	OWNED_PIDS=("${OWNED_PIDS[@]}")
}

stop_all() {
	local i
	for ((i = ${#OWNED_PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${OWNED_PIDS[$i]}"
	done
	OWNED_PIDS=()
}

# wait_until TRIES DELAY CMD... runs CMD until it succeeds, at most TRIES
# times DELAY seconds apart.
wait_until() {
	local tries=$1 delay=$2 i
	shift 2
	for ((i = 0; i < tries; i++)); do
		"$@" && return 0
		sleep "$delay"
	done
	return 1
}

# udp_bound IP PORT: something listens on that UDP address.
udp_bound() { ss -Hlun "src $1:$2" 2>/dev/null | grep -q .; }
tcp_bound() { ss -Hltn "src $1:$2" 2>/dev/null | grep -q .; }

# wait_pid_timeout PID SECONDS: waits for a child; kills it after SECONDS.
# Returns its exit status (or 124 when it had to be killed).
wait_pid_timeout() {
	local pid=$1 secs=$2 i rc
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		stop_pid "$pid"
		disown_pid "$pid"
		return 124
	fi
	wait "$pid"
	rc=$?
	disown_pid "$pid"
	return "$rc"
}

# render_cfg TEMPLATE OUT KEY=VALUE...: fills @KEY@ placeholders.
render_cfg() {
	local tmpl=$1 out=$2 kv k v
	shift 2
	cp "$tmpl" "$out"
	for kv in "$@"; do
		k=${kv%%=*}
		v=${kv#*=}
		v=${v//\\/\\\\}
		v=${v//|/\\|}
		v=${v//&/\\&}
		sed -i "s|@${k}@|${v}|g" "$out"
	done
	if grep -q '@[A-Z_]*@' "$out"; then
		die "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out" | sort -u | tr '\n' ' ')"
	fi
}

# start_kamailio NAME CFG IP PORT LOG [extra kamailio args]: starts
# Kamailio in the foreground (-DD, logs on stderr -E), records its PID in
# the variable KPID_<NAME>, and waits until it listens.
start_kamailio() {
	local name=$1 cfg=$2 ip=$3 port=$4 logf=$5 rundir
	shift 5
	rundir=$(dirname "$logf")/run-$name
	mkdir -p "$rundir"
	"$KAMAILIO" -c -f "$cfg" -L "$(kamailio_mpath)" "$@" >"$logf.check" 2>&1 ||
		{ tail -n 30 "$logf.check" >&2; die "kamailio $name: config check failed ($cfg)"; }
	"$KAMAILIO" -f "$cfg" -L "$(kamailio_mpath)" -DD -E -Y "$rundir" -P "$rundir/kamailio.pid" \
		-m "${KAM_SHM:-64}" -M 8 "$@" >"$logf" 2>&1 &
	local pid=$!
	own "$pid"
	printf -v "KPID_$name" '%s' "$pid"
	if ! wait_until 50 0.2 udp_bound "$ip" "$port"; then
		tail -n 30 "$logf" >&2
		die "kamailio $name did not listen on $ip:$port"
	fi
	kill -0 "$pid" 2>/dev/null || die "kamailio $name exited: $(tail -n 5 "$logf")"
	log "kamailio $name up (pid $pid, $ip:$port)"
}

# stop_kamailio NAME: stops the Kamailio started as NAME.
stop_kamailio() {
	local var="KPID_$1"
	[[ -n "${!var:-}" ]] || return 0
	stop_pid "${!var}"
	disown_pid "${!var}"
	printf -v "$var" '%s' ""
}

# proc_cpu_ticks PID...: utime+stime of the processes (and, for a
# Kamailio main process, of its children), in clock ticks.
proc_cpu_ticks() {
	local total=0 pid p f
	local -a a
	for pid in "$@"; do
		for p in "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null); do
			[[ -r /proc/$p/stat ]] || continue
			f=$(sed 's/^.*) //' "/proc/$p/stat")
			# after the command: state is a[0], utime a[11], stime a[12]
			read -ra a <<<"$f"
			total=$((total + a[11] + a[12]))
		done
	done
	echo "$total"
}
