package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"xvs/ctl"
	"xvs/testutil"
)

// Config is what one comparison run does.
type Config struct {
	Bin          string        // directory with xvsd and xvsadm; empty: no xvs columns
	Balancers    []string      // names to run, in order (default: forward nft xvs-tc ref xvs)
	Reps         int           // repetitions of each measurement
	PPSTime      time.Duration // per repetition, established and new-flow floods
	ConnTime     time.Duration // per repetition, new-connection rate
	IperfTime    time.Duration // per repetition, iperf3
	Flows        int           // established flows
	NewFlowRate  float64       // offered new flows per second (paced run)
	Workers      int           // concurrent TCP clients
	ConnEntries  uint32        // connection-table size for the scale figure (0: skip)
	GoBench      string        // `go test -bench` output of ./bpf and ./sched to merge (optional)
	Prefix       string        // namespace name prefix (default: a fresh "xvsb-XXXXXX")
	WorkDir      string        // where xvsd's socket, bpffs and log go (default: the system temp dir)
	Metrics      []string      // measurements to run: conn, iperf, udp, flood, newflow (default: all)
	FloodPinXvsd bool          // flood run: xvsd on the generator's CPU, not the director's
	FloodBudget  uint64        // flood run: xvsd's budget (default FirstPacketBudget); the flood stays 5x FirstPacketBudget
	// GenPPS paces the generator of the established and flood runs,
	// frames/s (0: unpaced). Above what the fastest balancer forwards,
	// but not by several times: an unpaced generator's failed pushes
	// into the director's full receive ring slow the director that
	// drains it, by an amount that changed 2x from one xvsd start to the
	// next (BENCHMARKS.md, session 6).
	GenPPS uint64
	// XvsConnMax is xvsd's --conn-max (0: its default, 1M).
	XvsConnMax uint32
	// UDPWait is a pause before the established runs, after the
	// connection runs: long enough (135 s) and their TIME_WAIT conns
	// expire first, which leaves the established flows' conns spread
	// over a churned table (BENCHMARKS.md, session 7).
	UDPWait time.Duration
}

// want reports whether measurement m is configured.
func (c Config) want(m string) bool {
	return len(c.Metrics) == 0 || slices.Contains(c.Metrics, m)
}

// DefaultConfig keeps a whole run under ten minutes on two CPUs.
func DefaultConfig() Config {
	return Config{
		// ref right before xvs: the machine drifts over minutes, and
		// xvs/ref is the ratio the established target is about.
		Balancers:   []string{"forward", "nft", "xvs-tc", "ref", "xvs"},
		Reps:        3,
		PPSTime:     2 * time.Second,
		ConnTime:    3 * time.Second,
		IperfTime:   3 * time.Second,
		Flows:       4096,
		NewFlowRate: 250000,
		Workers:     8,
		ConnEntries: 1 << 20,
		GenPPS:      2500000,
	}
}

// Rows is the summary table.
var Rows = []Row{
	{Label: "UDP 64 B, established flows, Mpps at the real servers (xvs XDP)", Key: "udp_est_pps", XVS: "xvs", Scale: 1e-6, Prec: 3},
	{Label: "same, xvs in TC mode", Key: "udp_est_pps", XVS: "xvs-tc", Scale: 1e-6, Prec: 3},
	{Label: "  with a first-packet flood mixed in (1 in 50 frames): Mpps received (xvs XDP)", Key: "flood_est_pps", XVS: "xvs", Scale: 1e-6, Prec: 3},
	{Label: "  Mpps the established generator sent, no flood", Key: "udp_est_sent_pps", XVS: "xvs", Scale: 1e-6, Prec: 3},
	{Label: "  the flood, first packets/s sent (1 in 50 of the generator's frames)", Key: "flood_est_flood_pps", XVS: "xvs", Prec: 0, NoRatio: true},
	{Label: "  the flood, first packets/s reaching the director", Key: "flood_est_flood_arrived", XVS: "xvs", Prec: 0, NoRatio: true},
	{Label: "  xvsd's first-packet budget during the flood, /s", Key: "flood_est_budget", XVS: "xvs", Prec: 0, NoRatio: true},
	{Label: "  the same traffic just before, without the flood: Mpps received", Key: "flood_est_base_pps", XVS: "xvs", Scale: 1e-6, Prec: 3},
	{Label: "  established rate kept under the flood (with / just before without)", Key: "flood_est_kept", XVS: "xvs", Prec: 2, NoRatio: true},
	{Label: "UDP 64 B, flows the real servers never answer (xvs: conns left half-open), Mpps (xvs XDP)", Key: "udp_oneway_pps", XVS: "xvs", Scale: 1e-6, Prec: 3},
	{Label: "same, xvs in TC mode", Key: "udp_oneway_pps", XVS: "xvs-tc", Scale: 1e-6, Prec: 3},
	{Label: "new TCP connections/s, Connection: close (xvs XDP)", Key: "conn_rate", XVS: "xvs", Prec: 0},
	{Label: "  p50 latency, µs", Key: "conn_p50_us", XVS: "xvs", Prec: 0},
	{Label: "  p99 latency, µs", Key: "conn_p99_us", XVS: "xvs", Prec: 0},
	{Label: "  p50 time to connect (SYN to SYN-ACK), µs", Key: "conn_connect_p50_us", XVS: "xvs", Prec: 0},
	{Label: "new TCP connections/s (xvs TC)", Key: "conn_rate", XVS: "xvs-tc", Prec: 0},
	{Label: "  p50 latency, µs", Key: "conn_p50_us", XVS: "xvs-tc", Prec: 0},
	{Label: "  p99 latency, µs", Key: "conn_p99_us", XVS: "xvs-tc", Prec: 0},
	{Label: "  p50 time to connect (SYN to SYN-ACK), µs", Key: "conn_connect_p50_us", XVS: "xvs-tc", Prec: 0},
	{Label: "new TCP connections/s, every balancer's endpoints without TX checksum offload, as XDP needs on veth (xvs XDP)", Key: "conn_nooff_rate", XVS: "xvs", Prec: 0},
	{Label: "  p99 latency, µs", Key: "conn_nooff_p99_us", XVS: "xvs", Prec: 0},
	{Label: "same, xvs TC", Key: "conn_nooff_rate", XVS: "xvs-tc", Prec: 0},
	{Label: "new UDP flows, paced (250k/s asked): forwarded/s (xvs XDP)", Key: "newflow_fwd", XVS: "xvs", Prec: 0},
	{Label: "  reached the director/s", Key: "newflow_offered", XVS: "xvs", Prec: 0},
	{Label: "  connections created/s", Key: "newflow_sched", XVS: "xvs", Prec: 0},
	{Label: "  first packets lost/s", Key: "newflow_lost", XVS: "xvs", Prec: 0, NoRatio: true},
	{Label: "  xvsd CPU µs per connection created", Key: "newflow_cpu_us_per_conn", XVS: "xvs", Prec: 2},
	{Label: "  the director's CPU µs per connection created: xvsd and its receive thread (XDP runs there)", Key: "newflow_dir_cpu_us_per_conn", XVS: "xvs", Prec: 2},
	{Label: "  connections/s two CPUs of the director would create at that cost (2 s / the above)", Key: "newflow_dir_capacity", XVS: "xvs", Prec: 0},
	{Label: "same, xvs TC: forwarded/s", Key: "newflow_fwd", XVS: "xvs-tc", Prec: 0},
	{Label: "  connections created/s", Key: "newflow_sched", XVS: "xvs-tc", Prec: 0},
	{Label: "  first packets lost/s", Key: "newflow_lost", XVS: "xvs-tc", Prec: 0, NoRatio: true},
	{Label: "same through xvsd's 2 workers (wlc, no ring), paced: conns created/s (xvs XDP)", Key: "newflow_punt_sched", XVS: "xvs", Prec: 0, NoRatio: true},
	{Label: "  first packets lost/s", Key: "newflow_punt_lost", XVS: "xvs", Prec: 0, NoRatio: true},
	{Label: "  xvsd CPU µs per connection created", Key: "newflow_punt_cpu_us_per_conn", XVS: "xvs", Prec: 2, NoRatio: true},
	{Label: "same, xvs TC: conns created/s", Key: "newflow_punt_sched", XVS: "xvs-tc", Prec: 0, NoRatio: true},
	{Label: "  first packets lost/s", Key: "newflow_punt_lost", XVS: "xvs-tc", Prec: 0, NoRatio: true},
	{Label: "new UDP flows, live-frame flood: forwarded/s (xvs XDP)", Key: "flood_fwd", XVS: "xvs", Prec: 0},
	{Label: "  reached the director/s", Key: "flood_offered", XVS: "xvs", Prec: 0},
	{Label: "  connections created/s", Key: "flood_sched", XVS: "xvs", Prec: 0},
	{Label: "  first packets lost/s", Key: "flood_lost", XVS: "xvs", Prec: 0, NoRatio: true},
	{Label: "  xvsd CPU µs per connection created", Key: "flood_cpu_us_per_conn", XVS: "xvs", Prec: 2},
	{Label: "  the director's CPU µs per connection created (xvsd and its receive thread)", Key: "flood_dir_cpu_us_per_conn", XVS: "xvs", Prec: 2},
	{Label: "same, xvs TC: forwarded/s", Key: "flood_fwd", XVS: "xvs-tc", Prec: 0},
	{Label: "  connections created/s", Key: "flood_sched", XVS: "xvs-tc", Prec: 0},
	{Label: "  first packets lost/s", Key: "flood_lost", XVS: "xvs-tc", Prec: 0, NoRatio: true},
	{Label: "one TCP flow (iperf3), Gbit/s, xvs TC", Key: "iperf_gbps", XVS: "xvs-tc", Prec: 2},
	{Label: "one TCP flow (iperf3), Gbit/s, xvs XDP", Key: "iperf_gbps", XVS: "xvs", Prec: 2},
	{Label: "conn table, bytes per connection (all its maps)", Key: "ct_bytes_per_conn", XVS: "xvs", Prec: 0},
	{Label: "  of which the main pair (xvs_conns, xvs_rconns)", Key: "ct_main_pair_bytes_per_conn", XVS: "xvs", Prec: 0},
	{Label: "conn table at 1M connections, MiB", Key: "ct_mib", XVS: "xvs", Prec: 1},
	{Label: "expiry sweep over 1M, nothing expires, the daemon's walk (the default above 16k conns): CPU s", Key: "sweep_cpu_s", XVS: "xvs", Prec: 3},
	{Label: "  wall s", Key: "sweep_wall_s", XVS: "xvs", Prec: 3},
	{Label: "  the kernel's sweep (--sweep-max-conns 1048576): CPU s", Key: "ksweep_cpu_s", XVS: "xvs", Prec: 3},
	{Label: "expiry sweep expiring all 1M, the daemon's walk: CPU s", Key: "expire_all_cpu_s", XVS: "xvs", Prec: 3},
	{Label: "  wall s", Key: "expire_all_wall_s", XVS: "xvs", Prec: 3},
	{Label: "  the kernel's sweep (its first 1024 removals; the walk does the rest): CPU s", Key: "kexpire_all_cpu_s", XVS: "xvs", Prec: 3},
	{Label: "  the kernel's own delete of both keys of all 1M, batched, no expiry logic (the floor): CPU s", Key: "delete_all_cpu_s", XVS: "xvs", Prec: 3},
	{Label: "BPF hit path, ns/packet, warm (prog_test_run, 200 back to back)", Key: "bpf_hit_ns", XVS: "xvs", Prec: 1},
	{Label: "  reverse direction", Key: "bpf_rhit_ns", XVS: "xvs", Prec: 1},
	{Label: "  trivial XDP_PASS", Key: "bpf_pass_ns", XVS: "xvs", Prec: 1},
	{Label: "BPF hit path, ns/packet, cold (one run per syscall)", Key: "bpf_hit_cold_ns", XVS: "xvs", Prec: 1},
	{Label: "  trivial XDP_PASS", Key: "bpf_pass_cold_ns", XVS: "xvs", Prec: 1},
	{Label: "BPF first packet scheduled and installed in the datapath (new UDP flow), ns, cold", Key: "bpf_new_ns", XVS: "xvs", Prec: 1},
	{Label: "BPF first packet of a flood, over the budget, dropped (tables of 1M), ns, cold", Key: "bpf_flood_drop_ns", XVS: "xvs", Prec: 1},
	{Label: "BPF established hit, 4096 UDP flows in a churned table of 1M, answered by the flow cache, ns, cold", Key: "bpf_churn_hit_ns", XVS: "xvs", Prec: 1},
	{Label: "  the same, each packet looking its conn up (every copy void)", Key: "bpf_churn_full_ns", XVS: "xvs", Prec: 1},
	{Label: "  the same lookups in a table that never churned", Key: "bpf_fresh_full_ns", XVS: "xvs", Prec: 1},
	{Label: "scheduler rr, 16 dests, ns/decision", Key: "sched_rr_ns", XVS: "xvs", Prec: 1},
	{Label: "scheduler wrr, 16 dests, ns/decision", Key: "sched_wrr_ns", XVS: "xvs", Prec: 1},
	{Label: "scheduler wlc, 16 dests, ns/decision", Key: "sched_wlc_ns", XVS: "xvs", Prec: 1},
	{Label: "scheduler sh, 16 dests, ns/decision", Key: "sched_sh_ns", XVS: "xvs", Prec: 1},
	{Label: "scheduler mh, 16 dests, ns/decision", Key: "sched_mh_ns", XVS: "xvs", Prec: 1},
}

// Run measures every configured balancer in turn on one topology and
// records the samples in res. A metric that fails is noted and skipped;
// the run goes on.
func Run(ctx context.Context, t testing.TB, cfg Config, res *Results) {
	t.Helper()
	if cfg.GoBench != "" {
		mergeGoBench(t, cfg.GoBench, res)
	}
	if cfg.ConnEntries > 0 {
		runConnTable(ctx, t, cfg, res)
	}
	if len(cfg.Balancers) == 0 {
		return
	}
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = testutil.RunPrefix("xvsb")
	}
	tp := NewTopo(t, prefix)
	for _, a := range tp.Addrs.RS {
		testutil.StartHTTP(t, tp.RS, fmt.Sprintf("%s:%d", a, httpPort), "ok\n")
	}
	if warm, cold, err := RefHitNs(tp, 2000, 200); err != nil {
		res.Note("ref: hit path: %v", err)
	} else {
		res.Add("bpf_hit_ns", "ref", "ns/op", warm)
		res.Add("bpf_hit_cold_ns", "ref", "ns/op", cold)
		t.Logf("ref: hit path %.1f ns/packet warm, %.1f cold (prog_test_run)", warm, cold)
	}
	cpus := allCPUs()
	for i, name := range cfg.Balancers {
		lb, ok := newBalancer(name, cfg)
		if !ok {
			res.Note("%s: skipped (no xvs binaries given or unknown balancer)", name)
			continue
		}
		runBalancer(ctx, t, cfg, tp, lb, cpus, i, res)
	}
}

// floodEvery: in the flood run every floodEvery-th frame of the
// established generator is a new flow. The generator offers far more than
// the director takes (the rest is lost in its receive ring), so what
// arrives is about a fiftieth of what the director processes: some 20k
// first packets/s against a budget of 2000/s. The datapath's events count
// what arrives.
const floodEvery = 50

func (c Config) floodBudget() uint64 {
	if c.FloodBudget > 0 {
		return c.FloodBudget
	}
	return FirstPacketBudget
}

// setBudget sets xvsd's global first-packet budget for a run and returns
// what puts the previous one back; failures go to fail.
func setBudget(x *XVS, rate, burst uint64, fail func(string, error)) (restore func(), ok bool) {
	undo, err := x.SetFirstPacketBudget(rate, burst)
	if err != nil {
		fail("first-packet budget", err)
		return nil, false
	}
	return func() {
		if err := undo(); err != nil {
			fail("first-packet budget", err)
		}
	}, true
}

// allCPUs lists the CPUs 0..NumCPU-1.
func allCPUs() []int {
	cpus := make([]int, runtime.NumCPU())
	for i := range cpus {
		cpus[i] = i
	}
	return cpus
}

func newBalancer(name string, cfg Config) (Balancer, bool) {
	switch name {
	case "forward":
		return &Forward{}, true
	case "nft":
		return &NFT{}, true
	case "ref":
		return &Ref{}, true
	case "xvs", "xvs-tc":
		if cfg.Bin == "" {
			return nil, false
		}
		mode := "xdp"
		if name == "xvs-tc" {
			mode = "tc"
		}
		return &XVS{Mode: mode, Bin: cfg.Bin, WorkDir: cfg.WorkDir, ConnMax: cfg.XvsConnMax}, true
	}
	return nil, false
}

// runBalancer runs the measurements of lb, the idx-th balancer of the run.
func runBalancer(ctx context.Context, t testing.TB, cfg Config, tp *Topo, lb Balancer, cpus []int, idx int, res *Results) {
	t.Helper()
	name := lb.Name()
	salt := uint32(idx) << 26
	fail := func(what string, err error) {
		res.Note("%s: %s: %v", name, what, err)
		t.Logf("%s: %s: %v", name, what, err)
		if x, ok := lb.(*XVS); ok {
			if d := x.Diag(); d != "" {
				t.Logf("%s: xvsd state:\n%s", name, d)
			}
		}
	}
	if err := tp.SetTxCsum(!lb.XDP()); err != nil {
		fail("set offloads", err)
		return
	}
	t.Logf("%s: start", name)
	if err := lb.Start(ctx, tp); err != nil {
		fail("start", err)
		return
	}
	defer func() {
		if err := lb.Stop(); err != nil {
			fail("stop", err)
		}
	}()
	// TCP first: the UDP floods leave state behind (conntrack entries,
	// full tables) that would skew the connection figures.
	if name != "ref" && cfg.want("conn") {
		// The XDP datapaths need TX checksum offload off at the
		// endpoints (which also turns TSO off); the kernel paths run
		// with it on, as their users would, and once more with it off,
		// so that each XDP figure has a like-for-like one. The second
		// run uses a second client set (no TIME_WAIT of the first).
		keys := []string{"conn"}
		if lb.XDP() {
			keys = append(keys, "conn_nooff")
		}
		runConnRate(ctx, t, cfg, tp, tp.Addrs.ClientSet(idx), lb, keys, res, fail)
		if !lb.XDP() {
			if err := tp.SetTxCsum(false); err != nil {
				fail("set offloads", err)
				return
			}
			runConnRate(ctx, t, cfg, tp, tp.Addrs.ClientSet(idx+clientSets/2), lb, []string{"conn_nooff"}, res, fail)
			if err := tp.SetTxCsum(true); err != nil {
				fail("set offloads", err)
				return
			}
		}
	}
	if cfg.want("iperf") {
		runIperf(ctx, t, cfg, tp, lb, res, fail)
	}
	runUDP(ctx, t, cfg, tp, lb, cpus, salt, res, fail)
}

// runConnRate measures the new-connection rate and records each
// repetition under every key prefix in keys.
func runConnRate(ctx context.Context, t testing.TB, cfg Config, tp *Topo, clients []netip.Addr, lb Balancer, keys []string, res *Results, fail func(string, error)) {
	t.Helper()
	name := lb.Name()
	for range cfg.Reps {
		r, err := ConnRate(ctx, tp.Gen, clients, lb.Targets(httpPort), cfg.Workers, cfg.ConnTime)
		if err != nil {
			fail("new-connection rate", err)
			return
		}
		for _, k := range keys {
			res.Add(k+"_rate", name, "conns/s", r.PerSec())
			res.Add(k+"_p50_us", name, "µs", float64(r.P50.Microseconds()))
			res.Add(k+"_p99_us", name, "µs", float64(r.P99.Microseconds()))
			res.Add(k+"_connect_p50_us", name, "µs", float64(r.ConnectP50.Microseconds()))
			res.Add(k+"_errors", name, "count", float64(r.Errors))
		}
		t.Logf("%s: %.0f conns/s, p50 %v, p99 %v, %d errors (%s)", name, r.PerSec(), r.P50, r.P99, r.Errors, strings.Join(keys, ", "))
		if r.Errors > 0 {
			res.Note("%s: %d of %d connections failed, first: %s", name, r.Errors, r.Errors+r.OK, r.FirstErr)
		}
	}
}

func runIperf(ctx context.Context, t testing.TB, cfg Config, tp *Topo, lb Balancer, res *Results, fail func(string, error)) {
	t.Helper()
	name := lb.Name()
	srv, err := StartIperfServer(tp.RS, netip.AddrPortFrom(tp.Addrs.RS[0], iperPort))
	if err != nil {
		fail("iperf3 server", err)
		return
	}
	defer srv.Stop()
	for range cfg.Reps {
		r, err := Iperf(ctx, tp.Gen, lb.Target(iperPort), cfg.IperfTime)
		if err != nil {
			fail("iperf3", err)
			return
		}
		res.Add("iperf_gbps", name, "Gbit/s", r.BitsPerSec/1e9)
		res.Add("iperf_retrans", name, "count", float64(r.Retransmits))
		t.Logf("%s: iperf3 %.2f Gbit/s, %d retransmits", name, r.BitsPerSec/1e9, r.Retransmits)
	}
}

func runUDP(ctx context.Context, t testing.TB, cfg Config, tp *Topo, lb Balancer, cpus []int, salt uint32, res *Results, fail func(string, error)) {
	t.Helper()
	name := lb.Name()
	// The director's receive thread gets the last CPU to itself; the
	// generator and the real servers' receive thread (the sink) share the
	// first. Real-time priority for both receive threads during the
	// floods: the sink's must run as soon as frames wait in its ring
	// (else the ring overflows while the generator holds the CPU), the
	// director's must not share its CPU with other work while the
	// forwarding rate is measured. (Sink and director on one CPU, both
	// real-time, starve each other: measured 0.05 Mpps instead of 1.2.)
	genCPU, dirCPU := cpus[0], cpus[len(cpus)-1]
	if err := tp.ThreadNAPI(true); err != nil {
		fail("napi threads", err)
		return
	}
	defer func() {
		if err := tp.ThreadNAPI(false); err != nil {
			fail("napi back to softirq", err)
		}
	}()
	rx := append(slices.Clone(tp.ExtNAPI), tp.RSNAPI...)
	if err := errors.Join(pinThreads(tp.ExtNAPI, []int{dirCPU}), pinThreads(tp.RSNAPI, []int{genCPU}), setFIFO(rx, true)); err != nil {
		fail("napi threads", err)
		return
	}
	sink, err := AttachSink(tp)
	if err != nil {
		fail("attach sink", err)
		return
	}
	defer func() {
		if err := sink.Close(); err != nil {
			fail("detach sink", err)
		}
	}()
	env := &udpEnv{tp: tp, lb: lb, sink: sink, pps: cfg.GenPPS}
	if cfg.UDPWait > 0 && name != "ref" { // the ref has no connection runs
		t.Logf("%s: waiting %v before the established runs", name, cfg.UDPWait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(cfg.UDPWait):
		}
	}
	if cfg.want("udp") {
		runEstablished(ctx, t, cfg, env, genCPU, res, fail)
	}
	if name == "ref" {
		return // no first-packet path
	}
	if cfg.want("flood") {
		runFlood(ctx, t, cfg, env, genCPU, salt, res, fail)
	}
	if cfg.want("newflow") {
		runNewFlows(ctx, t, cfg, env, genCPU, salt, res, fail)
	}
}

// runFlood: established flows while first packets flood the director at
// 5x xvsd's first-packet budget, set to FirstPacketBudget for the run.
func runFlood(ctx context.Context, t testing.TB, cfg Config, env *udpEnv, genCPU int, salt uint32, res *Results, fail func(string, error)) {
	t.Helper()
	name := env.lb.Name()
	if x, ok := env.lb.(*XVS); ok {
		if cfg.FloodPinXvsd {
			// xvsd away from the director's receive CPU, as on a
			// director with more CPUs than receive queues.
			if err := x.Pin([]int{genCPU}); err != nil {
				fail("pin xvsd", err)
				return
			}
			defer func() {
				if err := x.Pin(allCPUs()); err != nil {
					fail("unpin xvsd", err)
				}
			}()
		}
		restore, ok := setBudget(x, cfg.floodBudget(), max(cfg.floodBudget()/10, 1), fail)
		if !ok {
			return
		}
		defer restore()
	}
	fl, err := env.EstablishedUnderFlood(ctx, cfg.Flows, cfg.PPSTime, cfg.Reps, genCPU, salt, floodEvery)
	for _, r := range fl {
		res.Add("flood_est_pps", name, "pps", r.PPS())
		res.Add("flood_est_flood_pps", name, "pps", r.FloodPPS())
		res.Add("flood_est_base_pps", name, "pps", r.Base.PPS())
		res.Add("flood_est_kept", name, "ratio", r.Kept())
		if r.Events != nil {
			res.Note("%s: established flows under a flood: datapath events per second: %s", name, fmtEvents(r.Events, r.Duration))
			res.Add("flood_est_flood_arrived", name, "pps", (r.Events["punt"]+r.Events["sched_new"]+r.Events["drop_punt_budget"])/r.Duration.Seconds())
			res.Add("flood_est_budget", name, "pps", float64(cfg.floodBudget()))
		}
		t.Logf("%s: established %d flows under a flood of %.0f first packets/s: %.0f pps received (%.0f just before without it, kept %.2f), %d flood packets forwarded",
			name, r.Flows, r.FloodPPS(), r.PPS(), r.Base.PPS(), r.Kept(), r.FloodFwd)
	}
	if err != nil {
		fail("established flows under a flood", err)
	}
}

func runEstablished(ctx context.Context, t testing.TB, cfg Config, env *udpEnv, genCPU int, res *Results, fail func(string, error)) {
	t.Helper()
	name := env.lb.Name()
	oneway, err := env.Established(ctx, cfg.Flows, cfg.PPSTime, cfg.Reps, []int{genCPU}, false)
	for _, r := range oneway {
		res.Add("udp_oneway_pps", name, "pps", r.PPS())
		t.Logf("%s: %d flows never answered: %.0f pps received, %.0f pps sent", name, r.Flows, r.PPS(), r.SentPPS())
	}
	if err != nil {
		fail("one-way flow rate", err)
		return
	}
	ev0 := env.events()
	est, err := env.Established(ctx, cfg.Flows, cfg.PPSTime, cfg.Reps, []int{genCPU}, true)
	if ev := diffEvents(ev0, env.events()); ev != nil {
		var d time.Duration
		for _, r := range est {
			d += r.Duration
		}
		res.Note("%s: established flows (warm-up and all repetitions): datapath events per second: %s", name, fmtEvents(ev, d))
	}
	for _, r := range est {
		res.Add("udp_est_pps", name, "pps", r.PPS())
		res.Add("udp_est_sent_pps", name, "pps", r.SentPPS())
		t.Logf("%s: established %d flows: %.0f pps received, %.0f pps sent", name, r.Flows, r.PPS(), r.SentPPS())
		if cfg.GenPPS > 0 && r.PPS() > 0.9*float64(cfg.GenPPS) {
			res.Note("%s: received %.0f pps of the generator's pace of %d: the pace may bound this figure; raise -gen-pps", name, r.PPS(), cfg.GenPPS)
		}
	}
	if err != nil {
		fail("established-flow rate", err)
	}
}

func runNewFlows(ctx context.Context, t testing.TB, cfg Config, env *udpEnv, genCPU int, salt uint32, res *Results, fail func(string, error)) {
	t.Helper()
	name, tp := env.lb.Name(), env.tp
	// The capacity of the first-packet path is measured without the
	// budget that protects it in the flood run.
	if x, ok := env.lb.(*XVS); ok {
		restore, ok := setBudget(x, 0, 0, fail)
		if !ok {
			return
		}
		defer restore()
		// Each new flow leaves a UDP conn that is never answered: with
		// the default 300 s timeout the half-open table (1M here)
		// fills within seconds at these rates, and from then on every
		// first packet waits for xvsd to make room, which measures the
		// eviction, not the install path. Expire them after 1 s, as a
		// table with room would have them.
		if err := x.SetUDPTimeout(1); err != nil {
			fail("udp timeout", err)
			return
		}
		defer func() {
			if err := x.SetUDPTimeout(int(ctl.DefaultTimeouts.UDP)); err != nil {
				fail("udp timeout", err)
			}
		}()
	}
	// The first-packet path shares the director's CPU with xvsd's punt
	// workers: no real-time priority for the director's receive thread.
	if err := setFIFO(tp.ExtNAPI, false); err != nil {
		fail("napi threads", err)
		return
	}
	type flowRun struct {
		key   string
		pps   float64 // offered first packets/s (0: as fast as it goes)
		sched string  // the UDP service's scheduler for the run ("": rr)
	}
	runs := []flowRun{{"newflow", cfg.NewFlowRate, ""}, {"flood", 0, ""}}
	x, isXVS := env.lb.(*XVS)
	if isXVS {
		// rr's first packets are scheduled in the datapath; wlc's go
		// through the punt device to xvsd's two workers.
		runs = append(runs, flowRun{"newflow_punt", cfg.NewFlowRate, "wlc"})
	}
	for _, m := range runs {
		if m.sched != "" {
			if err := x.SetUDPScheduler(m.sched); err != nil {
				fail("new-flow rate ("+m.key+")", err)
				continue
			}
		}
		nf, err := env.NewFlows(ctx, cfg.PPSTime, cfg.Reps, genCPU, salt, m.pps)
		if m.sched != "" {
			if err := x.SetUDPScheduler("rr"); err != nil {
				fail("new-flow rate ("+m.key+")", err)
			}
		}
		for _, r := range nf {
			res.Add(m.key+"_fwd", name, "flows/s", r.FlowsPerSec())
			res.Add(m.key+"_offered", name, "pps", r.OfferedPerSec())
			res.Add(m.key+"_sent", name, "pps", rate(r.Sent, r.Duration))
			if r.HasSched {
				res.Add(m.key+"_sched", name, "conns/s", r.SchedPerSec())
			}
			if r.HasPunt {
				res.Add(m.key+"_tapdrops", name, "pkts/s", r.DropsPerSec())
			}
			res.Add(m.key+"_lost", name, "pkts/s", r.LostPerSec())
			if r.HasCPU && r.Scheduled > 0 {
				res.Add(m.key+"_cpu_us_per_conn", name, "µs", float64(r.CPUPerConn().Nanoseconds())/1e3)
				// The receive thread does the director's work only in
				// XDP mode (TC runs in the generator's softirq).
				if d := r.DirectorCPUPerConn(); isXVS && x.XDP() && d > 0 {
					us := float64(d.Nanoseconds()) / 1e3
					res.Add(m.key+"_dir_cpu_us_per_conn", name, "µs", us)
					res.Add(m.key+"_dir_capacity", name, "conns/s", 2e6/us)
				}
			}
			if r.Events != nil {
				res.Note("%s: new flows (%s): datapath events per second: %s", name, m.key, fmtEvents(r.Events, r.Duration))
			}
			t.Logf("%s: new flows (%s): %.0f/s generated, %.0f/s reached the director, %.0f/s forwarded, %.0f/s conns created, %.0f/s lost (%.0f/s at the punt tap)",
				name, m.key, rate(r.Sent, r.Duration), r.OfferedPerSec(), r.FlowsPerSec(), r.SchedPerSec(), r.LostPerSec(), r.DropsPerSec())
		}
		if err != nil {
			fail("new-flow rate ("+m.key+")", err)
		}
	}
}

func runConnTable(ctx context.Context, t testing.TB, cfg Config, res *Results) {
	t.Helper()
	r, err := ConnTable(ctx, cfg.ConnEntries, cfg.Reps)
	if err != nil {
		res.Note("conn table: %v", err)
		t.Logf("conn table: %v", err)
		return
	}
	res.Add("ct_bytes_per_conn", "xvs", "B", r.BytesPerConn())
	res.Add("ct_mib", "xvs", "MiB", float64(r.TableBytes)/(1<<20))
	res.Add("ct_main_pair_bytes_per_conn", "xvs", "B", float64(r.ConnsBytes+r.RconnsBytes)/float64(r.MaxEntries))
	res.Note("conn table maps: %s", strings.Join(r.TableMaps, ", "))
	res.Add("ct_installed", "xvs", "conns", float64(r.Installed))
	res.Add("ct_walked", "xvs", "conns", float64(r.Walked))
	res.Add("ct_fill_s", "xvs", "s", r.FillTime.Seconds())
	for _, s := range r.Sweeps {
		res.Add("sweep_cpu_s", "xvs", "s", s.CPU.Seconds())
		res.Add("sweep_wall_s", "xvs", "s", s.Wall.Seconds())
	}
	res.Add("expire_all_cpu_s", "xvs", "s", r.ExpireAll.CPU.Seconds())
	res.Add("expire_all_wall_s", "xvs", "s", r.ExpireAll.Wall.Seconds())
	res.Add("expire_all_n", "xvs", "conns", float64(r.ExpireAll.Expired))
	for _, s := range r.KSweeps {
		res.Add("ksweep_cpu_s", "xvs", "s", s.CPU.Seconds())
	}
	res.Add("kexpire_all_cpu_s", "xvs", "s", r.KExpireAll.CPU.Seconds())
	res.Add("delete_all_cpu_s", "xvs", "s", r.DeleteAll.CPU.Seconds())
	res.Add("kexpire_all_n", "xvs", "conns", float64(r.KExpireAll.Expired))
	t.Logf("conn table: %d entries, maps %v = %.0f B/conn (xvs_conns %d B, xvs_rconns %d B); filled %d in %v, walk saw %d; sweeps %v; expire-all %v (%d expired); kernel sweeps %v; expire-all %v (%d expired); batch delete %v (%d)",
		r.MaxEntries, r.TableMaps, r.BytesPerConn(), r.ConnsBytes, r.RconnsBytes, r.Installed, r.FillTime, r.Walked, r.Sweeps, r.ExpireAll, r.ExpireAll.Expired,
		r.KSweeps, r.KExpireAll, r.KExpireAll.Expired, r.DeleteAll, r.DeleteAll.Expired)
}

// goBenchKeys maps `go test -bench` results to table keys.
var goBenchKeys = []struct{ name, unit, key string }{
	{"BenchmarkXDPForwardHit", "ns/op", "bpf_hit_ns"},
	{"BenchmarkXDPReverseHit", "ns/op", "bpf_rhit_ns"},
	{"BenchmarkXDPForwardHit", "pass-ns/op", "bpf_pass_ns"},
	{"BenchmarkXDPForwardHit", "cold-ns/op", "bpf_hit_cold_ns"},
	{"BenchmarkXDPForwardHit", "cold-pass-ns/op", "bpf_pass_cold_ns"},
	{"BenchmarkXDPRingNew", "ns/op", "bpf_new_ns"},
	{"BenchmarkXDPFloodDrop", "ns/op", "bpf_flood_drop_ns"},
	{"BenchmarkXDPChurnedHit", "ns/op", "bpf_churn_hit_ns"},
	{"BenchmarkXDPChurnedHit", "full-ns/op", "bpf_churn_full_ns"},
	{"BenchmarkXDPChurnedHit", "fresh-full-ns/op", "bpf_fresh_full_ns"},
	{"BenchmarkSchedule/rr/dests=16", "ns/op", "sched_rr_ns"},
	{"BenchmarkSchedule/wrr/dests=16", "ns/op", "sched_wrr_ns"},
	{"BenchmarkSchedule/wlc/dests=16", "ns/op", "sched_wlc_ns"},
	{"BenchmarkSchedule/sh/dests=16", "ns/op", "sched_sh_ns"},
	{"BenchmarkSchedule/mh/dests=16", "ns/op", "sched_mh_ns"},
}

func mergeGoBench(t testing.TB, path string, res *Results) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		res.Note("go test -bench output: %v", err)
		return
	}
	defer f.Close()
	bs, err := ParseGoBench(f)
	if err != nil {
		res.Note("go test -bench output: %v", err)
	}
	for _, k := range goBenchKeys {
		for _, b := range bs {
			if b.Name != k.name {
				continue
			}
			if v, ok := b.Metrics[k.unit]; ok {
				res.Add(k.key, "xvs", k.unit, v)
			}
		}
	}
}

// fmtEvents lists event rates, largest first.
func fmtEvents(ev map[string]float64, d time.Duration) string {
	keys := make([]string, 0, len(ev))
	for k := range ev {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case ev[a] > ev[b]:
			return -1
		case ev[a] < ev[b]:
			return 1
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.0f", k, ev[k]/d.Seconds())
	}
	return b.String()
}
