#!/usr/bin/env bash
# make bench: the datapath's hit path (BPF_PROG_TEST_RUN) next to a trivial
# XDP program, and the schedulers' cost per decision.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench-$(date +%Y%m%d-%H%M%S).txt}
{
	echo "# xvs benchmarks $(date -u +%FT%TZ) on $(uname -r), $(nproc) CPUs"
	go test -run '^$' -bench . -benchmem ./bpf/ ./sched/
} | tee "$out"
echo "raw figures written to $out"
