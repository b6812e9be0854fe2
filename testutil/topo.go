package testutil

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// The seed scenario's topology (an LVS-NAT walkthrough), built out of
// network namespaces and veth pairs:
//
//	  client                director                      switch            node1..N
//	┌──────────┐ eth0   ext0 ┌──────────────┐ int0    dir0 ┌──────┐ nodeN  eth0 ┌─────────┐
//	│.100, .101├─────────────┤.5 (VIP)  .1  ├──────────────┤ br0  ├─────────────┤.2, .3, …│
//	└──────────┘             └──────────────┘              └──────┘             └─────────┘
//	 202.103.106.0/24           ip_forward=1                                 172.16.0.0/24,
//	 (2001:db8:1::/64)          rp_filter=0                              default via 172.16.0.1
//	                                                                      (2001:db8:2::/64)
//
// The VIP is the director's own address on its external interface, as in
// the seed document; the real servers' default gateway is the director's
// internal address. The switch namespace holds a plain bridge so that any
// number of real servers share the director's one internal interface.

// Mode is the datapath attachment a topology is prepared for.
type Mode string

// Modes xvsd can run in. XDP needs TX checksum offload off on the endpoints
// and GRO on the veth peers of redirect targets; TC works with offloads on.
const (
	ModeXDP Mode = "xdp"
	ModeTC  Mode = "tc"
)

// Interface names inside the namespaces.
const (
	DirectorExtIf = "ext0" // director, towards the client
	DirectorIntIf = "int0" // director, towards the switch
	HostIf        = "eth0" // client and real servers
	switchDirIf   = "dir0" // switch port facing the director
	bridgeIf      = "br0"
)

// TopoConfig says what to build. The zero value (besides Mode) gives the
// seed scenario: one client address, two real servers, IPv4 only.
type TopoConfig struct {
	Mode        Mode
	RealServers int  // default 2
	Clients     int  // client addresses on the client's interface, default 1
	IPv6        bool // also give every interface an IPv6 address (dual stack)
	Prefix      string
}

// Plan lists the addresses of one address family.
type Plan struct {
	Clients     []netip.Addr // first one is the client's primary address
	VIP         netip.Addr   // the director's external address
	DirectorInt netip.Addr   // the real servers' gateway
	Servers     []netip.Addr // node1, node2, …
	ExtBits     int
	IntBits     int
}

// Topo is a built topology. Everything in it is deleted when the test ends.
type Topo struct {
	Cfg      TopoConfig
	Prefix   string
	Client   *NetNS
	Director *NetNS
	Switch   *NetNS
	Servers  []*NetNS
	V4       Plan
	V6       *Plan // nil unless Cfg.IPv6

	t      testing.TB
	mu     sync.Mutex
	diags  []func() string
	dumped bool
}

// V4Plan returns the seed's IPv4 addressing for the given sizes.
func V4Plan(servers, clients int) Plan {
	p := Plan{
		VIP:         netip.MustParseAddr("202.103.106.5"),
		DirectorInt: netip.MustParseAddr("172.16.0.1"),
		ExtBits:     24,
		IntBits:     24,
	}
	for i := range clients {
		p.Clients = append(p.Clients, netip.AddrFrom4([4]byte{202, 103, 106, byte(100 + i)}))
	}
	for i := range servers {
		p.Servers = append(p.Servers, netip.AddrFrom4([4]byte{172, 16, 0, byte(2 + i)}))
	}
	return p
}

// V6Plan returns the IPv6 addressing: 2001:db8:1::/64 outside,
// 2001:db8:2::/64 inside, with the same host numbers as IPv4.
func V6Plan(servers, clients int) Plan {
	p := Plan{
		VIP:         netip.MustParseAddr("2001:db8:1::5"),
		DirectorInt: netip.MustParseAddr("2001:db8:2::1"),
		ExtBits:     64,
		IntBits:     64,
	}
	for i := range clients {
		p.Clients = append(p.Clients, netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%x", 0x100+i)))
	}
	for i := range servers {
		p.Servers = append(p.Servers, netip.MustParseAddr(fmt.Sprintf("2001:db8:2::%x", 2+i)))
	}
	return p
}

// ServerName is the identity of real server i (0-based): "node1", "node2", ….
func ServerName(i int) string { return fmt.Sprintf("node%d", i+1) }

// NewTopo builds the topology, checks it with plain kernel routing (pings
// that also warm up the neighbour tables) and registers its removal. When
// the test fails, the namespace state is logged before anything is removed.
func NewTopo(t testing.TB, cfg TopoConfig) *Topo {
	t.Helper()
	if cfg.RealServers <= 0 {
		cfg.RealServers = 2
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 1
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeXDP
	}
	if cfg.Prefix == "" {
		cfg.Prefix = RunPrefix("xvst")
	}
	tp := &Topo{Cfg: cfg, Prefix: cfg.Prefix, t: t, V4: V4Plan(cfg.RealServers, cfg.Clients)}
	if cfg.IPv6 {
		p := V6Plan(cfg.RealServers, cfg.Clients)
		tp.V6 = &p
	}

	tp.Client = NewNetNS(t, cfg.Prefix+"-cli")
	tp.Director = NewNetNS(t, cfg.Prefix+"-dir")
	tp.Switch = NewNetNS(t, cfg.Prefix+"-sw")
	for i := range cfg.RealServers {
		tp.Servers = append(tp.Servers, NewNetNS(t, cfg.Prefix+"-"+ServerName(i)))
	}
	// Registered after the namespaces, so it runs before they go.
	t.Cleanup(func() {
		if t.Failed() {
			tp.Dump()
		}
	})
	if err := tp.build(); err != nil {
		t.Fatalf("build topology %s: %v", cfg.Prefix, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := tp.warmUp(ctx); err != nil {
		t.Fatalf("topology %s: %v", cfg.Prefix, err)
	}
	return tp
}

// All returns every namespace of the topology.
func (tp *Topo) All() []*NetNS {
	return append([]*NetNS{tp.Client, tp.Director, tp.Switch}, tp.Servers...)
}

func (tp *Topo) build() error {
	for _, ns := range tp.All() {
		if err := tp.baseSysctls(ns); err != nil {
			return err
		}
	}
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
	} {
		if err := tp.Director.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if tp.V6 != nil {
		if err := tp.Director.Sysctl("net.ipv6.conf.all.forwarding", "1"); err != nil {
			return err
		}
	}

	// Links.
	if err := Veth(tp.Client, HostIf, tp.Director, DirectorExtIf); err != nil {
		return err
	}
	if err := Veth(tp.Director, DirectorIntIf, tp.Switch, switchDirIf); err != nil {
		return err
	}
	if err := tp.Switch.IP("link", "add", bridgeIf, "type", "bridge"); err != nil {
		return err
	}
	if err := tp.Switch.IP("link", "set", switchDirIf, "master", bridgeIf); err != nil {
		return err
	}
	for i, ns := range tp.Servers {
		port := ServerName(i)
		if err := Veth(ns, HostIf, tp.Switch, port); err != nil {
			return err
		}
		if err := tp.Switch.IP("link", "set", port, "master", bridgeIf); err != nil {
			return err
		}
	}
	if err := tp.Switch.IP("link", "set", bridgeIf, "up"); err != nil {
		return err
	}

	// Addresses and routes.
	plans := []Plan{tp.V4}
	if tp.V6 != nil {
		plans = append(plans, *tp.V6)
	}
	for _, p := range plans {
		for _, a := range p.Clients {
			if err := addAddr(tp.Client, HostIf, a, p.ExtBits); err != nil {
				return err
			}
		}
		if err := addAddr(tp.Director, DirectorExtIf, p.VIP, p.ExtBits); err != nil {
			return err
		}
		if err := addAddr(tp.Director, DirectorIntIf, p.DirectorInt, p.IntBits); err != nil {
			return err
		}
		for i, ns := range tp.Servers {
			if err := addAddr(ns, HostIf, p.Servers[i], p.IntBits); err != nil {
				return err
			}
			fam := "-4"
			if p.VIP.Is6() {
				fam = "-6"
			}
			if err := ns.IP(fam, "route", "add", "default", "via", p.DirectorInt.String(), "dev", HostIf); err != nil {
				return err
			}
		}
	}

	// Offloads.
	if tp.Cfg.Mode == ModeXDP {
		// Endpoints send complete checksums (XDP rewrites cannot fix up a
		// CHECKSUM_PARTIAL packet); the veth peers of the director's
		// redirect targets need GRO (or an XDP program) to accept
		// redirected frames.
		if err := tp.Client.Ethtool(HostIf, "tx", "off", "gro", "on"); err != nil {
			return err
		}
		for _, ns := range tp.Servers {
			if err := ns.Ethtool(HostIf, "tx", "off"); err != nil {
				return err
			}
		}
		if err := tp.Switch.Ethtool(switchDirIf, "gro", "on"); err != nil {
			return err
		}
	}
	return nil
}

// baseSysctls keeps IPv6 quiet: off entirely in IPv4-only topologies (no
// autoconf or router solicitations reaching the datapath), and without
// duplicate address detection otherwise, so that addresses work at once.
func (tp *Topo) baseSysctls(ns *NetNS) error {
	if tp.V6 == nil {
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if err := ns.Sysctl(k, "1"); err != nil {
				return err
			}
		}
		return nil
	}
	for _, k := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := ns.Sysctl(k, "0"); err != nil {
			return err
		}
	}
	return nil
}

func addAddr(ns *NetNS, ifname string, a netip.Addr, bits int) error {
	args := []string{"addr", "add", netip.PrefixFrom(a, bits).String(), "dev", ifname}
	if a.Is6() {
		args = append(args, "nodad")
	}
	return ns.IP(args...)
}

// warmUp pings along every hop, in both directions, so that neighbour
// entries exist before the first test packet and the plain-routing
// reachability of the topology is proven.
func (tp *Topo) warmUp(ctx context.Context) error {
	plans := []Plan{tp.V4}
	if tp.V6 != nil {
		plans = append(plans, *tp.V6)
	}
	for _, p := range plans {
		if err := Ping(ctx, tp.Client, p.VIP); err != nil {
			return err
		}
		for _, c := range p.Clients {
			if err := Ping(ctx, tp.Director, c); err != nil {
				return err
			}
		}
		for i, ns := range tp.Servers {
			if err := Ping(ctx, ns, p.DirectorInt); err != nil {
				return err
			}
			if err := Ping(ctx, tp.Director, p.Servers[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// AddDiag registers a function whose output is logged with the namespace
// state when the test fails (for example `xvsadm -L -n -c`).
func (tp *Topo) AddDiag(f func() string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.diags = append(tp.diags, f)
}

// Dump logs the registered diagnostics and, for every namespace, its links,
// addresses, routes and neighbours. It runs once; later calls do nothing,
// so callers that tear down state early may call it first.
func (tp *Topo) Dump() {
	tp.mu.Lock()
	if tp.dumped || tp.t == nil { // a Topo not made by NewTopo has no test to log to
		tp.mu.Unlock()
		return
	}
	tp.dumped = true
	diags := append([]func() string(nil), tp.diags...)
	tp.mu.Unlock()

	var b strings.Builder
	fmt.Fprintf(&b, "=== diagnostics for topology %s (mode %s) ===\n", tp.Prefix, tp.Cfg.Mode)
	for _, f := range diags {
		b.WriteString(f())
		b.WriteString("\n")
	}
	for _, ns := range tp.All() {
		fmt.Fprintf(&b, "--- netns %s ---\n", ns.Name)
		for _, args := range [][]string{
			{"-d", "-s", "link", "show"},
			{"addr", "show"},
			{"route", "show"},
			{"-6", "route", "show"},
			{"neigh", "show"},
		} {
			out, err := ns.Run("ip", args...)
			fmt.Fprintf(&b, "$ ip %s\n%s", strings.Join(args, " "), out)
			if err != nil {
				fmt.Fprintf(&b, "(error: %v)\n", err)
			}
		}
	}
	tp.t.Log(b.String())
}
