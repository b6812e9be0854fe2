package tests

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"xvs/bpf"
	"xvs/testutil"
)

// routeGen reads cfg.route_gen from the daemon's pinned xvs_cfg.
func routeGen(t *testing.T, d *daemon) uint32 {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(d.bpffs, "xvs_cfg"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var c bpf.XvsCfg
	if err := m.Lookup(uint32(0), &c); err != nil {
		t.Fatal(err)
	}
	return c.RouteGen
}

// TestRealServerNewMAC: a real server's address moves to a machine with
// another MAC address. xvsd sees the neighbour change and the datapath
// stops using the next hop it cached: new connections follow the
// neighbour table, the wrong MAC first, then the kernel's new answer.
func TestRealServerNewMAC(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		startWeb(t, tp, ":80")
		d := startDaemon(t, tp, mode)
		d.must("-A", "-t", vipHTTP, "-s", "rr")
		d.must("-a", "-t", vipHTTP, "-r", rs1+":80", "-m")
		target := netip.MustParseAddrPort(vipHTTP)
		dial := func(within time.Duration) error {
			cctx, cancel := context.WithTimeout(ctx, within)
			defer cancel()
			c, err := testutil.Dial(cctx, tp.Client, netip.Addr{}, target)
			if err == nil {
				c.Close()
			}
			return err
		}
		waitGen := func(what string, after uint32) {
			t.Helper()
			for deadline := time.Now().Add(5 * time.Second); routeGen(t, d) == after; {
				if time.Now().After(deadline) {
					t.Fatalf("%s: route generation still %d after 5 s", what, after)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}

		if err := dial(5 * time.Second); err != nil {
			t.Fatalf("before the change: %v", err)
		}
		g := routeGen(t, d)
		if err := tp.Director.IP("neigh", "replace", rs1, "lladdr", "02:00:00:00:00:99", "dev", testutil.DirectorIntIf, "nud", "permanent"); err != nil {
			t.Fatal(err)
		}
		waitGen("neighbour replaced", g)
		if err := dial(time.Second); err == nil {
			t.Error("a connection got through to a MAC address nobody has")
		}
		g = routeGen(t, d)
		if err := tp.Director.IP("neigh", "del", rs1, "dev", testutil.DirectorIntIf); err != nil {
			t.Fatal(err)
		}
		waitGen("neighbour deleted", g)
		if err := dial(5 * time.Second); err != nil {
			t.Fatalf("after the kernel resolved the server again: %v", err)
		}
	})
}
