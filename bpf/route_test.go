package bpf

import (
	"bytes"
	"maps"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"xvs/testutil"
)

// route is the newest entry of dest id in xvs_routes over all CPUs (a
// test run may land on any), or a zero entry.
func (e *env) route(id uint32) XvsRoute {
	e.t.Helper()
	var per []XvsRoute
	if err := e.objs.XvsRoutes.Lookup(id, &per); err != nil {
		e.t.Fatal(err)
	}
	var r XvsRoute
	for _, x := range per {
		if x.Stamp > r.Stamp {
			r = x
		}
	}
	return r
}

// ageRoutes makes every CPU's entry of dest id older than the maximum age.
func (e *env) ageRoutes(id uint32) {
	e.t.Helper()
	var per []XvsRoute
	if err := e.objs.XvsRoutes.Lookup(id, &per); err != nil {
		e.t.Fatal(err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		e.t.Fatal(err)
	}
	for i := range per {
		if per[i].Stamp != 0 {
			per[i].Stamp = uint64(ts.Nano()) - 2*routeMaxAge
		}
	}
	if err := e.objs.XvsRoutes.Put(id, per); err != nil {
		e.t.Fatal(err)
	}
}

// routeMaxAge is XVS_ROUTE_MAX_AGE_NS.
const routeMaxAge = 100_000_000

func (e *env) bumpRouteGen() {
	e.t.Helper()
	var c XvsCfg
	if err := e.objs.XvsCfg.Lookup(uint32(0), &c); err != nil {
		e.t.Fatal(err)
	}
	c.RouteGen++
	if err := e.objs.XvsCfg.Put(uint32(0), c); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) setNeigh(l *tlink, ip netip.Addr, mac net.HardwareAddr) {
	e.t.Helper()
	err := e.ns.do(func() error {
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: l.index, State: netlink.NUD_PERMANENT,
			IP: net.IP(ip.AsSlice()), HardwareAddr: mac})
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// pinCPU0 keeps the namespace thread that runs the programs on CPU 0 for
// the rest of the test: xvs_routes is per CPU, and a run on another CPU
// would look its next hop up afresh.
func (e *env) pinCPU0() {
	e.t.Helper()
	err := e.ns.do(func() error {
		var all, one unix.CPUSet
		if err := unix.SchedGetaffinity(0, &all); err != nil {
			return err
		}
		one.Set(0)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			return err
		}
		e.t.Cleanup(func() { _ = e.ns.do(func() error { return unix.SchedSetaffinity(0, &all) }) })
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestRouteCache: in XDP a client -> server packet takes its real server's
// next hop from xvs_routes, and the entry is looked up again when the
// routing generation moves, when it is too old and when the dest's
// address changes; the cached MTU answers as the lookup does.
func TestRouteCache(t *testing.T) {
	xdp := entries[0]
	if !xdp.xdp {
		t.Fatal("entries[0] is not the XDP entry")
	}
	macNew := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	for fi, fa := range families {
		t.Run(fa.name, func(t *testing.T) {
			e := newEnv(t)
			e.pinCPU0()
			setupConns(e)
			cport := cportOf(fi, 1)
			cli, vip, rs := ap(fa.cli, cport), ap(fa.vip, vport), ap(fa.rs, rport)
			id := destRS + uint32(fi*v6IDs)
			in := frame(cli, vip, testutil.ProtoUDP, 0, macCli, macExt)
			fwd := func(to netip.AddrPort, mac, emac []byte) []byte {
				f := in
				f.Dst, f.DstPort, f.TTL, f.DstMAC, f.SrcMAC = to.Addr(), to.Port(), f.TTL-1, mac, emac
				return f.Bytes()
			}
			hit := func(step string, out []byte) {
				t.Helper()
				e.check(t, xdp, dpCase{name: step, in: in.Bytes(), ingress: e.ext.index, want: vRedirect,
					out: out, reason: XvsReasonREASON_FWD_IN})
			}

			hit("cold", fwd(rs, macRS, macInt))
			r := e.route(id)
			if r.Stamp == 0 || r.Ifindex != uint32(e.intl.index) || r.Mtu != 1500 ||
				!bytes.Equal(r.Dmac[:], macRS) || !bytes.Equal(r.Smac[:], macInt) || r.Addr != addr16(fa.rs) {
				t.Fatalf("route after the first packet: %+v", r)
			}

			e.setNeigh(e.intl, fa.rs, macNew)
			hit("cached, neighbour changed", fwd(rs, macRS, macInt))
			e.bumpRouteGen()
			hit("after a new routing generation", fwd(rs, macNew, macInt))

			e.setNeigh(e.intl, fa.rs, macRS)
			hit("cached, neighbour changed back", fwd(rs, macNew, macInt))
			e.ageRoutes(id)
			hit("after the maximum age", fwd(rs, macRS, macInt))

			if !fa.cli.Is4() {
				return
			}
			// The same dest id now names a server behind mtu0: no
			// packet may follow the old address's route.
			e.setDestAddr(id, rsMTU4)
			hit("dest address changed", fwd(ap(rsMTU4, rport), macRSMTU, macMTU))
			if r := e.route(id); r.Ifindex != uint32(e.mtu.index) || r.Mtu != 600 {
				t.Fatalf("route after the address change: %+v", r)
			}
		})
	}
	// Too big, with and without DF, gives the same answer from the
	// cached MTU as from the lookup.
	t.Run("mtu", func(t *testing.T) {
		e := newEnv(t)
		e.pinCPU0()
		setupConns(e)
		cli, vip := ap(cli4, cportOf(0, 1)+4), ap(vip4, vport)
		small := frame(cli, vip, testutil.ProtoUDP, 0, macCli, macExt)
		big := small
		big.Payload = make([]byte, 1000)
		bigDF := big
		bigDF.FragOff = testutil.IPv4DF
		for _, f := range []testutil.Frame{big, bigDF} {
			e.resetRoutes(destMTU)
			cold, coldOut, err := e.run(xdp, f.Bytes(), e.ext.index)
			if err != nil {
				t.Fatal(err)
			}
			coldReasons := e.reasons()
			if got, _, err := e.run(xdp, small.Bytes(), e.ext.index); err != nil || got != xdp.code(vRedirect) {
				t.Fatalf("small packet: verdict %d, %v", got, err)
			}
			if r := e.route(destMTU); r.Mtu != 600 {
				t.Fatalf("route of the mtu dest: %+v", r)
			}
			e.resetReasons()
			got, out, err := e.run(xdp, f.Bytes(), e.ext.index)
			if err != nil {
				t.Fatal(err)
			}
			if got != cold || !bytes.Equal(out, coldOut) {
				t.Errorf("DF %v: cached route gave verdict %d, output %x; lookup gave %d, %x",
					f.FragOff != 0, got, out, cold, coldOut)
			}
			if r := e.reasons(); !maps.Equal(r, coldReasons) {
				t.Errorf("DF %v: reasons %v, from the lookup %v", f.FragOff != 0, r, coldReasons)
			}
		}
	})
}

// resetRoutes empties dest id's entry on every CPU.
func (e *env) resetRoutes(id uint32) {
	e.t.Helper()
	per := make([]XvsRoute, ebpf.MustPossibleCPU())
	if err := e.objs.XvsRoutes.Put(id, per); err != nil {
		e.t.Fatal(err)
	}
	e.resetReasons()
}
