package bpf

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"

	"xvs/testutil"
)

// passProgram is the baseline: an XDP program that only returns XDP_PASS.
func passProgram(b *testing.B) *ebpf.Program {
	b.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS
			asm.Return(),
		},
		License: "GPL",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// benchRun returns the mean time of one run of prog on in, as timed by
// the kernel, for runs of repeat back-to-back executions (BPF_PROG_TEST_RUN
// with that repeat count: the program runs again on the frame it just
// rewrote). Without a context the ingress device is the namespace's
// loopback; fib lookups from it route like from any device.
func (e *env) benchRun(b *testing.B, prog *ebpf.Program, in []byte, want uint32, repeat int) float64 {
	b.Helper()
	var total time.Duration
	calls := max(b.N/repeat, 1)
	err := e.ns.do(func() error {
		for i := 0; i < calls; i++ {
			ret, d, err := prog.Benchmark(in, repeat, nil)
			if err != nil {
				return err
			}
			if ret != want {
				return fmt.Errorf("verdict %d, want %d", ret, want)
			}
			total += d
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return float64(total.Nanoseconds()) / float64(calls)
}

// pingPong is the number of back-to-back runs of one benchmark call; the
// frame starts with TTL 255 and loses one per run.
const pingPong = 200

// benchHit measures hits of an IPv4 TCP conn. To keep the frame a hit run
// after run, a second conn maps the rewritten frame back: forward,
// cli -> VIP becomes cli -> RS, which the conn "cli -> RS, real server VIP"
// turns back into cli -> VIP (a route to the VIP via the client makes its
// fib lookup succeed too); reverse, RS -> cli becomes VIP -> cli, which the
// second conn's server side turns back into RS -> cli. Every run is then a
// full hit: lookup, state, stats, rewrite, fib, redirect. The cold figure
// runs each hit alone, with the caches a syscall leaves.
func benchHit(b *testing.B, reverse bool) {
	e := newEnv(b)
	setupConns(e)
	cport := cportOf(0, 0)
	cli, vip, rs := ap(cli4, cport), ap(vip4, vport), ap(rs4, rport)
	// Its own service (its "VIP" is rs) and dest (the address vip),
	// available like setupConns' dests.
	e.putDest(destRS+2*v6IDs, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	e.addConn(cli, rs, vip, testutil.ProtoTCP, svcTCPID+2*v6IDs, destRS+2*v6IDs)
	if err := e.ns.do(func() error {
		_, dst, _ := net.ParseCIDR("202.103.106.5/32")
		return netlink.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP("10.0.0.2")})
	}); err != nil {
		b.Fatal(err)
	}
	f := frame(cli, vip, testutil.ProtoTCP, testutil.TCPAck|testutil.TCPPsh, macCli, macExt)
	if reverse {
		f = frame(rs, cli, testutil.ProtoTCP, testutil.TCPAck|testutil.TCPPsh, macRS, macInt)
	}
	f.TTL = 255
	in := f.Bytes()
	pass := passProgram(b)
	e.resetReasons()
	b.ResetTimer()
	hit := e.benchRun(b, e.objs.XvsXdp, in, 4, pingPong) // XDP_REDIRECT
	b.StopTimer()
	want := XvsReasonREASON_FWD_IN
	if reverse {
		want = XvsReasonREASON_FWD_OUT
	}
	// At least runs: a test run interrupted by a signal is retried, and
	// the kernel counts the runs it did before the interruption.
	if r, runs := e.reasons(), uint64(max(b.N/pingPong, 1)*pingPong); r[want] < runs || len(r) != 1 {
		b.Fatalf("reasons %v after %d runs, want all %v", r, runs, want)
	}
	// The conns were installed half-open; the first run established
	// them, so every later one measured the main pair's hit path.
	for _, k := range []XvsConnKey{connKey(cli, vip, testutil.ProtoTCP), connKey(cli, rs, testutil.ProtoTCP)} {
		var c XvsConn
		if err := e.objs.XvsConns.Lookup(k, &c); err != nil {
			b.Fatalf("bench conn not in the main pair: %v", err)
		}
	}
	b.StartTimer()
	base := e.benchRun(b, pass, in, 2, pingPong)
	cold := e.benchRun(b, e.objs.XvsXdp, in, 4, 1)
	coldBase := e.benchRun(b, pass, in, 2, 1)
	b.ReportMetric(hit, "ns/op")
	b.ReportMetric(base, "pass-ns/op")
	b.ReportMetric(hit/base, "x-pass")
	b.ReportMetric(cold, "cold-ns/op")
	b.ReportMetric(coldBase, "cold-pass-ns/op")
}

// BenchmarkXDPForwardHit: client -> VIP packet of an established IPv4 TCP
// conn, rewritten and redirected, next to an XDP_PASS-only program.
func BenchmarkXDPForwardHit(b *testing.B) { benchHit(b, false) }

// BenchmarkXDPReverseHit: the real server's reply, rewritten to the VIP.
func BenchmarkXDPReverseHit(b *testing.B) { benchHit(b, true) }

// newFlowFrames is n UDP frames to the VIP, each of another flow.
func newFlowFrames(n int) [][]byte {
	vip := ap(vip4, vport)
	frames := make([][]byte, n)
	for i := range frames {
		cli := ap(netip.AddrFrom4([4]byte{10, 0, 1 + byte(i/60000), 2}), uint16(2000+i%60000))
		frames[i] = frame(cli, vip, testutil.ProtoUDP, 0, macCli, macExt).Bytes()
	}
	return frames
}

// BenchmarkXDPRingNew: a first packet of a service with a ring, each of
// another flow (UDP, one run per syscall, so cold like the cold hit
// figure): the pick, the install of both keys into the new pair, the
// dest counter, then the hit path's rewrite and redirect. Capacity of the
// datapath's own scheduling, without the generator and the veth that
// bound make bench's end-to-end new-flow figure.
func BenchmarkXDPRingNew(b *testing.B) {
	n := min(b.N, 200000)
	e := newEnvSized(b, map[string]uint32{"xvs_conns_new": uint32(n + 4096), "xvs_rconns_new": uint32(n + 4096)})
	setupConns(e)
	e.putRing(svcUDPID, []ringEnt{{destRS, rport}, {destRS, rport + 1}})
	frames := newFlowFrames(n)
	e.events()
	b.ResetTimer()
	mean := e.coldRuns(b, e.objs.XvsXdp, frames, 4) // XDP_REDIRECT
	b.StopTimer()
	if ev := e.events(); ev[XvsEventEVENT_SCHED_NEW] != uint64(len(frames)) {
		b.Fatalf("events %v after %d new flows", ev, len(frames))
	}
	b.ReportMetric(mean, "ns/op")
}

// coldRuns runs prog once per syscall on each frame, each expecting
// verdict want, and returns the mean time of one run as the kernel timed
// it.
func (e *env) coldRuns(b *testing.B, prog *ebpf.Program, frames [][]byte, want uint32) float64 {
	b.Helper()
	var total time.Duration
	err := e.ns.do(func() error {
		for i := range frames {
			ret, d, err := prog.Benchmark(frames[i], 1, nil)
			if err != nil {
				return err
			}
			if ret != want {
				return fmt.Errorf("frame %d: verdict %d, want %d", i, ret, want)
			}
			total += d
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return float64(total.Nanoseconds()) / float64(len(frames))
}

// BenchmarkXDPFloodDrop: a first packet of a flood, over the global
// first-packet budget, each of another flow (UDP, one run per syscall,
// cold like the cold hit figure): the misses in both pairs of full-size
// tables, the service, the budget, the drop. What a flood frame costs
// the director next to an established one (BenchmarkXDPForwardHit's
// cold-ns/op).
func BenchmarkXDPFloodDrop(b *testing.B) {
	e := newEnv(b)
	setupConns(e)
	global := e.objs.XvsBudget.MaxEntries() - 1 // XVS_BUDGET_GLOBAL
	e.setBudget(global, 1, 1, 0, 1<<62)         // no token, none before long
	n := min(b.N, 200000)
	frames := newFlowFrames(n)
	pass := passProgram(b)
	e.resetReasons()
	b.ResetTimer()
	drop := e.coldRuns(b, e.objs.XvsXdp, frames, 1) // XDP_DROP
	b.StopTimer()
	if r := e.reasons(); r[XvsReasonREASON_DROP_PUNT_BUDGET] != uint64(n) {
		b.Fatalf("reasons %v after %d flood frames, want all dropped for the budget", r, n)
	}
	b.ReportMetric(drop, "ns/op")
	b.ReportMetric(e.coldRuns(b, pass, frames, 2), "cold-pass-ns/op") // XDP_PASS
}

// churnedHitFlows is how many established flows BenchmarkXDPChurnedHit
// cycles through: make bench's established runs use 4096.
const churnedHitFlows = 4096

// BenchmarkXDPChurnedHit: packets of churnedHitFlows established UDP
// flows, round robin, one run per syscall, in a main pair of 1M that has
// churned: filled and emptied once before the flows' conns were
// installed, so that their entries come from a free list in the order of
// the earlier frees, spread over the whole table, as after a burst of
// connections expired. Reported with the flow cache answering (ns/op)
// and with every copy void (full-ns/op, xvs_flow_void set in the far
// future: each packet looks its conn up). Also fresh-full-ns/op: the
// same flows looked up in a table that never churned.
func BenchmarkXDPChurnedHit(b *testing.B) {
	const size = 1 << 20
	e := newEnvSized(b, map[string]uint32{"xvs_conns": size, "xvs_rconns": size})
	setupConns(e)
	frames := newFlowFrames(churnedHitFlows)
	rounds := max(b.N/churnedHitFlows, 2)
	// keys are the frames' conns (newFlowFrames' clients to the VIP).
	keys := make([]XvsConnKey, churnedHitFlows)
	for i := range keys {
		cli := ap(netip.AddrFrom4([4]byte{10, 0, 1 + byte(i/60000), 2}), uint16(2000+i%60000))
		keys[i] = connKey(cli, ap(vip4, vport), testutil.ProtoUDP)
	}
	install := func() {
		b.Helper()
		vals := make([]XvsConn, len(keys))
		for i := range vals {
			vals[i] = XvsConn{Dport: be16(rport), SvcId: svcUDPID, DestId: destRS, LastSeen: monoNow(b)}
		}
		if _, err := e.objs.XvsConns.BatchUpdate(keys, vals, nil); err != nil {
			b.Fatal(err)
		}
	}
	run := func(void uint64) float64 {
		b.Helper()
		if err := e.objs.XvsFlowVoid.Put(uint32(0), void); err != nil {
			b.Fatal(err)
		}
		var sum float64
		for range rounds {
			sum += e.coldRuns(b, e.objs.XvsXdp, frames, 4) // XDP_REDIRECT
		}
		return sum / float64(rounds)
	}
	install()
	fresh := run(^uint64(0))
	// Churn: remove the flows' conns, fill the table with other keys,
	// empty it in another order, then install the flows' conns again.
	if _, err := e.objs.XvsConns.BatchDelete(keys, nil); err != nil {
		b.Fatal(err)
	}
	other := make([]XvsConnKey, size-churnedHitFlows)
	vals := make([]XvsConn, len(other))
	for i := range other {
		other[i] = XvsConnKey{Saddr: [16]uint8{192, 0, byte(i >> 16), byte(i >> 8)}, Daddr: addr16(vip4),
			Sport: uint16(i), Dport: be16(vport), Proto: testutil.ProtoUDP, Family: family(vip4)}
	}
	if _, err := e.objs.XvsConns.BatchUpdate(other, vals, nil); err != nil {
		b.Fatal(err)
	}
	rand.Shuffle(len(other), func(i, j int) { other[i], other[j] = other[j], other[i] })
	if _, err := e.objs.XvsConns.BatchDelete(other, nil); err != nil {
		b.Fatal(err)
	}
	install()
	b.ResetTimer()
	cached := run(0)
	b.StopTimer()
	full := run(^uint64(0))
	b.ReportMetric(cached, "ns/op")
	b.ReportMetric(full, "full-ns/op")
	b.ReportMetric(fresh, "fresh-full-ns/op")
}
