package bpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"xvs/testutil"
)

// netNS runs functions on one OS thread that lives in a fresh network
// namespace. The thread is never unlocked: when the goroutine ends, the
// thread exits and the namespace (unnamed, created by unshare) goes with it.
type netNS struct {
	fns chan func()
}

func newNetNS(t testing.TB) *netNS {
	t.Helper()
	ns := &netNS{fns: make(chan func())}
	errc := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		errc <- nil
		for fn := range ns.fns {
			fn()
		}
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(ns.fns) })
	return ns
}

// twin returns a second thread in the same namespace, to run programs on
// two CPUs at once.
func (ns *netNS) twin(t testing.TB) *netNS {
	t.Helper()
	var fd int
	if err := ns.do(func() error {
		var err error
		fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatalf("open netns: %v", err)
	}
	defer unix.Close(fd)
	tw := &netNS{fns: make(chan func())}
	errc := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- nil
		for fn := range tw.fns {
			fn()
		}
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(tw.fns) })
	return tw
}

// do runs fn inside the namespace. fn must not call t.Fatal (it would end
// the namespace's goroutine); it returns an error instead.
func (ns *netNS) do(fn func() error) error {
	errc := make(chan error, 1)
	ns.fns <- func() { errc <- fn() }
	return <-errc
}

// Test topology, all inside the test's own namespace (veth peers stay in it):
//
//	client 10.0.0.2, fd00:a::2 ── ext0 10.0.0.1/24 fd00:a::1/64 (also local RS 10.0.0.3, fd00:a::3)
//	RS 172.16.0.2, fd00:b::2   ── int0 172.16.0.1/24 fd00:b::1/64 (172.16.0.9, fd00:b::9: no neighbour)
//	RS 172.16.1.2              ── mtu0 172.16.1.1/24, MTU 600
//	RS fd00:c::2               ── mtu6 fd00:c::1/64, MTU 1280
//	RS 192.168.5.2             ── oth0 192.168.5.1/24, not in xvs_tx
//	punt0: stands in for the punt tap
var (
	macExt   = net.HardwareAddr{0x02, 0xd0, 0, 0, 0, 0x01}
	macInt   = net.HardwareAddr{0x02, 0xd0, 0, 0, 0, 0x02}
	macMTU   = net.HardwareAddr{0x02, 0xd0, 0, 0, 0, 0x03}
	macOth   = net.HardwareAddr{0x02, 0xd0, 0, 0, 0, 0x04}
	macPunt  = net.HardwareAddr{0x02, 0xd0, 0, 0, 0, 0x05}
	macMTU6  = net.HardwareAddr{0x02, 0xd0, 0, 0, 0, 0x06}
	macRSM6  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x06}
	macCli   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	macRS    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	macLocal = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x03}
	macRSMTU = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x04}
	macRSOth = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x05}

	cli4     = netip.MustParseAddr("10.0.0.2")
	cli6     = netip.MustParseAddr("fd00:a::2")
	vip4     = netip.MustParseAddr("202.103.106.5")
	vip6     = netip.MustParseAddr("2001:db8::5")
	rs4      = netip.MustParseAddr("172.16.0.2")
	rs6      = netip.MustParseAddr("fd00:b::2")
	local4   = netip.MustParseAddr("10.0.0.3")
	local6   = netip.MustParseAddr("fd00:a::3")
	noNeigh4 = netip.MustParseAddr("172.16.0.9")
	noNeigh6 = netip.MustParseAddr("fd00:b::9")
	rsMTU4   = netip.MustParseAddr("172.16.1.2")
	rsOth4   = netip.MustParseAddr("192.168.5.2")
	rsMTU6   = netip.MustParseAddr("fd00:c::2")
	other4   = netip.MustParseAddr("198.51.100.7")
	other6   = netip.MustParseAddr("2001:db8:ffff::7")
)

const (
	vport = 80
	rport = 8080
)

type tlink struct {
	name  string
	mac   net.HardwareAddr
	mtu   int
	addrs []string
	neigh map[string]net.HardwareAddr
	index int
}

// env is a loaded datapath in a namespace with the topology above.
type env struct {
	t     testing.TB
	ns    *netNS
	objs  XvsObjects
	sizes map[string]uint32 // max_entries overrides by map name
	vars  map[string]any    // load-time constants to set, by name

	ext, intl, mtu, mtu6, oth, punt *tlink
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvSized(t, nil)
}

// newEnvSized is newEnv with max_entries of the maps named in sizes set.
func newEnvSized(t testing.TB, sizes map[string]uint32) *env {
	t.Helper()
	return newEnvWith(t, sizes, nil)
}

// newEnvWith is newEnvSized with the load-time constants in vars set too.
func newEnvWith(t testing.TB, sizes map[string]uint32, vars map[string]any) *env {
	t.Helper()
	testutil.NeedRoot(t)
	e := &env{t: t, ns: newNetNS(t), sizes: sizes, vars: vars}
	e.ext = &tlink{name: "ext0", mac: macExt, addrs: []string{"10.0.0.1/24", "fd00:a::1/64"},
		neigh: map[string]net.HardwareAddr{"10.0.0.2": macCli, "fd00:a::2": macCli, "10.0.0.3": macLocal, "fd00:a::3": macLocal}}
	e.intl = &tlink{name: "int0", mac: macInt, addrs: []string{"172.16.0.1/24", "fd00:b::1/64"},
		neigh: map[string]net.HardwareAddr{"172.16.0.2": macRS, "fd00:b::2": macRS}}
	e.mtu = &tlink{name: "mtu0", mac: macMTU, mtu: 600, addrs: []string{"172.16.1.1/24"},
		neigh: map[string]net.HardwareAddr{"172.16.1.2": macRSMTU}}
	e.mtu6 = &tlink{name: "mtu6", mac: macMTU6, mtu: 1280, addrs: []string{"fd00:c::1/64"},
		neigh: map[string]net.HardwareAddr{"fd00:c::2": macRSM6}}
	e.oth = &tlink{name: "oth0", mac: macOth, addrs: []string{"192.168.5.1/24"},
		neigh: map[string]net.HardwareAddr{"192.168.5.2": macRSOth}}
	e.punt = &tlink{name: "punt0", mac: macPunt}
	err := e.ns.do(func() error {
		for _, l := range []*tlink{e.ext, e.intl, e.mtu, e.mtu6, e.oth, e.punt} {
			if err := addLink(l); err != nil {
				return err
			}
		}
		for _, f := range []string{"/proc/sys/net/ipv4/conf/all/forwarding", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
				return fmt.Errorf("enable forwarding: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.load()
	if err := e.ns.do(func() error {
		for _, l := range []*tlink{e.ext, e.intl, e.mtu, e.mtu6, e.punt} {
			idx := uint32(l.index)
			if err := e.objs.XvsTx.Put(idx, idx); err != nil {
				return fmt.Errorf("put %s in xvs_tx: %w", l.name, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.setCfg(uint32(e.punt.index), 1<<62)
	return e
}

// addLink creates l as one end of a veth pair (the peer stays in the
// namespace, up, so that the link has carrier) with its addresses and
// permanent neighbours.
func addLink(l *tlink) error {
	la := netlink.NewLinkAttrs()
	la.Name = l.name
	if l.mtu != 0 {
		la.MTU = l.mtu
	}
	veth := &netlink.Veth{LinkAttrs: la, PeerName: l.name + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", l.name, err)
	}
	nl, err := netlink.LinkByName(l.name)
	if err != nil {
		return fmt.Errorf("find %s: %w", l.name, err)
	}
	peer, err := netlink.LinkByName(l.name + "p")
	if err != nil {
		return fmt.Errorf("find %sp: %w", l.name, err)
	}
	if err := netlink.LinkSetHardwareAddr(nl, l.mac); err != nil {
		return fmt.Errorf("set mac of %s: %w", l.name, err)
	}
	for _, x := range []netlink.Link{nl, peer} {
		if err := netlink.LinkSetUp(x); err != nil {
			return fmt.Errorf("set %s up: %w", x.Attrs().Name, err)
		}
	}
	for _, a := range l.addrs {
		pfx, err := netlink.ParseIPNet(a)
		if err != nil {
			return err
		}
		addr := &netlink.Addr{IPNet: pfx, Flags: unix.IFA_F_NODAD}
		if err := netlink.AddrAdd(nl, addr); err != nil {
			return fmt.Errorf("add %s to %s: %w", a, l.name, err)
		}
	}
	for ip, mac := range l.neigh {
		n := &netlink.Neigh{LinkIndex: nl.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: net.ParseIP(ip), HardwareAddr: mac}
		if err := netlink.NeighAdd(n); err != nil {
			return fmt.Errorf("add neighbour %s on %s: %w", ip, l.name, err)
		}
	}
	l.index = nl.Attrs().Index
	return nil
}

// with returns a copy of e that reports to t (fuzz targets must not use
// the *testing.F).
func (e *env) with(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// load loads the collection without pinning and with small conn maps.
func (e *env) load() {
	e.t.Helper()
	spec, err := LoadXvs()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	spec.Maps["xvs_conns"].MaxEntries = 4096
	spec.Maps["xvs_rconns"].MaxEntries = 4096
	spec.Maps["xvs_conns_new"].MaxEntries = 4096
	spec.Maps["xvs_rconns_new"].MaxEntries = 4096
	if err := SizeFlows(spec, 0); err != nil {
		e.t.Fatal(err)
	}
	for name, v := range e.vars {
		if err := spec.Variables[name].Set(v); err != nil {
			e.t.Fatalf("set %s: %v", name, err)
		}
	}
	for name, n := range e.sizes {
		spec.Maps[name].MaxEntries = n
	}
	if err := spec.LoadAndAssign(&e.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			e.t.Fatalf("load: %+v", ve)
		}
		e.t.Fatalf("load: %v", err)
	}
	e.t.Cleanup(func() { e.objs.Close() })
	if err := FillProgs(&e.objs); err != nil {
		e.t.Fatal(err)
	}
}

// Verdicts, spelled per entry by verdictCode.
type verdict int

const (
	vPass verdict = iota
	vDrop
	vTX
	vRedirect
)

func (v verdict) String() string {
	return [...]string{"pass", "drop", "tx", "redirect"}[v]
}

// entry is one of the two programs.
type entry struct {
	name string
	xdp  bool
}

var entries = []entry{{name: "xdp", xdp: true}, {name: "tc"}}

func (en entry) code(v verdict) uint32 {
	if en.xdp {
		return [...]uint32{2, 1, 3, 4}[v] // XDP_PASS, XDP_DROP, XDP_TX, XDP_REDIRECT
	}
	return [...]uint32{0, 2, 7, 7}[v] // TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT (no TX in TC)
}

func (e *env) prog(en entry) *ebpf.Program {
	if en.xdp {
		return e.objs.XvsXdp
	}
	return e.objs.XvsTc
}

// xdpMd is struct xdp_md for BPF_PROG_TEST_RUN.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// skbCtx is struct __sk_buff up to gso_size with the fields the kernel's
// test run accepts; it treats a shorter context's rest as zero.
type skbCtx struct {
	_              [36]byte
	IngressIfindex uint32 // offset 36
	Ifindex        uint32 // 40
	_              [120]byte
	GsoSegs        uint32 // 164
	_              [8]byte
	GsoSize        uint32 // 176
}

// run runs entry en on frame as received on ifindex; returns the verdict
// code and the frame after the program.
func (e *env) run(en entry, frame []byte, ifindex int) (uint32, []byte, error) {
	return e.runGSO(en, frame, ifindex, 0)
}

// runGSO is run with the skb marked GSO with segment size gso (TC only).
func (e *env) runGSO(en entry, frame []byte, ifindex int, gso uint32) (uint32, []byte, error) {
	opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+512)}
	if en.xdp {
		opts.Context = xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)}
	} else {
		c := skbCtx{IngressIfindex: uint32(ifindex), Ifindex: uint32(ifindex), GsoSize: gso}
		if gso != 0 {
			c.GsoSegs = 2
		}
		opts.Context = c
	}
	var ret uint32
	err := e.ns.do(func() error {
		var err error
		ret, err = e.prog(en).Run(opts)
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("run %s: %w", en.name, err)
	}
	return ret, opts.DataOut, nil
}

func be16(v uint16) uint16 { return v>>8 | v<<8 }

func addr16(a netip.Addr) [16]uint8 {
	var out [16]uint8
	if a.Is4() {
		b := a.As4()
		copy(out[:], b[:])
		return out
	}
	return a.As16()
}

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return 2
	}
	return 10
}

func (e *env) addSvc(vip netip.Addr, port uint16, proto uint8, id uint32) {
	e.t.Helper()
	k := XvsSvcKey{Addr: addr16(vip), Port: be16(port), Proto: proto, Family: family(vip)}
	if err := e.objs.XvsVips.Put(id, k); err != nil {
		e.t.Fatal(err)
	}
	if err := e.objs.XvsSvcs.Put(k, XvsSvc{Id: id}); err != nil {
		e.t.Fatal(err)
	}
}

// putVIP records service id's key in xvs_vips, as maps.PutService does:
// the reverse lookup takes a conn's VIP from there.
func (e *env) putVIP(vip netip.AddrPort, proto uint8, id uint32) {
	e.t.Helper()
	k := XvsSvcKey{Addr: addr16(vip.Addr()), Port: be16(vip.Port()), Proto: proto, Family: family(vip.Addr())}
	if err := e.objs.XvsVips.Put(id, k); err != nil {
		e.t.Fatal(err)
	}
}

// rconn is the server-side value of a conn of service svc to vip.
func rconn(vip netip.AddrPort, svc uint32) XvsRconn {
	return XvsRconn{SvcId: svc, Vport: be16(vip.Port())}
}

// connKey is the client-side key of cli -> vip.
func connKey(cli, vip netip.AddrPort, proto uint8) XvsConnKey {
	return XvsConnKey{Saddr: addr16(cli.Addr()), Daddr: addr16(vip.Addr()),
		Sport: be16(cli.Port()), Dport: be16(vip.Port()), Proto: proto, Family: family(cli.Addr())}
}

// rconnKey is the server-side key of cli's conn to rs.
func rconnKey(cli, rs netip.AddrPort, proto uint8) XvsConnKey {
	return XvsConnKey{Saddr: addr16(rs.Addr()), Daddr: addr16(cli.Addr()),
		Sport: be16(rs.Port()), Dport: be16(cli.Port()), Proto: proto, Family: family(cli.Addr())}
}

// addConn installs a conn as the control plane does: the service's VIP
// in xvs_vips and the real server's address in xvs_dests, state NONE,
// flag NEW, both keys in the new pair (xvs_conns_new, xvs_rconns_new),
// and one more inactive conn on its dest.
func (e *env) addConn(cli, vip, rs netip.AddrPort, proto uint8, svc, dest uint32) XvsConnKey {
	e.t.Helper()
	k := connKey(cli, vip, proto)
	rk := rconnKey(cli, rs, proto)
	e.putVIP(vip, proto, svc)
	e.setDestAddr(dest, rs.Addr())
	c := XvsConn{Dport: be16(rs.Port()), Flags: uint8(XvsConnFlagsCONN_F_NEW),
		SvcId: svc, DestId: dest}
	if err := e.objs.XvsConnsNew.Update(k, c, ebpf.UpdateNoExist); err != nil {
		e.t.Fatal(err)
	}
	if err := e.objs.XvsRconnsNew.Update(rk, rconn(vip, svc), ebpf.UpdateNoExist); err != nil {
		e.t.Fatal(err)
	}
	d := e.dest(dest)
	d.Inactive++
	e.putDest(dest, d)
	return k
}

// setDestAddr sets the real server's address of dest id, as
// maps.SetDest does; counters and flags stay.
func (e *env) setDestAddr(id uint32, a netip.Addr) {
	e.t.Helper()
	d := e.dest(id)
	d.Addr, d.Family = addr16(a), family(a)
	if err := e.objs.XvsDests.Put(id, d); err != nil {
		e.t.Fatal(err)
	}
}

// connTable returns the client-side table that holds k: xvs_conns if it
// is there, else xvs_conns_new (where a lookup may still miss).
func (e *env) connTable(k XvsConnKey) *ebpf.Map {
	var c XvsConn
	if err := e.objs.XvsConns.Lookup(k, &c); err == nil {
		return e.objs.XvsConns
	}
	return e.objs.XvsConnsNew
}

// conn returns k's conn from whichever pair holds it.
func (e *env) conn(k XvsConnKey) XvsConn {
	e.t.Helper()
	var c XvsConn
	if err := e.connTable(k).Lookup(k, &c); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// putConn overwrites k's conn in whichever pair holds it, and voids the
// flow cache's copies: the daemon never rewrites a conn in place, and a
// copy of its old value would answer for it.
func (e *env) putConn(k XvsConnKey, c XvsConn) {
	e.t.Helper()
	if err := e.connTable(k).Put(k, c); err != nil {
		e.t.Fatal(err)
	}
	e.voidFlows()
}

// voidFlows voids every flow cache copy made so far, as the daemon does
// when it removes a conn (maps.voidFlows).
func (e *env) voidFlows() {
	e.t.Helper()
	if err := e.objs.XvsFlowVoid.Put(uint32(0), monoNow(e.t)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) dest(id uint32) XvsDest {
	e.t.Helper()
	var d XvsDest
	if err := e.objs.XvsDests.Lookup(id, &d); err != nil {
		e.t.Fatal(err)
	}
	return d
}

// putDest writes dest id's counters and flags; a d without an address
// keeps the address the dest has (tests set counters and flags, addConn
// and setDestAddr the address).
func (e *env) putDest(id uint32, d XvsDest) {
	e.t.Helper()
	if d.Family == 0 {
		cur := e.dest(id)
		d.Addr, d.Family = cur.Addr, cur.Family
	}
	if err := e.objs.XvsDests.Put(id, d); err != nil {
		e.t.Fatal(err)
	}
}

// setCfg sets the punt device and a liveness stamp aged by age nanoseconds
// relative to a staleness limit of one hour (age > 1h: stale).
func (e *env) setCfg(punt uint32, staleNs uint64) {
	e.t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		e.t.Fatal(err)
	}
	c := XvsCfg{PuntIfindex: punt, AliveNs: uint64(ts.Nano()), StaleNs: staleNs}
	if err := e.objs.XvsCfg.Put(uint32(0), c); err != nil {
		e.t.Fatal(err)
	}
}

// setStaleCfg sets a liveness stamp older than the staleness limit.
func (e *env) setStaleCfg() {
	e.t.Helper()
	c := XvsCfg{PuntIfindex: uint32(e.punt.index), AliveNs: 0, StaleNs: 1000}
	if err := e.objs.XvsCfg.Put(uint32(0), c); err != nil {
		e.t.Fatal(err)
	}
}

// counters returns the non-zero entries 0..n-1 of a per-CPU counter
// array, summed over CPUs; with reset it zeroes them.
func (e *env) counters(m *ebpf.Map, n uint32, reset bool) map[uint32]uint64 {
	e.t.Helper()
	out := map[uint32]uint64{}
	zero := make([]uint64, ebpf.MustPossibleCPU())
	for i := range n {
		var per []uint64
		if err := m.Lookup(i, &per); err != nil {
			e.t.Fatal(err)
		}
		for _, v := range per {
			if v != 0 {
				out[i] += v
			}
		}
		if reset {
			if err := m.Put(i, zero); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	return out
}

// reasons returns the reason counters summed over CPUs.
func (e *env) reasons() map[XvsReason]uint64 {
	e.t.Helper()
	out := map[XvsReason]uint64{}
	for r, v := range e.counters(e.objs.XvsReasons, uint32(XvsReasonREASON_MAX), false) {
		out[XvsReason(r)] = v
	}
	return out
}

func (e *env) resetReasons() {
	e.t.Helper()
	e.counters(e.objs.XvsReasons, uint32(XvsReasonREASON_MAX), true)
}

// stats returns per-CPU stats of id in m summed.
func (e *env) stats(m *ebpf.Map, id uint32) XvsStats {
	e.t.Helper()
	var per []XvsStats
	if err := m.Lookup(id, &per); err != nil {
		e.t.Fatal(err)
	}
	var s XvsStats
	for _, p := range per {
		s.Conns += p.Conns
		s.Inpkts += p.Inpkts
		s.Outpkts += p.Outpkts
		s.Inbytes += p.Inbytes
		s.Outbytes += p.Outbytes
	}
	return s
}
