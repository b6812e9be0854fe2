package tests

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"xvs/testutil"
)

// Two directors (issue 8): connection sync and failover.
//
//	                 switch ns: brx                               switch ns: bri
//	client ──eth0──┬─────────────── ext0 [director A] int0 ──────────┬──── node1 172.16.0.2
//	.100           │   .11 (+ VIP .5)      sync0 10.255.0.1  .11 (+ gw .1)  ├──── node2 172.16.0.3
//	               │                          │ veth                      │   default via 172.16.0.1
//	               └─────────────── ext0 [director B] int0 ──────────┘
//	                   .12                 sync0 10.255.0.2  .12
//
// 202.103.106.0/24 outside, 172.16.0.0/24 inside. A runs the sync master,
// B the backup (started with xvsadm --start-daemon, xvsd's --sync-backup
// flag, or keepalived's notify script, depending on the case). Failover
// moves the VIP and the real servers' gateway address 172.16.0.1 from A to
// B, takes A's links down and kills A's xvsd; the neighbour caches of the
// client and the real servers are flushed by hand (TestSyncFailover) or
// moved by keepalived's gratuitous ARPs (TestKeepalivedFailover).
// TestECMPMaglev builds its own topology (a router in front).

const (
	haVIP  = "202.103.106.5"
	haGW   = "172.16.0.1"
	haA    = "202.103.106.11"
	haB    = "202.103.106.12"
	haAInt = "172.16.0.11"
	haBInt = "172.16.0.12"
	syncIf = "sync0"
)

type haTopo struct {
	prefix string
	cli    *testutil.NetNS
	a, b   *testutil.NetNS
	sw     *testutil.NetNS
	nodes  []*testutil.NetNS
	diags  []func() string
	dumped bool
}

func newHATopo(t *testing.T) *haTopo {
	t.Helper()
	needBinaries(t)
	p := testutil.RunPrefix("xvst")
	h := &haTopo{prefix: p}
	h.cli = testutil.NewNetNS(t, p+"-cli")
	h.a = testutil.NewNetNS(t, p+"-dira")
	h.b = testutil.NewNetNS(t, p+"-dirb")
	h.sw = testutil.NewNetNS(t, p+"-sw")
	for i := range 2 {
		h.nodes = append(h.nodes, testutil.NewNetNS(t, p+"-"+testutil.ServerName(i)))
	}
	if err := h.build(); err != nil {
		t.Fatalf("build two-director topology %s: %v", p, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, hop := range []struct {
		from *testutil.NetNS
		to   string
	}{
		{h.cli, haVIP}, {h.cli, haA}, {h.cli, haB},
		{h.a, "202.103.106.100"}, {h.b, "202.103.106.100"},
		{h.a, rs1}, {h.a, rs2}, {h.b, rs1}, {h.b, rs2},
		{h.nodes[0], haGW}, {h.nodes[1], haGW}, {h.a, "10.255.0.2"},
	} {
		if err := testutil.Ping(ctx, hop.from, netip.MustParseAddr(hop.to)); err != nil {
			t.Fatalf("topology %s: %v", p, err)
		}
	}
	return h
}

func (h *haTopo) all() []*testutil.NetNS {
	return append([]*testutil.NetNS{h.cli, h.a, h.b, h.sw}, h.nodes...)
}

func (h *haTopo) build() error {
	for _, ns := range h.all() {
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if err := ns.Sysctl(k, "1"); err != nil {
				return err
			}
		}
	}
	for _, d := range []*testutil.NetNS{h.a, h.b} {
		for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.ipv4.conf.all.rp_filter", "0"}, {"net.ipv4.conf.default.rp_filter", "0"}} {
			if err := d.Sysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	for _, br := range []string{"brx", "bri"} {
		if err := h.sw.IP("link", "add", br, "type", "bridge"); err != nil {
			return err
		}
		if err := h.sw.IP("link", "set", br, "up"); err != nil {
			return err
		}
	}
	port := func(ns *testutil.NetNS, ifname, swName, br string) error {
		if err := testutil.Veth(ns, ifname, h.sw, swName); err != nil {
			return err
		}
		return h.sw.IP("link", "set", swName, "master", br)
	}
	steps := []func() error{
		func() error { return port(h.cli, testutil.HostIf, "cli", "brx") },
		func() error { return port(h.a, testutil.DirectorExtIf, "ax", "brx") },
		func() error { return port(h.b, testutil.DirectorExtIf, "bx", "brx") },
		func() error { return port(h.a, testutil.DirectorIntIf, "ai", "bri") },
		func() error { return port(h.b, testutil.DirectorIntIf, "bi", "bri") },
		func() error { return testutil.Veth(h.a, syncIf, h.b, syncIf) },
		func() error { return h.cli.IP("addr", "add", "202.103.106.100/24", "dev", testutil.HostIf) },
		func() error { return h.a.IP("addr", "add", haA+"/24", "dev", testutil.DirectorExtIf) },
		func() error { return h.a.IP("addr", "add", haVIP+"/24", "dev", testutil.DirectorExtIf) },
		func() error { return h.a.IP("addr", "add", haAInt+"/24", "dev", testutil.DirectorIntIf) },
		func() error { return h.a.IP("addr", "add", haGW+"/24", "dev", testutil.DirectorIntIf) },
		func() error { return h.a.IP("addr", "add", "10.255.0.1/24", "dev", syncIf) },
		func() error { return h.b.IP("addr", "add", haB+"/24", "dev", testutil.DirectorExtIf) },
		func() error { return h.b.IP("addr", "add", haBInt+"/24", "dev", testutil.DirectorIntIf) },
		func() error { return h.b.IP("addr", "add", "10.255.0.2/24", "dev", syncIf) },
	}
	for i, ns := range h.nodes {
		addr := []string{rs1, rs2}[i]
		steps = append(steps,
			func() error { return port(ns, testutil.HostIf, testutil.ServerName(i), "bri") },
			func() error { return ns.IP("addr", "add", addr+"/24", "dev", testutil.HostIf) },
			func() error { return ns.IP("route", "add", "default", "via", haGW, "dev", testutil.HostIf) })
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

func (h *haTopo) dump() string {
	var b strings.Builder
	fmt.Fprintf(&b, "=== diagnostics for two-director topology %s ===\n", h.prefix)
	for _, f := range h.diags {
		b.WriteString(f())
		b.WriteString("\n")
	}
	for _, ns := range h.all() {
		fmt.Fprintf(&b, "--- netns %s ---\n", ns.Name)
		for _, args := range [][]string{{"-br", "link"}, {"-br", "addr"}, {"route"}, {"neigh"}} {
			out, _ := ns.Run("ip", args...)
			fmt.Fprintf(&b, "$ ip %s\n%s", strings.Join(args, " "), out)
		}
	}
	return b.String()
}

// startDirector runs xvsd (TC mode) in one director namespace with extra
// flags, with the same private socket, bpffs, tap and cleanup as
// startDaemon.
func startDirector(t *testing.T, h *haTopo, ns *testutil.NetNS, name string, extra ...string) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "xvst-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &daemon{
		t: t, tp: &testutil.Topo{Prefix: h.prefix, Director: ns, Client: h.cli}, mode: testutil.ModeTC, dir: dir,
		sock:  filepath.Join(dir, "xvsd.sock"),
		bpffs: filepath.Join(dir, "bpffs"),
		tap:   "xvs" + name + strings.TrimPrefix(h.prefix, "xvst-"),
		log:   filepath.Join(dir, "xvsd.log"),
	}
	if err := os.Mkdir(d.bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", d.bpffs).CombinedOutput(); err != nil {
		t.Fatalf("mount bpffs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if mounted(d.bpffs) {
			if out, err := exec.Command("umount", d.bpffs).CombinedOutput(); err != nil {
				t.Errorf("umount bpffs: %v: %s", err, out)
			}
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		args := append([]string{"down", "--bpffs", d.bpffs, "--tap", d.tap}, d.stateArgs()...)
		if out, err := ns.Exec(ctx, bins.xvsd, args...).CombinedOutput(); err != nil {
			t.Errorf("xvsd down in %s: %v: %s", ns.Name, err, out)
		}
	})
	h.diags = append(h.diags, func() string {
		out, _, _ := d.adm("", "-L", "--daemon")
		cnt, _, _ := d.adm("", "--counters")
		return fmt.Sprintf("##### director %s\n$ xvsadm -L --daemon\n%s$ xvsadm --counters\n%s%s", name, out, cnt, d.diag())
	})

	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	args := append(d.args(), extra...)
	fmt.Fprintf(logf, "=== start %s %s\n", bins.xvsd, strings.Join(args, " "))
	cmd := ns.Exec(context.Background(), bins.xvsd, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	logf.Close()
	if err != nil {
		t.Fatalf("start xvsd: %v", err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		d.err = cmd.Wait()
		close(done)
	}(d.done)
	t.Cleanup(d.stop)
	// Registered last, so it runs first: dump while everything is up.
	t.Cleanup(func() {
		if t.Failed() && !h.dumped {
			h.dumped = true
			t.Log(h.dump())
		}
	})
	d.waitReady()
	return d
}

// haConfig gives a director the same rules as the other.
func haConfig(d *daemon, sched ...string) {
	for _, svc := range []struct{ proto, port string }{{"-t", "80"}, {"-t", "9000"}} {
		d.must(append([]string{"-A", svc.proto, haVIP + ":" + svc.port}, sched...)...)
		for _, rs := range []string{rs1, rs2} {
			d.must("-a", svc.proto, haVIP+":"+svc.port, "-r", rs+":"+svc.port, "-m")
		}
	}
}

// conns parses `xvsadm -L -n -c`.
func conns(t *testing.T, d *daemon) []connRow {
	t.Helper()
	out := d.must("-L", "-n", "-c")
	rows, err := parseConns(out)
	if err != nil {
		t.Fatalf("parse -L -n -c: %v\n%s", err, out)
	}
	return rows
}

func findConn(rows []connRow, source, virtual string) *connRow {
	for i := range rows {
		if rows[i].Source == source && rows[i].Virtual == virtual {
			return &rows[i]
		}
	}
	return nil
}

// TestSyncMasterToBackup: a TCP connection through director A shows on B
// (same client, VIP, real server, ESTABLISHED) within a few seconds.
func TestSyncMasterToBackup(t *testing.T) {
	ctx := bounded(t, 90*time.Second)
	h := newHATopo(t)
	for i, ns := range h.nodes {
		testutil.StartHTTP(t, ns, ":80", body(i))
	}
	a := startDirector(t, h, h.a, "a")
	b := startDirector(t, h, h.b, "b", "--sync-backup", syncIf, "--syncid", "5")
	haConfig(a, "-s", "rr")
	haConfig(b, "-s", "rr")
	a.must("--start-daemon", "master", "--mcast-interface", syncIf, "--syncid", "5")
	if got, want := a.must("-L", "--daemon"), "master sync daemon (mcast=sync0, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"; got != want {
		t.Errorf("A: -L --daemon = %q, want %q", got, want)
	}
	if got, want := b.must("-L", "--daemon"), "backup sync daemon (mcast=sync0, syncid=5, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"; got != want {
		t.Errorf("B: -L --daemon = %q, want %q", got, want)
	}

	hc, err := testutil.DialHTTP(ctx, h.cli, netip.Addr{}, netip.MustParseAddrPort(haVIP+":80"))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := hc.Get(ctx); err != nil {
		t.Fatal(err)
	}
	src, virt := hc.LocalAddr().String(), haVIP+":80"
	onA := findConn(conns(t, a), src, virt)
	if onA == nil || onA.State != "ESTABLISHED" {
		t.Fatalf("A has no ESTABLISHED conn for %s -> %s: %+v", src, virt, onA)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		onB := findConn(conns(t, b), src, virt)
		if onB != nil && onB.State == "ESTABLISHED" && onB.Dest == onA.Dest && onB.Proto == "TCP" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B after 10 s: %+v, want TCP ESTABLISHED %s -> %s -> %s", onB, src, virt, onA.Dest)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// B counts it as active on the same real server, as A does.
	svc := findService(list(t, b), "TCP", virt)
	if svc == nil || svc.dest(onA.Dest) == nil || svc.dest(onA.Dest).Active != 1 {
		t.Errorf("B's listing %+v, want ActiveConn 1 on %s", svc, onA.Dest)
	}

	// Errors as ipvsadm's.
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--start-daemon", "master", "--mcast-interface", syncIf}, "Daemon has already run\n"},
		{[]string{"--stop-daemon", "master"}, ""},
		{[]string{"--stop-daemon", "master"}, "No daemon is running\n"},
		{[]string{"--start-daemon", "master", "--mcast-interface", "nosuch0"}, "No such device: unknown mcast interface nosuch0\n"},
	} {
		_, errOut, code := a.adm("", c.args...)
		if wantCode := map[bool]int{true: 0, false: 255}[c.msg == ""]; code != wantCode || errOut != c.msg {
			t.Errorf("xvsadm %s: exit %d, stderr %q; want %d, %q", strings.Join(c.args, " "), code, errOut, wantCode, c.msg)
		}
	}
}

// TestSyncFailover: a long transfer and 100 idle kept-alive connections
// go through A; the VIP and the gateway move to B and A dies; the transfer
// ends with every byte, the idle connections still answer, and new
// connections are scheduled by B.
func TestSyncFailover(t *testing.T) {
	ctx := bounded(t, 150*time.Second)
	h := newHATopo(t)
	sinks := map[string]*testutil.TCPSink{}
	for i, ns := range h.nodes {
		testutil.StartHTTP(t, ns, ":80", body(i))
		sinks[[]string{rs1, rs2}[i]+":9000"] = testutil.StartTCPSink(t, ns, ":9000")
	}
	a := startDirector(t, h, h.a, "a")
	b := startDirector(t, h, h.b, "b")
	haConfig(a, "-s", "rr")
	haConfig(b, "-s", "rr")
	a.must("--start-daemon", "master", "--mcast-interface", syncIf)
	b.must("--start-daemon", "backup", "--mcast-interface", syncIf)

	// 100 idle connections, each answered once.
	const idle = 100
	hcs := openIdle(ctx, t, h.cli, netip.MustParseAddrPort(haVIP+":80"), idle)

	// The transfer: 64 MiB in 32 KiB chunks, 8 ms apart (at least 16 s).
	conn, err := testutil.Dial(ctx, h.cli, netip.Addr{}, netip.MustParseAddrPort(haVIP+":9000"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cfg := testutil.StreamConfig{Total: 64 << 20, Chunk: 32 << 10, Pause: 8 * time.Millisecond, Seed: 8}
	st := startStream(ctx, conn, cfg)
	src := conn.LocalAddr().String()
	onA := findConn(conns(t, a), src, haVIP+":9000")
	if onA == nil {
		t.Fatalf("A has no conn for the transfer from %s", src)
	}
	sink := sinks[onA.Dest]

	// Wait until B has every connection, established, to the same real
	// server as A.
	want := map[string]string{src + " " + haVIP + ":9000": onA.Dest}
	for _, r := range conns(t, a) {
		if r.Virtual == haVIP+":80" && r.State == "ESTABLISHED" {
			want[r.Source+" "+r.Virtual] = r.Dest
		}
	}
	if len(want) != idle+1 {
		t.Fatalf("A lists %d established conns, want %d", len(want), idle+1)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		missing := 0
		have := map[string]connRow{}
		for _, r := range conns(t, b) {
			have[r.Source+" "+r.Virtual] = r
		}
		for k, dest := range want {
			if r, ok := have[k]; !ok || r.Dest != dest || r.State != "ESTABLISHED" {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B is missing %d of %d connections after 15 s", missing, len(want))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := st.written.Load(); n >= cfg.Total/2 {
		t.Fatalf("transfer %d of %d bytes done before the failover: too fast for the test", n, cfg.Total)
	}

	// Failover.
	atFailover := st.written.Load()
	for _, step := range []struct {
		ns   *testutil.NetNS
		args []string
	}{
		{h.a, []string{"addr", "del", haVIP + "/24", "dev", testutil.DirectorExtIf}},
		{h.a, []string{"addr", "del", haGW + "/24", "dev", testutil.DirectorIntIf}},
		{h.a, []string{"link", "set", testutil.DirectorExtIf, "down"}},
		{h.a, []string{"link", "set", testutil.DirectorIntIf, "down"}},
		{h.b, []string{"addr", "add", haVIP + "/24", "dev", testutil.DirectorExtIf}},
		{h.b, []string{"addr", "add", haGW + "/24", "dev", testutil.DirectorIntIf}},
		{h.cli, []string{"neigh", "flush", "dev", testutil.HostIf}},
		{h.nodes[0], []string{"neigh", "flush", "dev", testutil.HostIf}},
		{h.nodes[1], []string{"neigh", "flush", "dev", testutil.HostIf}},
	} {
		if err := step.ns.IP(step.args...); err != nil {
			t.Fatal(err)
		}
	}
	a.kill9()
	b.must("--stop-daemon", "backup")
	b.must("--start-daemon", "master", "--mcast-interface", syncIf)

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("waiting for %s: %v (written %d)", what, ctx.Err(), st.written.Load())
			case <-deadline:
				t.Fatalf("waiting for %s: stalled for 30s at %d bytes written", what, st.written.Load())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitFor("4 MiB more through B", func() bool { return st.written.Load() >= atFailover+4<<20 })

	// The idle connections answer through B.
	var ok atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i, hc := range hcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := hc.Get(ctx); err != nil {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%d: %v", i, err))
				mu.Unlock()
				return
			}
			ok.Add(1)
		}()
	}
	wg.Wait()
	if ok.Load() < idle-1 {
		t.Errorf("%d of %d idle connections answered after the failover, want at least %d; failures: %v", ok.Load(), idle, idle-1, failures)
	}

	st.verify(ctx, t, sink)

	// New connections are scheduled by B.
	c := testutil.NewHTTPClient(h.cli, netip.Addr{})
	got := getNodes(ctx, t, c, "http://"+haVIP+"/", 2)
	if got[0] == got[1] {
		t.Errorf("new connections through B went to %v, want both real servers (rr)", got)
	}
}

// udpFrom sends one datagram from a fixed source port and returns the reply.
func udpFrom(ctx context.Context, ns *testutil.NetNS, port int, to netip.AddrPort) (string, error) {
	var pc *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		pc, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	}); err != nil {
		return "", err
	}
	defer pc.Close()
	deadline := time.Now().Add(3 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = pc.SetDeadline(deadline)
	if _, err := pc.WriteToUDPAddrPort([]byte("which"), to); err != nil {
		return "", err
	}
	buf := make([]byte, 64)
	n, from, err := pc.ReadFromUDPAddrPort(buf)
	if err != nil {
		return "", fmt.Errorf("reply to source port %d: %w", port, err)
	}
	// A reply that missed the director's reverse rewrite comes from the
	// real server's address.
	if from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port()); from != to {
		return "", fmt.Errorf("reply to source port %d from %s, want %s", port, from, to)
	}
	return string(buf[:n]), nil
}

// TestECMPMaglev: the scale-out recipe of docs/ha.md, end to end. A router
// spreads flows to the VIP over directors A and B with an L4-hashing
// multipath route; both have identical mh (mh-port) rules; the real servers
// send each flow's replies back through the director it came from
// (conntrack mark by the director's MAC, policy routing). Every flow
// reaches the real server that director B alone chose for it before the
// route became multipath, and director A carried part of them.
//
//	client 198.51.100.100 ── R .1 | 192.0.2.1 ── brx ──┬── ext0 .11 [A] int0 172.16.0.11 ──┬── bri ── node1 .2
//	                         VIP 203.0.113.5 via         └── ext0 .12 [B] int0 172.16.0.12 ──┘        └ node2 .3
//	                         .11 and .12 (ECMP)
func TestECMPMaglev(t *testing.T) {
	ctx := bounded(t, 90*time.Second)
	needBinaries(t)
	const ecmpVIP = "203.0.113.5"
	p := testutil.RunPrefix("xvst")
	h := &haTopo{prefix: p}
	h.cli = testutil.NewNetNS(t, p+"-cli")
	rt := testutil.NewNetNS(t, p+"-rt")
	h.a = testutil.NewNetNS(t, p+"-dira")
	h.b = testutil.NewNetNS(t, p+"-dirb")
	h.sw = testutil.NewNetNS(t, p+"-sw")
	for i := range 2 {
		h.nodes = append(h.nodes, testutil.NewNetNS(t, p+"-"+testutil.ServerName(i)))
	}
	all := append(h.all(), rt)
	run := func(steps ...func() error) {
		t.Helper()
		for _, f := range steps {
			if err := f(); err != nil {
				t.Fatal(err)
			}
		}
	}
	ip := func(ns *testutil.NetNS, args ...string) func() error {
		return func() error { return ns.IP(args...) }
	}
	sysctl := func(ns *testutil.NetNS, k, v string) func() error {
		return func() error { return ns.Sysctl(k, v) }
	}
	port := func(ns *testutil.NetNS, ifname, swName, br string) func() error {
		return func() error {
			if err := testutil.Veth(ns, ifname, h.sw, swName); err != nil {
				return err
			}
			return h.sw.IP("link", "set", swName, "master", br)
		}
	}
	for _, ns := range all {
		run(sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1"), sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1"))
	}
	for _, ns := range []*testutil.NetNS{rt, h.a, h.b} {
		run(sysctl(ns, "net.ipv4.ip_forward", "1"), sysctl(ns, "net.ipv4.conf.all.rp_filter", "0"), sysctl(ns, "net.ipv4.conf.default.rp_filter", "0"))
	}
	run(
		sysctl(rt, "net.ipv4.fib_multipath_hash_policy", "1"),
		ip(h.sw, "link", "add", "brx", "type", "bridge"), ip(h.sw, "link", "set", "brx", "up"),
		ip(h.sw, "link", "add", "bri", "type", "bridge"), ip(h.sw, "link", "set", "bri", "up"),
		func() error { return testutil.Veth(h.cli, testutil.HostIf, rt, "eth0") },
		port(rt, "eth1", "rt", "brx"),
		port(h.a, testutil.DirectorExtIf, "ax", "brx"), port(h.b, testutil.DirectorExtIf, "bx", "brx"),
		port(h.a, testutil.DirectorIntIf, "ai", "bri"), port(h.b, testutil.DirectorIntIf, "bi", "bri"),
		ip(h.cli, "addr", "add", "198.51.100.100/24", "dev", testutil.HostIf),
		ip(h.cli, "route", "add", "default", "via", "198.51.100.1"),
		ip(rt, "addr", "add", "198.51.100.1/24", "dev", "eth0"),
		ip(rt, "addr", "add", "192.0.2.1/24", "dev", "eth1"),
		ip(rt, "route", "add", ecmpVIP+"/32", "via", "192.0.2.12"), // B alone first
	)
	for i, d := range []*testutil.NetNS{h.a, h.b} {
		run(
			ip(d, "addr", "add", fmt.Sprintf("192.0.2.%d/24", 11+i), "dev", testutil.DirectorExtIf),
			ip(d, "addr", "add", fmt.Sprintf("172.16.0.%d/24", 11+i), "dev", testutil.DirectorIntIf),
			ip(d, "addr", "add", ecmpVIP+"/32", "dev", "lo"),
			ip(d, "route", "add", "default", "via", "192.0.2.1"),
		)
	}
	mac := func(ns *testutil.NetNS) string {
		out, err := ns.Run("cat", "/sys/class/net/"+testutil.DirectorIntIf+"/address")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	macA, macB := mac(h.a), mac(h.b)
	for i, ns := range h.nodes {
		run(
			port(ns, testutil.HostIf, testutil.ServerName(i), "bri"),
			ip(ns, "addr", "add", []string{rs1, rs2}[i]+"/24", "dev", testutil.HostIf),
			// docs/ha.md, section 2: replies go back through the director
			// the flow came from.
			nft(ns, "add", "table", "ip", "xvs"),
			nft(ns, "add", "chain", "ip", "xvs", "pre", "{ type filter hook prerouting priority mangle; policy accept; }"),
			nft(ns, "add", "rule", "ip", "xvs", "pre", "ct", "state", "new", "ether", "saddr", macA, "ct", "mark", "set", "1"),
			nft(ns, "add", "rule", "ip", "xvs", "pre", "ct", "state", "new", "ether", "saddr", macB, "ct", "mark", "set", "2"),
			nft(ns, "add", "chain", "ip", "xvs", "out", "{ type route hook output priority mangle; policy accept; }"),
			nft(ns, "add", "rule", "ip", "xvs", "out", "meta", "mark", "set", "ct", "mark"),
			ip(ns, "rule", "add", "fwmark", "1", "table", "101"),
			ip(ns, "route", "add", "default", "via", "172.16.0.11", "table", "101"),
			ip(ns, "rule", "add", "fwmark", "2", "table", "102"),
			ip(ns, "route", "add", "default", "via", "172.16.0.12", "table", "102"),
			ip(ns, "route", "add", "default", "via", "172.16.0.11"),
		)
		testutil.StartUDPEcho(t, ns, ":53", testutil.ServerName(i))
	}
	for _, hop := range []struct {
		from *testutil.NetNS
		to   string
	}{
		{h.cli, "192.0.2.11"}, {h.cli, "192.0.2.12"}, {h.a, rs1}, {h.a, rs2}, {h.b, rs1}, {h.b, rs2},
	} {
		if err := testutil.Ping(ctx, hop.from, netip.MustParseAddr(hop.to)); err != nil {
			t.Fatalf("topology %s: %v", p, err)
		}
	}

	a := startDirector(t, h, h.a, "a")
	b := startDirector(t, h, h.b, "b")
	rules := "-A -u " + ecmpVIP + ":53 -s mh -b mh-port\n" +
		"-a -u " + ecmpVIP + ":53 -r " + rs1 + ":53 -m -w 1\n" +
		"-a -u " + ecmpVIP + ":53 -r " + rs2 + ":53 -m -w 1\n"
	for _, d := range []*daemon{a, b} {
		d.mustIn(rules, "-R")
	}
	to := netip.MustParseAddrPort(ecmpVIP + ":53")
	const n = 64
	send := func(phase string) []string {
		t.Helper()
		var got []string
		for i := range n {
			r, err := udpFrom(ctx, h.cli, 42000+i, to)
			if err != nil {
				t.Fatalf("%s, source port %d: %v", phase, 42000+i, err)
			}
			got = append(got, r)
		}
		return got
	}
	alone := send("director B alone")
	if rows := conns(t, a); len(rows) != 0 {
		t.Fatalf("A carried %d flows while the route pointed at B only", len(rows))
	}
	run(ip(rt, "route", "replace", ecmpVIP+"/32", "nexthop", "via", "192.0.2.11", "dev", "eth1", "weight", "1",
		"nexthop", "via", "192.0.2.12", "dev", "eth1", "weight", "1"))
	spread := send("ECMP")
	for i := range n {
		if spread[i] != alone[i] {
			t.Errorf("source port %d: %s through ECMP, %s through B alone", 42000+i, spread[i], alone[i])
		}
	}
	// A scheduled its share afresh and agreed with B.
	rowsA := conns(t, a)
	if len(rowsA) == 0 || len(rowsA) == n {
		t.Errorf("A carried %d of %d flows, want a share", len(rowsA), n)
	}
	for _, r := range rowsA {
		port := 0
		fmt.Sscanf(r.Source[strings.LastIndex(r.Source, ":")+1:], "%d", &port)
		i := port - 42000
		if i < 0 || i >= n {
			t.Errorf("A lists an unexpected flow %+v", r)
			continue
		}
		if want := map[string]string{"node1": rs1 + ":53", "node2": rs2 + ":53"}[alone[i]]; r.Dest != want {
			t.Errorf("A sent source port %d to %s, B alone chose %s", port, r.Dest, want)
		}
	}
	used := map[string]bool{}
	for _, r := range alone {
		used[r] = true
	}
	if len(used) != 2 {
		t.Errorf("B alone used %v, want both real servers over %d source ports", used, n)
	}
}

func nft(ns *testutil.NetNS, args ...string) func() error {
	return func() error {
		_, err := ns.Run("nft", args...)
		return err
	}
}

// keepalivedConf is docs/ha.md's configuration, with the test's
// interfaces, script and priority.
func keepalivedConf(name string, prio int, script string) string {
	return fmt.Sprintf(`global_defs {
    router_id %[1]s
    enable_script_security
    script_user root
}

vrrp_sync_group XVS {
    group {
        VI_VIP
        VI_GW
    }
    notify_master "%[3]s master"
    notify_backup "%[3]s backup"
    notify_fault  "%[3]s backup"
}

vrrp_instance VI_VIP {
    state BACKUP
    nopreempt
    interface %[4]s
    virtual_router_id 51
    priority %[2]d
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass xvsvip
    }
    virtual_ipaddress {
        %[6]s/24 dev %[4]s
    }
}

vrrp_instance VI_GW {
    state BACKUP
    nopreempt
    interface %[5]s
    virtual_router_id 52
    priority %[2]d
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass xvsgw
    }
    virtual_ipaddress {
        %[7]s/24 dev %[5]s
    }
}
`, name, prio, script, testutil.DirectorExtIf, testutil.DirectorIntIf, haVIP, haGW)
}

// notifyScript is docs/ha.md's notify script for one director's xvsd.
func notifyScript(xvsadm, sock string) string {
	return fmt.Sprintf(`#!/bin/sh
set -u
IF=%[3]s
ID=1
export XVS_SOCKET=%[2]s
case "$1" in
master)
    %[1]s --start-daemon master --mcast-interface "$IF" --syncid "$ID" || true
    %[1]s --stop-daemon backup || true
    ;;
backup)
    %[1]s --stop-daemon master || true
    %[1]s --start-daemon backup --mcast-interface "$IF" --syncid "$ID" || true
    ;;
esac
exit 0
`, xvsadm, sock, syncIf)
}

// keepalived runs keepalived (VRRP only) in ns with the docs' configuration
// until the test ends.
func startKeepalived(t *testing.T, h *haTopo, ns *testutil.NetNS, d *daemon, name string, prio int) *exec.Cmd {
	t.Helper()
	dir, err := os.MkdirTemp("", "xvst-ka-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	script := filepath.Join(dir, "xvs-notify.sh")
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(script, []byte(notifyScript(bins.xvsadm, d.sock)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(keepalivedConf(name, prio, script)), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "keepalived.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Exec(context.Background(), "keepalived", "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"--use-file", conf, "--pid", filepath.Join(dir, "k.pid"), "--vrrp_pid", filepath.Join(dir, "v.pid"),
		"--checkers_pid", filepath.Join(dir, "c.pid"))
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	logf.Close()
	if err != nil {
		t.Fatalf("start keepalived: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	h.diags = append(h.diags, func() string {
		b, _ := os.ReadFile(logPath)
		return fmt.Sprintf("##### keepalived %s\n%s", name, tail(string(b), 60))
	})
	return cmd
}

// hasAddr says whether ns has addr on ifname.
func hasAddr(ns *testutil.NetNS, ifname, addr string) bool {
	out, _ := ns.Run("ip", "-4", "-o", "addr", "show", "dev", ifname)
	return strings.Contains(out, " "+addr+"/")
}

// TestKeepalivedFailover: docs/ha.md section 1 with real keepalived
// processes. A becomes VRRP master (the VIP, the gateway, the sync master
// by its notify script); a long transfer and idle connections go through
// it; A's links go down and its xvsd is killed; B's keepalived takes the
// addresses (gratuitous ARP, no manual neighbour flush), its notify script
// makes it the sync master, and the transfer and the idle connections go on.
func TestKeepalivedFailover(t *testing.T) {
	needBinaries(t)
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("keepalived not installed (Debian: apt-get install keepalived)")
	}
	ctx := bounded(t, 150*time.Second)
	h := newHATopo(t)
	// keepalived owns the addresses.
	for _, args := range [][]string{
		{"addr", "del", haVIP + "/24", "dev", testutil.DirectorExtIf},
		{"addr", "del", haGW + "/24", "dev", testutil.DirectorIntIf},
	} {
		if err := h.a.IP(args...); err != nil {
			t.Fatal(err)
		}
	}
	sinks := map[string]*testutil.TCPSink{}
	for i, ns := range h.nodes {
		testutil.StartHTTP(t, ns, ":80", body(i))
		sinks[[]string{rs1, rs2}[i]+":9000"] = testutil.StartTCPSink(t, ns, ":9000")
	}
	// As the docs' unit file: every xvsd starts as a sync backup.
	a := startDirector(t, h, h.a, "a", "--sync-backup", syncIf, "--syncid", "1")
	b := startDirector(t, h, h.b, "b", "--sync-backup", syncIf, "--syncid", "1")
	haConfig(a, "-s", "rr")
	haConfig(b, "-s", "rr")

	waitUntil := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) || ctx.Err() != nil {
				t.Fatalf("waiting %v for %s", limit, what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	daemons := func(d *daemon) string {
		out, _, _ := d.adm("", "-L", "--daemon")
		return out
	}
	startKeepalived(t, h, h.a, a, "xvs1", 150)
	waitUntil("A to become VRRP master with the sync master", 20*time.Second, func() bool {
		return hasAddr(h.a, testutil.DirectorExtIf, haVIP) && hasAddr(h.a, testutil.DirectorIntIf, haGW) &&
			strings.HasPrefix(daemons(a), "master sync daemon (mcast=sync0, syncid=1")
	})
	startKeepalived(t, h, h.b, b, "xvs2", 100)
	waitUntil("B's keepalived to settle as backup", 10*time.Second, func() bool {
		return strings.HasPrefix(daemons(b), "backup sync daemon (mcast=sync0, syncid=1") && !hasAddr(h.b, testutil.DirectorExtIf, haVIP)
	})
	time.Sleep(2 * time.Second) // B stays backup: A keeps advertising
	if hasAddr(h.b, testutil.DirectorExtIf, haVIP) || !hasAddr(h.a, testutil.DirectorExtIf, haVIP) {
		t.Fatal("the VIP moved while A was up")
	}

	const idle = 20
	hcs := openIdle(ctx, t, h.cli, netip.MustParseAddrPort(haVIP+":80"), idle)
	conn, err := testutil.Dial(ctx, h.cli, netip.Addr{}, netip.MustParseAddrPort(haVIP+":9000"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cfg := testutil.StreamConfig{Total: 48 << 20, Chunk: 32 << 10, Pause: 8 * time.Millisecond, Seed: 11}
	st := startStream(ctx, conn, cfg)
	src := conn.LocalAddr().String()
	onA := findConn(conns(t, a), src, haVIP+":9000")
	if onA == nil {
		t.Fatalf("A has no conn for the transfer from %s", src)
	}
	waitUntil("B to have every connection", 15*time.Second, func() bool {
		have := 0
		for _, r := range conns(t, b) {
			if r.State == "ESTABLISHED" {
				have++
			}
		}
		return have == idle+1
	})
	if st.written.Load() >= cfg.Total/2 {
		t.Fatalf("transfer %d of %d bytes done before the failover: too fast for the test", st.written.Load(), cfg.Total)
	}

	// A dies: links down, xvsd killed. keepalived moves the addresses.
	atFailover := st.written.Load()
	for _, ifname := range []string{testutil.DirectorExtIf, testutil.DirectorIntIf} {
		if err := h.a.IP("link", "set", ifname, "down"); err != nil {
			t.Fatal(err)
		}
	}
	a.kill9()
	waitUntil("B to take the VIP and the gateway and become the sync master", 20*time.Second, func() bool {
		return hasAddr(h.b, testutil.DirectorExtIf, haVIP) && hasAddr(h.b, testutil.DirectorIntIf, haGW) &&
			strings.HasPrefix(daemons(b), "master sync daemon (mcast=sync0, syncid=1")
	})
	waitUntil("4 MiB more through B", 30*time.Second, func() bool { return st.written.Load() >= atFailover+4<<20 })

	var ok atomic.Int64
	var wg sync.WaitGroup
	for _, hc := range hcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := hc.Get(ctx); err == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() < idle-1 {
		t.Errorf("%d of %d idle connections answered after the failover, want at least %d", ok.Load(), idle, idle-1)
	}
	st.verify(ctx, t, sinks[onA.Dest])
}
