// Package bench is the harness behind `make bench`: it builds a three-
// namespace topology (generator, director, real servers), runs xvs (XDP
// and TC mode), nftables DNAT, plain forwarding and a minimal static XDP
// rewriter (bench.c) in turn on it, and reports established-flow packet
// rate, new-connection rate and latency, the first-packet path under a
// flood, one TCP flow's throughput, the connection table's memory and
// expiry cost, merged with the BPF and scheduler Go benchmarks.
//
// The comparison itself is TestCompare, which only runs when asked
// (-compare); scripts/bench.sh drives it.
package bench
