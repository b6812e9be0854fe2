package testutil

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestTopoNftablesStandIn checks the topology, servers and clients without
// xvs: the director's kernel does the load balancing with an nftables DNAT
// rule (round robin by numgen), which must give the seed's answers.
func TestTopoNftablesStandIn(t *testing.T) {
	NeedRoot(t)
	tests := []struct {
		name string
		mode Mode
		ipv6 bool
	}{
		{name: "xdp offloads", mode: ModeXDP},
		{name: "tc offloads", mode: ModeTC},
		{name: "dual stack", mode: ModeXDP, ipv6: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := NewTopo(t, TopoConfig{Mode: tt.mode, IPv6: tt.ipv6})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i, ns := range tp.Servers {
				StartHTTP(t, ns, ":80", "this is real server "+ServerName(i)+"\n")
				StartUDPEcho(t, ns, ":53", ServerName(i))
			}
			sink := StartTCPSink(t, tp.Servers[0], ":9000")

			rules := `table inet xvst {
	chain pre {
		type nat hook prerouting priority dstnat;
		ip daddr 202.103.106.5 meta l4proto { tcp, udp } th dport { 53, 80 } dnat ip to numgen inc mod 2 map { 0 : 172.16.0.2, 1 : 172.16.0.3 }
		ip daddr 202.103.106.5 tcp dport 9000 dnat ip to 172.16.0.2
		ip6 daddr 2001:db8:1::5 tcp dport 80 dnat ip6 to numgen inc mod 2 map { 0 : 2001:db8:2::2, 1 : 2001:db8:2::3 }
	}
}
`
			cmd := tp.Director.Exec(ctx, "nft", "-f", "-")
			cmd.Stdin = strings.NewReader(rules)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nft: %v: %s", err, out)
			}

			// Plain routing client -> real server (no VIP) with a route the
			// seed topology itself does not need.
			if err := tp.Client.IP("route", "add", "172.16.0.0/24", "via", "202.103.106.5"); err != nil {
				t.Fatal(err)
			}
			if err := Ping(ctx, tp.Client, tp.V4.Servers[1]); err != nil {
				t.Fatal(err)
			}

			c := NewHTTPClient(tp.Client, netip.Addr{})
			want := []string{"node1", "node2", "node1", "node2"}
			for i, w := range want {
				body, err := Get(ctx, c, "http://202.103.106.5/")
				if err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
				if got := strings.TrimSpace(body); got != "this is real server "+w {
					t.Errorf("request %d: got %q, want node %s", i+1, got, w)
				}
			}
			if tt.ipv6 {
				for i, w := range want {
					body, err := Get(ctx, c, "http://[2001:db8:1::5]/")
					if err != nil {
						t.Fatalf("v6 request %d: %v", i+1, err)
					}
					if got := strings.TrimSpace(body); got != "this is real server "+w {
						t.Errorf("v6 request %d: got %q, want %s", i+1, got, w)
					}
				}
			}

			vip := netip.MustParseAddrPort("202.103.106.5:53")
			seen := map[string]int{}
			var socks []*net.UDPConn // open together: distinct source ports
			for range 4 {
				pc, err := OpenUDP(tp.Client, netip.Addr{}, false)
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				socks = append(socks, pc)
			}
			for i, pc := range socks {
				reply, from, err := ExchangeUDP(ctx, pc, vip, []byte("hello"))
				if err != nil {
					t.Fatalf("udp %d: %v", i, err)
				}
				if from != vip {
					t.Errorf("udp %d: reply from %s, want %s", i, from, vip)
				}
				seen[string(reply)]++
			}
			if seen["node1"] != 2 || seen["node2"] != 2 {
				t.Errorf("udp replies %v, want 2 from each node", seen)
			}

			hc, err := DialHTTP(ctx, tp.Client, netip.Addr{}, netip.MustParseAddrPort("202.103.106.5:80"))
			if err != nil {
				t.Fatal(err)
			}
			defer hc.Close()
			first, err := hc.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				again, err := hc.Get(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if again != first {
					t.Errorf("kept-alive connection changed server: %q then %q", first, again)
				}
			}

			conn, err := Dial(ctx, tp.Client, netip.Addr{}, netip.MustParseAddrPort("202.103.106.5:9000"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var written atomic.Int64
			sent, err := WriteStream(ctx, conn, StreamConfig{Total: 4 << 20, Seed: 7}, &written)
			if err != nil {
				t.Fatal(err)
			}
			got, err := sink.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got.Err != nil || got.Bytes != sent.Bytes || got.Sum != sent.Sum {
				t.Errorf("sink got %d bytes (err %v), sum match %v; sent %d", got.Bytes, got.Err, got.Sum == sent.Sum, sent.Bytes)
			}
		})
	}
}

func TestRunPrefix(t *testing.T) {
	a, b := RunPrefix("xvst"), RunPrefix("xvst")
	if a == b || !strings.HasPrefix(a, "xvst-") || len(a) != len("xvst-")+6 {
		t.Errorf("RunPrefix gave %q and %q", a, b)
	}
}

// logRecorder captures what Dump logs.
type logRecorder struct {
	testing.TB
	logs []string
}

func (r *logRecorder) Log(args ...any) {
	for _, a := range args {
		r.logs = append(r.logs, fmt.Sprint(a))
	}
}

func TestTopoDump(t *testing.T) {
	NeedRoot(t)
	tp := NewTopo(t, TopoConfig{Mode: ModeTC})
	tp.AddDiag(func() string { return "diag hook output" })
	rec := &logRecorder{TB: t}
	tp.t = rec
	tp.Dump()
	tp.Dump() // only once
	if len(rec.logs) != 1 {
		t.Fatalf("Dump logged %d times, want 1", len(rec.logs))
	}
	out := rec.logs[0]
	for _, want := range []string{
		"diag hook output",
		"--- netns " + tp.Director.Name,
		"ext0", "202.103.106.5/24", "172.16.0.1/24",
		"default via 172.16.0.1 dev eth0",
		"master br0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dump lacks %q:\n%s", want, out)
		}
	}
}
