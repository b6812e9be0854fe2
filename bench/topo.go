package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xvs/testutil"
)

// The benchmark topology: three namespaces, two veth pairs, no bridge (a
// bridge would be the bottleneck of every packet-rate figure and hide the
// load balancers' differences).
//
//	  gen                     dir (load balancer)             rs
//	┌────────────┐ eth0  ext0 ┌────────────────────┐ int0  eth0 ┌──────────────┐
//	│198.18.0.2  ├────────────┤198.18.0.1 (VIP)    ├────────────┤198.19.0.2 RS1│
//	│.0.10-.0.17 │            │       198.19.0.1   │            │198.19.0.3 RS2│
//	└────────────┘            └────────────────────┘            └──────────────┘
//	 198.18.0.0/16             ip_forward=1                      default via .1
//
// Addresses come from 198.18.0.0/15, the range RFC 2544 sets aside for
// benchmarks, and exist only inside these namespaces. New-flow traffic uses
// source addresses in 198.18.128.0/17 (on-link, never assigned).

// Interface names.
const (
	genIf = "eth0"
	extIf = "ext0"
	intIf = "int0"
	rsIf  = "eth0"
)

// Ports of the services.
const (
	udpPort  = 9    // discard: the sink counts and drops it
	httpPort = 80   // new-connection rate
	iperPort = 5201 // iperf3
)

// Addrs is the topology's addressing.
type Addrs struct {
	Gen netip.Addr // the generator's own address
	// TCP client source addresses (more 4-tuples): a set of 8 per
	// balancer of a run, so that no balancer's connections meet the
	// TIME_WAIT sockets an earlier one left at the real servers for the
	// same 4-tuples (the later ones measured up to a quarter slower).
	Clients [clientSets][]netip.Addr
	VIP     netip.Addr   // the director's external address
	DirInt  netip.Addr   // the real servers' gateway
	RS      []netip.Addr // RS1, RS2 (one namespace, two addresses)
}

func defaultAddrs() Addrs {
	a := Addrs{
		Gen:    netip.MustParseAddr("198.18.0.2"),
		VIP:    netip.MustParseAddr("198.18.0.1"),
		DirInt: netip.MustParseAddr("198.19.0.1"),
		RS:     []netip.Addr{netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.3")},
	}
	for set := range a.Clients {
		for i := range 8 {
			a.Clients[set] = append(a.Clients[set], netip.AddrFrom4([4]byte{198, 18, byte(set), byte(10 + i)}))
		}
	}
	return a
}

// clientSets is how many sets of client addresses the topology has: two
// per balancer (forward, nft, ref, xvs-tc, xvs), one per connection run.
const clientSets = 10

// ClientSet is the set of client addresses of the i-th balancer of a run.
func (a Addrs) ClientSet(i int) []netip.Addr { return a.Clients[i%clientSets] }

// Topo is the built topology; it is deleted when the test ends.
type Topo struct {
	Prefix string
	Gen    *testutil.NetNS
	Dir    *testutil.NetNS
	RS     *testutil.NetNS
	Addrs  Addrs

	GenMAC, ExtMAC, IntMAC, RSMAC net.HardwareAddr
	GenIdx, ExtIdx, IntIdx, RSIdx int

	// NAPI threads of the director's external interface (its receive
	// work for client-to-VIP traffic) and of the real servers' interface
	// (the sink), while ThreadNAPI has them on.
	ExtNAPI, RSNAPI []int
}

// NewTopo builds the topology and proves plain routing across it.
func NewTopo(t testing.TB, prefix string) *Topo {
	t.Helper()
	tp := &Topo{Prefix: prefix, Addrs: defaultAddrs()}
	tp.Gen = testutil.NewNetNS(t, prefix+"-gen")
	tp.Dir = testutil.NewNetNS(t, prefix+"-dir")
	tp.RS = testutil.NewNetNS(t, prefix+"-rs")
	if err := tp.build(); err != nil {
		t.Fatalf("build topology %s: %v", prefix, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, p := range []struct {
		ns  *testutil.NetNS
		dst netip.Addr
	}{
		{tp.Gen, tp.Addrs.VIP}, {tp.Dir, tp.Addrs.Gen}, {tp.Dir, tp.Addrs.RS[0]},
		{tp.Dir, tp.Addrs.RS[1]}, {tp.RS, tp.Addrs.DirInt}, {tp.Gen, tp.Addrs.RS[0]},
	} {
		if err := testutil.Ping(ctx, p.ns, p.dst); err != nil {
			t.Fatalf("topology %s: %v", prefix, err)
		}
	}
	for _, set := range tp.Addrs.Clients {
		for _, c := range set {
			if err := testutil.Ping(ctx, tp.Dir, c); err != nil {
				t.Fatalf("topology %s: %v", prefix, err)
			}
		}
	}
	return tp
}

func (tp *Topo) build() error {
	for _, ns := range []*testutil.NetNS{tp.Gen, tp.Dir, tp.RS} {
		for _, kv := range [][2]string{
			{"net.ipv6.conf.all.disable_ipv6", "1"},
			{"net.ipv6.conf.default.disable_ipv6", "1"},
		} {
			if err := ns.Sysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
	} {
		if err := tp.Dir.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	// Many short connections: a wide port range and quick reuse on the
	// client side.
	for _, kv := range [][2]string{
		{"net.ipv4.ip_local_port_range", "1024 65000"},
		{"net.ipv4.tcp_tw_reuse", "1"},
	} {
		if err := tp.Gen.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := tp.RS.Sysctl("net.core.somaxconn", "4096"); err != nil {
		return err
	}
	if err := testutil.Veth(tp.Gen, genIf, tp.Dir, extIf); err != nil {
		return err
	}
	if err := testutil.Veth(tp.Dir, intIf, tp.RS, rsIf); err != nil {
		return err
	}
	a := tp.Addrs
	steps := []struct {
		ns   *testutil.NetNS
		args []string
	}{
		{tp.Gen, []string{"addr", "add", a.Gen.String() + "/16", "dev", genIf}},
		{tp.Dir, []string{"addr", "add", a.VIP.String() + "/16", "dev", extIf}},
		{tp.Dir, []string{"addr", "add", a.DirInt.String() + "/24", "dev", intIf}},
		{tp.RS, []string{"addr", "add", a.RS[0].String() + "/24", "dev", rsIf}},
		{tp.RS, []string{"addr", "add", a.RS[1].String() + "/24", "dev", rsIf}},
		{tp.RS, []string{"route", "add", "default", "via", a.DirInt.String(), "dev", rsIf}},
		{tp.Gen, []string{"route", "add", "198.19.0.0/24", "via", a.VIP.String(), "dev", genIf}},
	}
	for _, c := range slices.Concat(a.Clients[:]...) {
		steps = append(steps, struct {
			ns   *testutil.NetNS
			args []string
		}{tp.Gen, []string{"addr", "add", c.String() + "/16", "dev", genIf}})
	}
	for _, s := range steps {
		if err := s.ns.IP(s.args...); err != nil {
			return err
		}
	}
	// Redirected frames (XDP_TX of the generator, XDP redirects of the
	// director) are accepted by a veth only when its peer has GRO on or
	// an XDP program: GRO on everywhere.
	for _, e := range []struct {
		ns *testutil.NetNS
		If string
	}{{tp.Gen, genIf}, {tp.Dir, extIf}, {tp.Dir, intIf}, {tp.RS, rsIf}} {
		if err := e.ns.Ethtool(e.If, "gro", "on"); err != nil {
			return err
		}
	}
	var err error
	if tp.GenIdx, tp.GenMAC, err = linkInfo(tp.Gen, genIf); err != nil {
		return err
	}
	if tp.ExtIdx, tp.ExtMAC, err = linkInfo(tp.Dir, extIf); err != nil {
		return err
	}
	if tp.IntIdx, tp.IntMAC, err = linkInfo(tp.Dir, intIf); err != nil {
		return err
	}
	if tp.RSIdx, tp.RSMAC, err = linkInfo(tp.RS, rsIf); err != nil {
		return err
	}
	return nil
}

// SetTxCsum turns TX checksum offload on the two endpoints on or off. XDP
// rewrites cannot fix a CHECKSUM_PARTIAL packet, so the XDP datapaths need
// it off, which also turns off TSO: the reason one TCP flow is slower
// through any XDP rewriter on veth.
func (tp *Topo) SetTxCsum(on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	if err := tp.Gen.Ethtool(genIf, "tx", v); err != nil {
		return err
	}
	return tp.RS.Ethtool(rsIf, "tx", v)
}

func linkInfo(ns *testutil.NetNS, name string) (int, net.HardwareAddr, error) {
	var idx int
	var mac net.HardwareAddr
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("interface %s in %s: %w", name, ns.Name, err)
		}
		idx, mac = ifc.Index, ifc.HardwareAddr
		return nil
	})
	return idx, mac, err
}

// linkStat reads one counter of `ip -s link` (e.g. "tx_dropped") of ifname
// in ns from sysfs-free netlink output.
func linkStat(ns *testutil.NetNS, ifname, dir, field string) (uint64, error) {
	out, err := ns.Run("ip", "-s", "-s", "link", "show", "dev", ifname)
	if err != nil {
		return 0, err
	}
	return parseLinkStat(out, dir, field)
}

// parseLinkStat finds a counter in `ip -s -s link show` output: dir is
// "RX" or "TX", field a column name of its first line, such as "dropped".
func parseLinkStat(out, dir, field string) (uint64, error) {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || strings.TrimSuffix(f[0], ":") != dir || i+1 >= len(lines) {
			continue
		}
		vals := strings.Fields(lines[i+1])
		for j, name := range f[1:] {
			if name == field && j < len(vals) {
				return strconv.ParseUint(vals[j], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s %s counter in ip -s link output", dir, field)
}

// ThreadNAPI switches the NAPI of all four veths to kernel threads (on)
// or back to the softirq of the CPU that sent (off, the kernel's
// default), and records the threads of the director's external and the
// real servers' interfaces while on.
//
// Only the UDP runs need threads: their receive work is pinned to CPUs.
// The TCP runs keep the default. A veth uses its NAPI only for an XDP
// program or for frames GRO may merge (the sender without TSO), so as
// threads it would cost the XDP datapaths (xvs XDP, the static ref) two
// thread wake-ups per packet across the director that the kernel paths
// (nft, forwarding, xvs TC, whose senders keep TSO) never pay; a NIC's
// NAPI runs in softirq unless its operator asks for threads.
func (tp *Topo) ThreadNAPI(on bool) error {
	ifs := []struct {
		ns *testutil.NetNS
		If string
		to *[]int
	}{{tp.Dir, extIf, &tp.ExtNAPI}, {tp.RS, rsIf, &tp.RSNAPI}, {tp.Gen, genIf, nil}, {tp.Dir, intIf, nil}}
	tp.ExtNAPI, tp.RSNAPI = nil, nil
	for _, e := range ifs {
		if !on {
			if _, err := e.ns.Run("sh", "-c", fmt.Sprintf("echo 0 > /sys/class/net/%s/threaded", e.If)); err != nil {
				return fmt.Errorf("softirq napi on %s: %w", e.If, err)
			}
			continue
		}
		pids, err := threadNAPI(e.ns, e.If)
		if err != nil {
			return err
		}
		if e.to != nil {
			*e.to = pids
		}
	}
	return nil
}

// threadNAPI switches ifname's NAPI to a kernel thread and returns the
// thread ids. Without it, a veth's receive processing runs in the softirq
// of the CPU that sent, i.e. inside the generator's own syscall, which
// then starves it; as a thread the scheduler can run it on another CPU.
func threadNAPI(ns *testutil.NetNS, ifname string) ([]int, error) {
	prefix := "napi/" + ifname + "-"
	before, err := napiThreads(prefix)
	if err != nil {
		return nil, err
	}
	if _, err := ns.Run("sh", "-c", fmt.Sprintf("echo 1 > /sys/class/net/%s/threaded", ifname)); err != nil {
		return nil, fmt.Errorf("threaded napi on %s: %w", ifname, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		after, err := napiThreads(prefix)
		if err != nil {
			return nil, err
		}
		var fresh []int
		for _, p := range after {
			if !slices.Contains(before, p) {
				fresh = append(fresh, p)
			}
		}
		if len(fresh) > 0 {
			return fresh, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("no napi thread for %s in %s", ifname, ns.Name)
}

// napiThreads lists the pids of kernel threads whose name starts with prefix.
func napiThreads(prefix string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(string(b)), prefix) {
			out = append(out, pid)
		}
	}
	return out, nil
}

// pinThreads sets the CPU affinity of the given threads (nil cpus: all).
func pinThreads(pids []int, cpus []int) error {
	var set unix.CPUSet
	if cpus == nil {
		for i := range runtime.NumCPU() {
			set.Set(i)
		}
	}
	for _, c := range cpus {
		set.Set(c)
	}
	for _, p := range pids {
		if err := unix.SchedSetaffinity(p, &set); err != nil {
			return fmt.Errorf("set affinity of thread %d: %w", p, err)
		}
	}
	return nil
}

// setFIFO gives threads real-time priority (or takes it back), so that a
// woken receive thread runs at once instead of waiting out the
// generator's time slice while its ring overflows.
func setFIFO(pids []int, on bool) error {
	attr := unix.SchedAttr{} // SCHED_OTHER
	if on {
		attr = unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 50}
	}
	for _, p := range pids {
		if err := unix.SchedSetAttr(p, &attr, 0); err != nil {
			return fmt.Errorf("set scheduling policy of thread %d: %w", p, err)
		}
	}
	return nil
}

// threadsCPU is the CPU time the given threads have run, summed: the
// first field of /proc/PID/schedstat, in nanoseconds (utime and stime
// count in ticks of 10 ms).
func threadsCPU(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", p))
		if err != nil {
			return 0, fmt.Errorf("thread %d: %w", p, err)
		}
		d, err := parseSchedstat(string(b))
		if err != nil {
			return 0, fmt.Errorf("thread %d: %w", p, err)
		}
		sum += d
	}
	return sum, nil
}

// parseSchedstat reads the time on CPU from a schedstat line ("run_ns
// wait_ns timeslices").
func parseSchedstat(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return 0, fmt.Errorf("schedstat %q: want 3 fields", s)
	}
	ns, err := strconv.ParseUint(f[0], 10, 63)
	if err != nil {
		return 0, fmt.Errorf("schedstat %q: %w", s, err)
	}
	return time.Duration(ns), nil
}
