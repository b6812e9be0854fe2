#!/usr/bin/env bash
# demo.sh: the seed scenario (an LVS-NAT walkthrough) end to end, as root,
# in network namespaces on this machine:
#
#   client 202.103.106.100 ── [director 202.103.106.5 (VIP) | 172.16.0.1] ── switch ── node1 172.16.0.2
#                                 xvsd on both interfaces                       └──── node2 172.16.0.3
#
# Builds xvs into ./bin, starts real HTTP servers on node1/node2 (python3's
# http.server, part of Debian's python3 package), starts xvsd, configures it
# with the operator's xvsadm commands, sends four requests to the VIP
# (node1, node2, node1, node2), shows the listing and statistics, saves,
# clears and restores the rules, and removes everything it created.
#
# Environment: XVS_MODE=tc|xdp|xdpgeneric|auto (default tc).
set -euo pipefail

MODE=${XVS_MODE:-tc}
VIP=202.103.106.5
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin
P=xvsdemo-$$
CLI=$P-client DIR=$P-director SW=$P-switch N1=$P-node1 N2=$P-node2
TAP=xvsdemo$$
TAP=${TAP:0:15}
TMP=
XVSD_PID=
SERVER_PIDS=()
CREATED_NS=()
BPFFS_MOUNTED=
STEP=

step() {
	STEP=$*
	printf '\n==> %s\n' "$*"
}

# run prints a command the way an operator would type it, then runs it;
# runq also hides the command's own output.
run() {
	printf '+ %s\n' "$*"
	"$@"
}
runq() {
	printf '+ %s\n' "$*"
	"$@" >/dev/null
}

# xvsadm is the CLI from ./bin, talking to this demo's daemon (XVS_SOCKET).
xvsadm() { "$BIN/xvsadm" "$@"; }

sysctl_in() { # NS KEY VALUE, without needing procps' sysctl
	ip netns exec "$1" sh -c "echo $3 > /proc/sys/${2//.//}"
}

cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if ((rc != 0)); then
		printf '\n!!! step failed: %s (exit %d)\n' "$STEP" "$rc" >&2
		if [[ -n $TMP && -f $TMP/xvsd.log ]]; then
			echo '--- xvsd log (last 40 lines) ---' >&2
			tail -n 40 "$TMP/xvsd.log" >&2
		fi
	fi
	printf '\n==> clean up\n'
	if [[ -n $XVSD_PID ]] && kill -0 "$XVSD_PID" 2>/dev/null; then
		echo "+ kill $XVSD_PID (xvsd)"
		kill -TERM "$XVSD_PID"
		for _ in $(seq 50); do kill -0 "$XVSD_PID" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$XVSD_PID" 2>/dev/null; then
			echo "xvsd still running 5s after SIGTERM; sending SIGKILL" >&2
			kill -KILL "$XVSD_PID"
		fi
		wait "$XVSD_PID" 2>/dev/null
	fi
	if [[ -n $BPFFS_MOUNTED && -x $BIN/xvsd ]]; then
		printf '+ xvsd down --bpffs %s --tap %s --state %s\n' "$TMP/bpffs" "$TAP" "$TMP/state.json"
		ip netns exec "$DIR" "$BIN/xvsd" down --bpffs "$TMP/bpffs" --tap "$TAP" --state "$TMP/state.json" ||
			echo "xvsd down failed" >&2
	fi
	for pid in "${SERVER_PIDS[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	for ns in "${CREATED_NS[@]}"; do
		ip netns del "$ns" 2>/dev/null && echo "+ ip netns del $ns"
	done
	[[ -n $BPFFS_MOUNTED ]] && grep -qs " $TMP/bpffs " /proc/mounts && umount "$TMP/bpffs"
	[[ -n $TMP ]] && rm -rf "$TMP"
	if ((rc == 0)); then
		printf '\ndemo finished: all steps passed\n'
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "check requirements"
if [[ $(id -u) != 0 ]]; then
	echo "demo.sh must run as root (namespaces, BPF)" >&2
	exit 1
fi
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v ethtool >/dev/null || need+=(ethtool)
command -v mount >/dev/null || need+=(mount)
if ((${#need[@]})); then
	echo "installing ${need[*]} with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ! command -v go >/dev/null; then
	echo "Go 1.26 is needed to build xvs (https://go.dev/dl); Debian's golang-go is too old" >&2
	exit 1
fi
TMP=$(mktemp -d /tmp/xvsdemo.XXXXXX)
export XVS_SOCKET=$TMP/xvsd.sock

step "build xvsd and xvsadm into ./bin"
(cd "$ROOT" && run go build -o bin/ ./cmd/xvsd ./cmd/xvsadm)

step "create the seed topology in namespaces $P-*"
for ns in "$CLI" "$DIR" "$SW" "$N1" "$N2"; do
	run ip netns add "$ns"
	CREATED_NS+=("$ns")
	ip netns exec "$ns" ip link set lo up
	# IPv4 only: no IPv6 autoconf chatter reaching the datapath.
	sysctl_in "$ns" net.ipv6.conf.all.disable_ipv6 1
	sysctl_in "$ns" net.ipv6.conf.default.disable_ipv6 1
done
sysctl_in "$DIR" net.ipv4.ip_forward 1
sysctl_in "$DIR" net.ipv4.conf.all.rp_filter 0
sysctl_in "$DIR" net.ipv4.conf.default.rp_filter 0
run ip link add eth0 netns "$CLI" type veth peer name ext0 netns "$DIR"
run ip link add int0 netns "$DIR" type veth peer name dir0 netns "$SW"
run ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set dir0 master br0
for n in 1 2; do
	ns=$P-node$n
	run ip link add eth0 netns "$ns" type veth peer name node$n netns "$SW"
	ip -n "$SW" link set node$n master br0
	ip -n "$SW" link set node$n up
	ip -n "$ns" link set eth0 up
	run ip -n "$ns" addr add 172.16.0.$((n + 1))/24 dev eth0
	# LVS-NAT: the real servers' gateway is the director's internal address.
	run ip -n "$ns" route add default via 172.16.0.1
done
ip -n "$SW" link set dir0 up
ip -n "$SW" link set br0 up
ip -n "$CLI" link set eth0 up
ip -n "$DIR" link set ext0 up
ip -n "$DIR" link set int0 up
run ip -n "$CLI" addr add 202.103.106.100/24 dev eth0
run ip -n "$DIR" addr add $VIP/24 dev ext0
run ip -n "$DIR" addr add 172.16.0.1/24 dev int0
case $MODE in
xdp | xdpgeneric | auto)
	# XDP rewrites need complete checksums from the endpoints, and the veth
	# peers of redirect targets need GRO on to accept redirected frames.
	runq ip netns exec "$CLI" ethtool -K eth0 tx off gro on
	for ns in "$N1" "$N2"; do runq ip netns exec "$ns" ethtool -K eth0 tx off; done
	runq ip netns exec "$SW" ethtool -K dir0 gro on
	;;
esac

step "start the real servers (python3 -m http.server on port 80)"
for n in 1 2; do
	ns=$P-node$n
	mkdir -p "$TMP/www$n"
	echo "this is real server node$n" >"$TMP/www$n/index.html"
	printf '+ ip netns exec %s python3 -m http.server 80 --bind 172.16.0.%d --directory %s &\n' "$ns" $((n + 1)) "$TMP/www$n"
	ip netns exec "$ns" python3 -m http.server 80 --bind 172.16.0.$((n + 1)) --directory "$TMP/www$n" >"$TMP/http$n.log" 2>&1 &
	SERVER_PIDS+=($!)
done
for n in 1 2; do
	ok=
	for _ in $(seq 50); do
		if ip netns exec "$DIR" curl -s --max-time 1 -o /dev/null http://172.16.0.$((n + 1))/; then ok=1; break; fi
		sleep 0.1
	done
	[[ -n $ok ]] || { echo "node$n's HTTP server did not come up" >&2; exit 1; }
	echo "node$n answers on 172.16.0.$((n + 1)):80 (plain routing from the director)"
done

step "start xvsd on both director interfaces (mode $MODE)"
mkdir "$TMP/bpffs"
# ip netns exec remounts /sys, so xvsd pins on a bpffs of its own.
mount -t bpf bpf "$TMP/bpffs"
BPFFS_MOUNTED=1
# Socket, pins, punt device and saved table are all private to this demo,
# so that it never touches an xvsd already running on the machine.
printf '+ ip netns exec %s xvsd --iface ext0 --iface int0 --mode %s --socket %s --bpffs %s --tap %s --state %s &\n' \
	"$DIR" "$MODE" "$XVS_SOCKET" "$TMP/bpffs" "$TAP" "$TMP/state.json"
ip netns exec "$DIR" "$BIN/xvsd" --iface ext0 --iface int0 --mode "$MODE" --socket "$XVS_SOCKET" \
	--bpffs "$TMP/bpffs" --tap "$TAP" --state "$TMP/state.json" >"$TMP/xvsd.log" 2>&1 &
XVSD_PID=$!
ready=
for _ in $(seq 150); do
	kill -0 "$XVSD_PID" 2>/dev/null || { echo "xvsd exited during start-up" >&2; exit 1; }
	if xvsadm -L -n >/dev/null 2>&1; then ready=1; break; fi
	sleep 0.1
done
[[ -n $ready ]] || { echo "xvsd did not answer within 15s" >&2; exit 1; }
echo "xvsd is running (pid $XVSD_PID); xvsadm talks to it through XVS_SOCKET=$XVS_SOCKET"

step "configure the virtual service as in the seed document"
run xvsadm -A -t $VIP:80 -s rr
run xvsadm -a -t $VIP:80 -r 172.16.0.2:80 -m
run xvsadm -a -t $VIP:80 -r 172.16.0.3:80 -m

step "send four HTTP requests from the client to the VIP"
answers=()
for i in 1 2 3 4; do
	printf '+ ip netns exec %s curl -s http://%s/\n' "$CLI" "$VIP"
	a=$(ip netns exec "$CLI" curl -s --max-time 5 http://$VIP/)
	echo "$a"
	answers+=("$a")
done
want=("this is real server node1" "this is real server node2" "this is real server node1" "this is real server node2")
if [[ ${answers[*]} != "${want[*]}" ]]; then
	echo "expected node1, node2, node1, node2" >&2
	exit 1
fi
echo "round robin: node1, node2, node1, node2 as expected"

step "list the service and its statistics"
run xvsadm -L -n
run xvsadm -L -n --stats

step "save the rules, clear them, restore them"
printf '+ xvsadm -S -n > %s\n' "$TMP/rules.save"
xvsadm -S -n >"$TMP/rules.save"
cat "$TMP/rules.save"
run xvsadm -C
run xvsadm -L -n
printf '+ xvsadm -R < %s\n' "$TMP/rules.save"
xvsadm -R <"$TMP/rules.save"
run xvsadm -L -n
if ! diff -u "$TMP/rules.save" <(xvsadm -S -n); then
	echo "the restored rules differ from the saved ones" >&2
	exit 1
fi
echo "restored rules are identical to the saved ones"

step "done"
