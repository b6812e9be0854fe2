package tests

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"xvs/testutil"
)

// The cases of issue 5, numbered as there. Each runs in fresh namespaces
// (testutil.NewTopo) with its own xvsd; cases marked * in the issue run in
// XDP and TC mode, the others in XDP mode.

const (
	vip     = "202.103.106.5"
	vipHTTP = vip + ":80"
	rs1     = "172.16.0.2"
	rs2     = "172.16.0.3"
	rs3     = "172.16.0.4"
)

var (
	bothModes = []testutil.Mode{testutil.ModeXDP, testutil.ModeTC}
	xdpOnly   = []testutil.Mode{testutil.ModeXDP}
)

// forModes runs f as a subtest per mode.
func forModes(t *testing.T, modes []testutil.Mode, f func(t *testing.T, mode testutil.Mode)) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			needBinaries(t)
			f(t, m)
		})
	}
}

// bounded returns a context that ends after d or with the test.
func bounded(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func body(i int) string { return "this is real server " + testutil.ServerName(i) + "\n" }

// nodeOf turns a response body into the real server's name ("node1").
func nodeOf(b string) string {
	return strings.TrimPrefix(strings.TrimSpace(b), "this is real server ")
}

// startWeb starts an HTTP server answering body(i) on addr in every real server.
func startWeb(t *testing.T, tp *testutil.Topo, addr string) []*testutil.HTTPServer {
	var s []*testutil.HTTPServer
	for i, ns := range tp.Servers {
		s = append(s, testutil.StartHTTP(t, ns, addr, body(i)))
	}
	return s
}

// getNodes makes n requests, each on a new connection, and returns which
// real server answered each; any failed request fails the test.
func getNodes(ctx context.Context, t *testing.T, c *http.Client, url string, n int) []string {
	t.Helper()
	var got []string
	for i := range n {
		b, err := testutil.Get(ctx, c, url)
		if err != nil {
			t.Fatalf("request %d of %d to %s: %v (answers so far: %v)", i+1, n, url, err, got)
		}
		got = append(got, nodeOf(b))
	}
	return got
}

// udpSockets opens n UDP sockets in ns at once, so that each has its own
// source port (a socket opened after another closed may get its port), and
// closes them when the test ends.
func udpSockets(t *testing.T, ns *testutil.NetNS, n int) []*net.UDPConn {
	t.Helper()
	var socks []*net.UDPConn
	for range n {
		pc, err := testutil.OpenUDP(ns, netip.Addr{}, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		socks = append(socks, pc)
	}
	return socks
}

func nodes(idx ...int) []string {
	var s []string
	for _, i := range idx {
		s = append(s, testutil.ServerName(i))
	}
	return s
}

// seedConfig is the operator's configuration from the seed document.
func seedConfig(d *daemon) {
	d.must("-A", "-t", vipHTTP, "-s", "rr")
	d.must("-a", "-t", vipHTTP, "-r", rs1+":80", "-m")
	d.must("-a", "-t", vipHTTP, "-r", rs2+":80", "-m")
}

func list(t *testing.T, d *daemon) []service {
	t.Helper()
	out := d.must("-L", "-n")
	svcs, err := parseList(out)
	if err != nil {
		t.Fatalf("parse xvsadm -L -n: %v\n%s", err, out)
	}
	return svcs
}

// 1*. The seed scenario: four requests give node1, node2, node1, node2.
func TestSeedScenario(t *testing.T) {
	forModes(t, bothModes, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		startWeb(t, tp, ":80")
		d := startDaemon(t, tp, mode)
		seedConfig(d)

		svc := findService(list(t, d), "TCP", vipHTTP)
		if svc == nil || svc.Rest != "rr" || len(svc.Dests) != 2 ||
			svc.dest(rs1+":80") == nil || svc.dest(rs2+":80") == nil ||
			svc.Dests[0].Forward != "Masq" || svc.Dests[0].Weight != 1 {
			t.Fatalf("listing after configuration: %+v", svc)
		}

		c := testutil.NewHTTPClient(tp.Client, netip.Addr{})
		if got, want := getNodes(ctx, t, c, "http://"+vip+"/", 4), nodes(0, 1, 0, 1); !slices.Equal(got, want) {
			t.Errorf("answers %v, want %v", got, want)
		}
	})
}

// 2. wrr with weights 3 and 1: eight new connections split 6:2 in IPVS's order.
func TestWeightedRoundRobin(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		startWeb(t, tp, ":80")
		d := startDaemon(t, tp, mode)
		d.must("-A", "-t", vipHTTP, "-s", "wrr")
		d.must("-a", "-t", vipHTTP, "-r", rs1+":80", "-m", "-w", "3")
		d.must("-a", "-t", vipHTTP, "-r", rs2+":80", "-m", "-w", "1")

		want := nodes(wrrOrder([]int{3, 1}, 8)...) // node1 node2 node1 node1 node1 node2 node1 node1
		got := getNodes(ctx, t, testutil.NewHTTPClient(tp.Client, netip.Addr{}), "http://"+vip+"/", 8)
		if !slices.Equal(got, want) {
			t.Errorf("answers %v, want %v", got, want)
		}
		count := map[string]int{}
		for _, n := range got {
			count[n]++
		}
		if count["node1"] != 6 || count["node2"] != 2 {
			t.Errorf("split %v, want node1:6 node2:2", count)
		}
	})
}

// waitDest polls `-L -n` (bounded) until cond holds for the dest of the service.
func waitDest(t *testing.T, d *daemon, proto, svcAddr, destAddr string, what string, cond func(dest) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last *dest
	for time.Now().Before(deadline) {
		if s := findService(list(t, d), proto, svcAddr); s != nil {
			if dd := s.dest(destAddr); dd != nil {
				last = dd
				if cond(*dd) {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s %s -> %s: %s not reached in 10s; last row %+v", proto, svcAddr, destAddr, what, last)
}

// 3. lc: with one long-lived connection held open to server A, the next new
// connections go to B.
func TestLeastConnection(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		startWeb(t, tp, ":80")
		d := startDaemon(t, tp, mode)
		d.must("-A", "-t", vipHTTP, "-s", "lc")
		d.must("-a", "-t", vipHTTP, "-r", rs1+":80", "-m")
		d.must("-a", "-t", vipHTTP, "-r", rs2+":80", "-m")

		long, err := testutil.DialHTTP(ctx, tp.Client, netip.Addr{}, netip.MustParseAddrPort(vipHTTP))
		if err != nil {
			t.Fatal(err)
		}
		defer long.Close()
		b, err := long.Get(ctx)
		if err != nil {
			t.Fatalf("long-lived connection: %v", err)
		}
		a := nodeOf(b)
		addrOf := map[string]string{"node1": rs1 + ":80", "node2": rs2 + ":80"}
		other := map[string]string{"node1": "node2", "node2": "node1"}[a]
		if other == "" {
			t.Fatalf("long-lived connection answered by %q", b)
		}
		// The precondition: the director counts A's connection as active.
		waitDest(t, d, "TCP", vipHTTP, addrOf[a], "ActiveConn 1", func(x dest) bool { return x.Active == 1 })

		c := testutil.NewHTTPClient(tp.Client, netip.Addr{})
		if got, want := getNodes(ctx, t, c, "http://"+vip+"/", 3), []string{other, other, other}; !slices.Equal(got, want) {
			t.Errorf("with a connection open to %s, new connections went to %v, want %v", a, got, want)
		}
		if b, err := long.Get(ctx); err != nil || nodeOf(b) != a {
			t.Errorf("long-lived connection afterwards: %q, %v; want %s", b, err, a)
		}
	})
}

// 4. sh: the same client address always reaches the same server; two
// clients from different addresses are spread.
func TestSourceHashing(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode, Clients: 8})
		startWeb(t, tp, ":80")
		d := startDaemon(t, tp, mode)
		d.must("-A", "-t", vipHTTP, "-s", "sh")
		d.must("-a", "-t", vipHTTP, "-r", rs1+":80", "-m")
		d.must("-a", "-t", vipHTTP, "-r", rs2+":80", "-m")

		// Two client addresses whose ip_vs_sh buckets fall on different
		// servers (two dests of weight 1 fill the buckets alternately).
		var a, b netip.Addr
		for _, c := range tp.V4.Clients {
			switch {
			case !a.IsValid():
				a = c
			case shBucket(c)%2 != shBucket(a)%2:
				b = c
			}
			if b.IsValid() {
				break
			}
		}
		if !b.IsValid() {
			t.Fatalf("no two client addresses with different sh buckets among %v", tp.V4.Clients)
		}
		got := map[netip.Addr][]string{}
		for round := range 4 {
			for _, src := range []netip.Addr{a, b} {
				body, err := testutil.Get(ctx, testutil.NewHTTPClient(tp.Client, src), "http://"+vip+"/")
				if err != nil {
					t.Fatalf("round %d from %s: %v", round, src, err)
				}
				got[src] = append(got[src], nodeOf(body))
			}
		}
		for _, src := range []netip.Addr{a, b} {
			if s := got[src]; len(slices.Compact(slices.Clone(s))) != 1 {
				t.Errorf("client %s reached %v, want one server throughout", src, s)
			}
		}
		if got[a][0] == got[b][0] {
			t.Errorf("clients %s (bucket %d) and %s (bucket %d) both reached %s, want them spread",
				a, shBucket(a), b, shBucket(b), got[a][0])
		}
	})
}

// 5*. UDP service (rr): datagrams from distinct source ports alternate;
// replies come back from the VIP.
func TestUDP(t *testing.T) {
	forModes(t, bothModes, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		for i, ns := range tp.Servers {
			testutil.StartUDPEcho(t, ns, ":53", testutil.ServerName(i))
		}
		d := startDaemon(t, tp, mode)
		svc := vip + ":53"
		d.must("-A", "-u", svc, "-s", "rr")
		d.must("-a", "-u", svc, "-r", rs1+":53", "-m")
		d.must("-a", "-u", svc, "-r", rs2+":53", "-m")

		to := netip.MustParseAddrPort(svc)
		socks := udpSockets(t, tp.Client, 4) // open together: distinct source ports
		var got []string
		var ports []string
		for i, pc := range socks {
			ports = append(ports, pc.LocalAddr().String())
			reply, from, err := testutil.ExchangeUDP(ctx, pc, to, []byte(fmt.Sprintf("datagram %d", i)))
			if err != nil {
				t.Fatalf("datagram %d: %v (answers so far %v)", i+1, err, got)
			}
			if from != to {
				t.Errorf("datagram %d: reply from %s, want the VIP %s", i+1, from, to)
			}
			got = append(got, string(reply))
		}
		if want := nodes(0, 1, 0, 1); !slices.Equal(got, want) {
			t.Errorf("answers %v from sources %v, want %v", got, ports, want)
		}
	})
}

// 6. Persistence (-p 30): a client's connections stick to one server;
// another client can land on the other.
func TestPersistence(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode, Clients: 2})
		startWeb(t, tp, ":80")
		d := startDaemon(t, tp, mode)
		d.must("-A", "-t", vipHTTP, "-s", "rr", "-p", "30")
		d.must("-a", "-t", vipHTTP, "-r", rs1+":80", "-m")
		d.must("-a", "-t", vipHTTP, "-r", rs2+":80", "-m")

		c1, c2 := tp.V4.Clients[0], tp.V4.Clients[1]
		got := map[netip.Addr][]string{}
		for _, src := range []netip.Addr{c1, c1, c1, c2, c2, c2, c1, c2} {
			b, err := testutil.Get(ctx, testutil.NewHTTPClient(tp.Client, src), "http://"+vip+"/")
			if err != nil {
				t.Fatalf("request from %s: %v (so far %v)", src, err, got)
			}
			got[src] = append(got[src], nodeOf(b))
		}
		for _, src := range []netip.Addr{c1, c2} {
			if len(slices.Compact(slices.Clone(got[src]))) != 1 {
				t.Errorf("client %s reached %v, want one server throughout", src, got[src])
			}
		}
		if got[c1][0] == got[c2][0] {
			t.Errorf("second client landed on %s like the first; with rr it should land on the other server", got[c2][0])
		}
	})
}

// 7. -d of a real server: new connections avoid it; weight 0 (-e … -w 0):
// new connections avoid it, an open connection keeps working.
func TestDeleteAndQuiesce(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 90*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode, RealServers: 3})
		startWeb(t, tp, ":80")
		d := startDaemon(t, tp, mode)
		d.must("-A", "-t", vipHTTP, "-s", "rr")
		for _, rs := range []string{rs1, rs2, rs3} {
			d.must("-a", "-t", vipHTTP, "-r", rs+":80", "-m")
		}
		c := testutil.NewHTTPClient(tp.Client, netip.Addr{})
		url := "http://" + vip + "/"
		if got := getNodes(ctx, t, c, url, 3); !slices.Equal(got, nodes(0, 1, 2)) {
			t.Errorf("before -d: %v, want %v", got, nodes(0, 1, 2))
		}

		d.must("-d", "-t", vipHTTP, "-r", rs2+":80")
		if svc := findService(list(t, d), "TCP", vipHTTP); svc == nil || svc.dest(rs2+":80") != nil || len(svc.Dests) != 2 {
			t.Errorf("after -d the listing is %+v", svc)
		}
		got := getNodes(ctx, t, c, url, 4)
		if slices.Contains(got, "node2") || !slices.Contains(got, "node1") || !slices.Contains(got, "node3") {
			t.Errorf("after -d of node2: %v, want node1 and node3 only", got)
		}

		// Weight 0: put node2 back, hold a connection open to it, quiesce it.
		d.must("-a", "-t", vipHTTP, "-r", rs2+":80", "-m")
		var open *testutil.HTTPConn
		for try := 0; try < 3 && open == nil; try++ {
			hc, err := testutil.DialHTTP(ctx, tp.Client, netip.Addr{}, netip.MustParseAddrPort(vipHTTP))
			if err != nil {
				t.Fatal(err)
			}
			b, err := hc.Get(ctx)
			if err != nil {
				t.Fatalf("kept-alive request: %v", err)
			}
			if nodeOf(b) == "node2" {
				open = hc
			} else {
				hc.Close()
			}
		}
		if open == nil {
			t.Fatal("no connection reached node2 in 3 rr rounds after re-adding it")
		}
		defer open.Close()
		d.must("-e", "-t", vipHTTP, "-r", rs2+":80", "-m", "-w", "0")
		if svc := findService(list(t, d), "TCP", vipHTTP); svc == nil || svc.dest(rs2+":80") == nil || svc.dest(rs2+":80").Weight != 0 {
			t.Errorf("after -e -w 0 the listing is %+v", svc)
		}
		got = getNodes(ctx, t, c, url, 4)
		if slices.Contains(got, "node2") {
			t.Errorf("after weight 0 on node2: %v, want no node2", got)
		}
		for i := range 2 {
			b, err := open.Get(ctx)
			if err != nil || nodeOf(b) != "node2" {
				t.Errorf("open connection to node2, request %d after weight 0: %q, %v", i+1, b, err)
			}
		}
	})
}

// 8. --set with short timeouts: idle entries leave -L -c -n and
// ActiveConn/InActConn return to 0.
func TestSetTimeouts(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 90*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		startWeb(t, tp, ":80")
		for i, ns := range tp.Servers {
			testutil.StartUDPEcho(t, ns, ":53", testutil.ServerName(i))
		}
		d := startDaemon(t, tp, mode)
		d.must("--set", "5", "5", "5")
		if out := d.must("-L", "--timeout"); strings.TrimSpace(out) != "Timeout (tcp tcpfin udp): 5 5 5" {
			t.Errorf("-L --timeout = %q", out)
		}
		udpSvc := vip + ":53"
		d.must("-A", "-t", vipHTTP, "-s", "rr")
		d.must("-a", "-t", vipHTTP, "-r", rs1+":80", "-m")
		d.must("-a", "-t", vipHTTP, "-r", rs2+":80", "-m")
		d.must("-A", "-u", udpSvc, "-s", "rr")
		d.must("-a", "-u", udpSvc, "-r", rs1+":53", "-m")
		d.must("-a", "-u", udpSvc, "-r", rs2+":53", "-m")

		// Two TCP connections left open and idle (ESTABLISHED), two UDP flows.
		for range 2 {
			hc, err := testutil.DialHTTP(ctx, tp.Client, netip.Addr{}, netip.MustParseAddrPort(vipHTTP))
			if err != nil {
				t.Fatal(err)
			}
			defer hc.Close()
			if _, err := hc.Get(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for _, pc := range udpSockets(t, tp.Client, 2) {
			if _, _, err := testutil.ExchangeUDP(ctx, pc, netip.MustParseAddrPort(udpSvc), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		// Precondition, polled for up to 2 s (well inside the 5 s timeouts):
		// the four entries are listed and counted.
		var before string
		for start := time.Now(); ; {
			out := d.must("-L", "-n", "-c")
			rows, err := parseConns(out)
			if err != nil {
				t.Fatalf("parse -L -n -c: %v\n%s", err, out)
			}
			counted := true
			svcs := list(t, d)
			for _, rs := range []string{rs1, rs2} {
				ts, us := findService(svcs, "TCP", vipHTTP), findService(svcs, "UDP", udpSvc)
				counted = counted && ts != nil && ts.dest(rs+":80") != nil && ts.dest(rs+":80").Active == 1 &&
					us != nil && us.dest(rs+":53") != nil && us.dest(rs+":53").Inactive == 1
			}
			before = out + d.must("-L", "-n")
			if len(rows) == 4 && counted {
				break
			}
			if time.Since(start) > 2*time.Second {
				t.Fatalf("want 4 entries (2 TCP ESTABLISHED, 2 UDP), ActiveConn 1 on each TCP dest and InActConn 1 on each UDP dest:\n%s", before)
			}
			time.Sleep(100 * time.Millisecond)
		}

		deadline := time.Now().Add(30 * time.Second)
		for {
			out := d.must("-L", "-n", "-c")
			rows, err := parseConns(out)
			if err != nil {
				t.Fatalf("parse -L -n -c: %v\n%s", err, out)
			}
			zero := true
			for _, s := range list(t, d) {
				for _, x := range s.Dests {
					zero = zero && x.Active == 0 && x.Inactive == 0
				}
			}
			if len(rows) == 0 && zero {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("30s after --set 5 5 5 entries remain or counters are not 0:\n%s\n%s", out, d.must("-L", "-n"))
			}
			select {
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
}

// 9*. Restart: a long TCP transfer through the VIP survives kill -9 of xvsd
// and a restart with no byte lost.
func TestRestart(t *testing.T) {
	forModes(t, bothModes, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 120*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		sink := testutil.StartTCPSink(t, tp.Servers[0], ":9000")
		d := startDaemon(t, tp, mode)
		svc := vip + ":9000"
		d.must("-A", "-t", svc, "-s", "rr")
		d.must("-a", "-t", svc, "-r", rs1+":9000", "-m")
		saved := d.must("-S", "-n")

		conn, err := testutil.Dial(ctx, tp.Client, netip.Addr{}, netip.MustParseAddrPort(svc))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		st := startStream(ctx, conn, testutil.StreamConfig{Total: 24 << 20, Chunk: 32 << 10, Pause: 5 * time.Millisecond, Seed: 9})
		waitFor := func(what string, cond func() bool) {
			t.Helper()
			deadline := time.After(20 * time.Second)
			for !cond() {
				select {
				case <-ctx.Done():
					t.Fatalf("waiting for %s: %v (written %d)", what, ctx.Err(), st.written.Load())
				case <-deadline:
					t.Fatalf("waiting for %s: stalled for 20s at %d bytes written", what, st.written.Load())
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
		waitFor("4 MiB before the kill", func() bool { return st.written.Load() >= 4<<20 })
		d.kill9()
		atKill := st.written.Load()
		// Established flows keep going while no daemon runs.
		waitFor("2 MiB more while xvsd is down", func() bool { return st.written.Load() >= atKill+2<<20 })
		d.restart()
		if got := d.must("-S", "-n"); got != saved {
			t.Errorf("service table after restart:\n%s\nwant:\n%s", got, saved)
		}

		st.verify(ctx, t, sink)

		// And new connections work with the restarted daemon.
		conn2, err := testutil.Dial(ctx, tp.Client, netip.Addr{}, netip.MustParseAddrPort(svc))
		if err != nil {
			t.Fatalf("new connection after restart: %v", err)
		}
		defer conn2.Close()
		s2, err := testutil.WriteStream(ctx, conn2, testutil.StreamConfig{Total: 1 << 20, Seed: 10}, nil)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := sink.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r2.Bytes != s2.Bytes || r2.Sum != s2.Sum {
			t.Errorf("after restart: received %d bytes (sha256 match %v), sent %d", r2.Bytes, r2.Sum == s2.Sum, s2.Bytes)
		}
	})
}

// 10. Save/restore: -S then -C then -R under live traffic restores the same
// listing; a save file in ipvsadm's non-numeric form loads.
func TestSaveRestore(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 90*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		startWeb(t, tp, ":80")
		for i, ns := range tp.Servers {
			testutil.StartUDPEcho(t, ns, ":53", testutil.ServerName(i))
		}
		d := startDaemon(t, tp, mode)
		udpSvc := vip + ":53"
		d.must("-A", "-t", vipHTTP, "-s", "rr")
		d.must("-a", "-t", vipHTTP, "-r", rs1+":80", "-m")
		d.must("-a", "-t", vipHTTP, "-r", rs2+":80", "-m", "-w", "2")
		d.must("-A", "-u", udpSvc, "-s", "wlc", "-p", "60")
		d.must("-a", "-u", udpSvc, "-r", rs1+":53", "-m", "-w", "3")
		d.must("-a", "-u", udpSvc, "-r", rs2+":53", "-m")

		// Live traffic: one request every 20 ms, at most 3000, until stopped.
		var ok, failed atomic.Int64
		stop := make(chan struct{})
		var stopOnce sync.Once
		var wg sync.WaitGroup
		stopTraffic := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := testutil.NewHTTPClient(tp.Client, netip.Addr{})
			for range 3000 {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				if _, err := testutil.Get(rctx, c, "http://"+vip+"/"); err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
				cancel()
			}
		}()
		defer stopTraffic()
		waitOK := func(n int64, what string) {
			t.Helper()
			target := ok.Load() + n
			for ok.Load() < target {
				select {
				case <-ctx.Done():
					t.Fatalf("%s: only %d requests succeeded (%d failed): %v", what, ok.Load(), failed.Load(), ctx.Err())
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
		waitOK(5, "traffic before save")

		saved := d.must("-S", "-n")
		if n := strings.Count(saved, "\n"); n != 6 {
			t.Errorf("-S -n wrote %d lines, want 6:\n%s", n, saved)
		}
		before := withoutCounters(list(t, d))
		d.must("-C")
		if svcs := list(t, d); len(svcs) != 0 {
			t.Errorf("after -C the listing still has %+v", svcs)
		}
		d.mustIn(saved, "-R")
		if got := d.must("-S", "-n"); got != saved {
			t.Errorf("-S -n after restore:\n%s\nwant:\n%s", got, saved)
		}
		if got := withoutCounters(list(t, d)); got != before {
			t.Errorf("listing after restore:\n%s\nwant:\n%s", got, before)
		}
		waitOK(5, "traffic after restore")
		// Quiet from here on: the next service's rr order is asserted.
		stopTraffic()

		// The seed's ipvsadm-save output, names resolved by a hosts file
		// that `ip netns exec` puts over /etc/hosts in the director namespace.
		etc := filepath.Join("/etc/netns", tp.Director.Name)
		if err := os.MkdirAll(etc, 0o755); err != nil {
			t.Fatal(err)
		}
		hosts := "127.0.0.1 localhost\n202.103.106.5 filesystem.server.com filesystem\n"
		if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte(hosts), 0o644); err != nil {
			t.Fatal(err)
		}
		seedSave := "-A -t filesystem.server.com:http -s rr\n" +
			"-a -t filesystem.server.com:http -r 172.16.0.2:http -m -w 1\n" +
			"-a -t filesystem.server.com:http -r 172.16.0.3:http -m -w 1\n"
		d.must("-C")
		d.mustIn(seedSave, "-R")
		want := "-A -t 202.103.106.5:80 -s rr\n" +
			"-a -t 202.103.106.5:80 -r 172.16.0.2:80 -m -w 1\n" +
			"-a -t 202.103.106.5:80 -r 172.16.0.3:80 -m -w 1\n"
		if got := d.must("-S", "-n"); got != want {
			t.Errorf("-S -n after restoring the named file:\n%s\nwant:\n%s", got, want)
		}
		if got, want := getNodes(ctx, t, testutil.NewHTTPClient(tp.Client, netip.Addr{}), "http://"+vip+"/", 4), nodes(0, 1, 0, 1); !slices.Equal(got, want) {
			t.Errorf("answers after restoring the named file: %v, want %v", got, want)
		}
	})
}

// 11. IPv6: a service on an IPv6 VIP with two IPv6 real servers, rr.
func TestIPv6(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode, IPv6: true})
		startWeb(t, tp, ":80")
		d := startDaemon(t, tp, mode)
		p := tp.V6
		svc := netip.AddrPortFrom(p.VIP, 80).String()
		d.must("-A", "-t", svc, "-s", "rr")
		for _, rs := range p.Servers {
			d.must("-a", "-t", svc, "-r", netip.AddrPortFrom(rs, 80).String(), "-m")
		}
		s := findService(list(t, d), "TCP", svc)
		if s == nil || len(s.Dests) != 2 {
			t.Fatalf("listing: %+v", s)
		}
		c := testutil.NewHTTPClient(tp.Client, netip.Addr{})
		if got, want := getNodes(ctx, t, c, "http://"+svc+"/", 4), nodes(0, 1, 0, 1); !slices.Equal(got, want) {
			t.Errorf("answers %v, want %v", got, want)
		}
	})
}

// 12. Two services on the same VIP (80 and 8080) with different
// schedulers; the director's own traffic is untouched.
func TestTwoServicesAndOwnTraffic(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		startWeb(t, tp, ":80")
		startWeb(t, tp, ":8080")
		own := testutil.StartHTTP(t, tp.Director, ":9090", "this is the director\n")
		d := startDaemon(t, tp, mode)
		alt := vip + ":8080"
		d.must("-A", "-t", vipHTTP, "-s", "rr")
		d.must("-a", "-t", vipHTTP, "-r", rs1+":80", "-m")
		d.must("-a", "-t", vipHTTP, "-r", rs2+":80", "-m")
		d.must("-A", "-t", alt, "-s", "wrr")
		d.must("-a", "-t", alt, "-r", rs1+":8080", "-m", "-w", "1")
		d.must("-a", "-t", alt, "-r", rs2+":8080", "-m", "-w", "2")

		c := testutil.NewHTTPClient(tp.Client, netip.Addr{})
		var got80, got8080 []string
		for i := range 6 { // interleaved: each service keeps its own scheduler state
			if i < 4 {
				got80 = append(got80, getNodes(ctx, t, c, "http://"+vipHTTP+"/", 1)...)
			}
			got8080 = append(got8080, getNodes(ctx, t, c, "http://"+alt+"/", 1)...)
		}
		if want := nodes(0, 1, 0, 1); !slices.Equal(got80, want) {
			t.Errorf("port 80 (rr): %v, want %v", got80, want)
		}
		if want := nodes(wrrOrder([]int{1, 2}, 6)...); !slices.Equal(got8080, want) {
			t.Errorf("port 8080 (wrr 1:2): %v, want %v", got8080, want)
		}

		// The director's own service, from outside and from a real server.
		for _, from := range []struct {
			ns  *testutil.NetNS
			url string
		}{
			{tp.Client, "http://" + vip + ":9090/"},
			{tp.Servers[0], "http://" + tp.V4.DirectorInt.String() + ":9090/"},
		} {
			b, err := testutil.Get(ctx, testutil.NewHTTPClient(from.ns, netip.Addr{}), from.url)
			if err != nil || strings.TrimSpace(b) != "this is the director" {
				t.Errorf("director's own service from %s (%s): %q, %v", from.ns.Name, from.url, b, err)
			}
		}
		if own.Hits() != 2 {
			t.Errorf("director's own server answered %d requests, want 2", own.Hits())
		}
		out := d.must("-L", "-n", "-c")
		if strings.Contains(out, ":9090") {
			t.Errorf("the director's own traffic shows in the connection table:\n%s", out)
		}
	})
}

// 14. Many connections: 20,000 short HTTP connections through the VIP with
// a bounded load loop; none fails; --stats counters match the client's count.
func TestManyConnections(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		const total, workers = 20000, 8
		ctx := bounded(t, 180*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		// 20,000 connections need more source ports than the default range.
		if err := tp.Client.Sysctl("net.ipv4.ip_local_port_range", "10000 65000"); err != nil {
			t.Fatal(err)
		}
		servers := startWeb(t, tp, ":80")
		d := startDaemon(t, tp, mode)
		seedConfig(d)

		var next, ok atomic.Int64
		var mu sync.Mutex
		var errs []string
		ports := map[int]int{} // client source port -> connections that used it
		var failed atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// A new connection per request, recording its source port:
				// the kernel reuses a port as soon as the previous
				// connection on it is closed, which a director must treat
				// as a new connection (reference/ipvs.md §5.8).
				c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
					DisableKeepAlives: true,
					DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
						conn, err := testutil.Dial(ctx, tp.Client, netip.Addr{}, netip.MustParseAddrPort(addr))
						if err == nil {
							mu.Lock()
							ports[conn.LocalAddr().(*net.TCPAddr).Port]++
							mu.Unlock()
						}
						return conn, err
					},
				}}
				for next.Add(1) <= total && ctx.Err() == nil {
					if _, err := testutil.Get(ctx, c, "http://"+vip+"/"); err != nil {
						failed.Add(1)
						mu.Lock()
						if len(errs) < 10 {
							errs = append(errs, err.Error())
						}
						mu.Unlock()
						continue
					}
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			t.Fatalf("load loop hit its time cap: %d ok, %d failed of %d", ok.Load(), failed.Load(), total)
		}
		reused := 0
		for _, n := range ports {
			reused += n - 1
		}
		t.Logf("%d connections from %d distinct source ports (%d reused the 4-tuple of a closed connection)", total, len(ports), reused)
		if ok.Load() != total || failed.Load() != 0 {
			t.Fatalf("%d ok, %d failed of %d; first errors:\n%s", ok.Load(), failed.Load(), total, strings.Join(errs, "\n"))
		}
		var hits int64
		for _, s := range servers {
			hits += s.Hits()
		}
		if hits != total {
			t.Errorf("real servers answered %d requests, want %d", hits, total)
		}

		// Counters are read live from per-CPU maps; allow them a moment.
		var rows []statsRow
		var out string
		deadline := time.Now().Add(5 * time.Second)
		for {
			out = d.must("-L", "-n", "--stats")
			var err error
			if rows, err = parseStats(out); err != nil {
				t.Fatalf("parse --stats: %v\n%s", err, out)
			}
			if statsConns(rows, "TCP "+vipHTTP) == total || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if got := statsConns(rows, "TCP "+vipHTTP); got != total {
			t.Errorf("--stats: service Conns %d, want %d (the client used %d distinct source ports; "+
				"%d connections reused the 4-tuple of an earlier, closed one)\n%s", got, total, len(ports), reused, out)
		}
		if sum := statsConns(rows, "-> "+rs1+":80") + statsConns(rows, "-> "+rs2+":80"); sum != total {
			t.Errorf("--stats: real servers' Conns sum to %d, want %d\n%s", sum, total, out)
		}
		// An rr service has a ring: a reused 4-tuple's old conn is
		// removed and the SYN scheduled in the datapath, not by xvsd.
		cnt := d.must("--counters")
		if n := counterValue(cnt, "sched_reused"); reused > 0 && n == 0 {
			t.Errorf("%d connections reused a 4-tuple, sched_reused is 0:\n%s", reused, cnt)
		}
		if n := counterValue(cnt, "punt_reused"); n != 0 {
			t.Errorf("punt_reused %d: xvsd handled port reuse the datapath should have:\n%s", n, cnt)
		}
		t.Logf("sched_reused %d", counterValue(cnt, "sched_reused"))
	})
}

// counterValue is the value of counter name in xvsadm --counters output
// (0 if it is not there).
func counterValue(out, name string) uint64 {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			return v
		}
	}
	return 0
}

func statsConns(rows []statsRow, name string) uint64 {
	for _, r := range rows {
		if r.Name == name {
			return r.Conns
		}
	}
	return 0
}

// The daemon's life cycle, which every case relies on: xvsd exits promptly
// on SIGTERM and SIGINT, and `xvsd down` leaves the interfaces as they were.
func TestDaemonStopsOnSignal(t *testing.T) {
	for _, tt := range []struct {
		name string
		sig  syscall.Signal
	}{{"SIGTERM", syscall.SIGTERM}, {"SIGINT", syscall.SIGINT}} {
		sig := tt.sig
		t.Run(tt.name, func(t *testing.T) {
			needBinaries(t)
			ctx := bounded(t, 60*time.Second)
			tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: testutil.ModeXDP})
			startWeb(t, tp, ":80")
			d := startDaemon(t, tp, testutil.ModeXDP)
			seedConfig(d)
			getNodes(ctx, t, testutil.NewHTTPClient(tp.Client, netip.Addr{}), "http://"+vip+"/", 2)
			if !d.signal(sig, 5*time.Second) {
				t.Fatalf("xvsd still running 5s after %s", tt.name)
			}
			t.Logf("xvsd exited after %s: %v", tt.name, d.err)

			out, err := tp.Director.Exec(ctx, bins.xvsd, append([]string{"down", "--bpffs", d.bpffs, "--tap", d.tap}, d.stateArgs()...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("xvsd down: %v: %s", err, out)
			}
			for _, ifname := range []string{testutil.DirectorExtIf, testutil.DirectorIntIf} {
				link, err := tp.Director.Run("ip", "-d", "link", "show", ifname)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(link, "prog/xdp") || strings.Contains(link, " xdp") {
					t.Errorf("after xvsd down, %s still has an XDP program:\n%s", ifname, link)
				}
				filters, err := tp.Director.Run("tc", "filter", "show", "dev", ifname, "ingress")
				if err != nil {
					t.Fatal(err)
				}
				if strings.TrimSpace(filters) != "" {
					t.Errorf("after xvsd down, %s still has tc filters:\n%s", ifname, filters)
				}
			}
			if _, err := tp.Director.Run("ip", "link", "show", d.tap); err == nil {
				t.Errorf("after xvsd down the punt device %s still exists", d.tap)
			}
		})
	}
}
