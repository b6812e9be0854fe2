#!/usr/bin/env bash
# make bench: xvs against nftables DNAT, plain forwarding and a static XDP
# rewriter on one namespace topology, merged with the BPF hit-path and
# scheduler Go benchmarks. Needs root. Prints one table (Markdown) and
# writes the raw figures to a file it names. Bounded to 10 minutes.
#
# Environment: BENCH_DIR (where results go, default /tmp/xvs-bench-TIME),
# BENCH_REPS (default 3), BENCH_ONLY (balancers, e.g. "nft,xvs"), BENCH_METRICS
# (measurements, e.g. "udp,newflow"; default all).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) != 0 ]]; then
	echo "bench: needs root (namespaces, BPF)" >&2
	exit 1
fi

need=()
command -v iperf3 >/dev/null || need+=(iperf3)
command -v nft >/dev/null || need+=(nftables)
command -v ethtool >/dev/null || need+=(ethtool)
command -v ss >/dev/null || need+=(iproute2)
if ((${#need[@]})); then
	echo "bench: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

stamp=$(date -u +%Y%m%d-%H%M%S)
out=${BENCH_DIR:-/tmp/xvs-bench-$stamp}
mkdir -p "$out"
work=$(mktemp -d /tmp/xvsb-work.XXXXXX)
prefix="xvsb-$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')"
pgid=""

cleanup() {
	# The comparison runs in its own process group: end it (xvsd, iperf3
	# and the test binary) by that id, then remove what it leaves.
	if [[ -n $pgid ]] && kill -0 -- "-$pgid" 2>/dev/null; then
		kill -TERM -- "-$pgid" 2>/dev/null || true
		sleep 2
		kill -KILL -- "-$pgid" 2>/dev/null || true
	fi
	for ns in $(ip netns list 2>/dev/null | awk -v p="$prefix-" 'index($1, p) == 1 {print $1}'); do
		ip netns del "$ns" 2>/dev/null || true
	done
	awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | while read -r m; do
		umount "$m" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "bench: building xvsd, xvsadm and the harness"
go build -o "$work/bin/" ./cmd/xvsd ./cmd/xvsadm
go test -c -o "$work/bench.test" ./bench/

echo "bench: go test -bench ./bpf ./sched"
go test -run '^$' -bench . -benchmem ./bpf/ >"$out/gobench.txt" 2>&1 || echo "bench: ./bpf benchmarks failed (see $out/gobench.txt)"
go test -run '^$' -bench . -benchtime 200ms -benchmem ./sched/ >>"$out/gobench.txt" 2>&1 || echo "bench: ./sched benchmarks failed (see $out/gobench.txt)"

echo "bench: comparison (forward, nft, xvs tc, static ref, xvs xdp)"
args=(-test.run '^TestCompare$' -test.v -test.timeout 9m30s -compare
	-xvsbin "$work/bin" -gobench "$out/gobench.txt" -out "$out/raw.tsv" -table "$out/table.md"
	-prefix "$prefix" -workdir "$work" -reps "${BENCH_REPS:-3}")
[[ -n ${BENCH_ONLY:-} ]] && args+=(-only "$BENCH_ONLY")
[[ -n ${BENCH_METRICS:-} ]] && args+=(-metrics "$BENCH_METRICS")
set +e
setsid "$work/bench.test" "${args[@]}" >"$out/log.txt" 2>&1 &
pid=$!
pgid=$pid
tail -f --pid="$pid" "$out/log.txt" | grep --line-buffered -E '^\s+compare_test|^\s+run\.go|^[|#]|^note:|^(xvs benchmarks|machine|balancers|raw figures)|FAIL|panic' &
wait "$pid"
rc=$?
set -e
pgid=""
sleep 0.5
if [[ $rc != 0 ]]; then
	echo "bench: comparison failed (exit $rc), log: $out/log.txt" >&2
	exit "$rc"
fi
echo "bench: table in $out/table.md, log in $out/log.txt, Go benchmarks in $out/gobench.txt"
echo "bench: raw figures written to $out/raw.tsv"
