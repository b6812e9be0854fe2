package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"xvs/bpf"
)

// Balancer is one way of getting packets from the generator to the real
// servers: xvs in a mode, nftables DNAT, plain forwarding, or the static
// XDP reference.
type Balancer interface {
	// Name is the column name: "xvs", "xvs-tc", "nft", "forward", "ref".
	Name() string
	// XDP reports whether the datapath rewrites in XDP, so that the
	// endpoints must send complete checksums.
	XDP() bool
	// Start sets the balancer up in the topology's director.
	Start(ctx context.Context, tp *Topo) error
	// Stop removes everything Start set up.
	Stop() error
	// Target is where clients send for a service port: the VIP, or the
	// first real server when there is no NAT.
	Target(port uint16) netip.AddrPort
	// Targets is where many clients send for a service port: the VIP, or
	// every real server when there is no NAT (spread like a scheduler).
	Targets(port uint16) []netip.AddrPort
	// Scheduled is the number of connections the balancer has created so
	// far, when it can tell.
	Scheduled() (uint64, bool)
	// PuntDrops is the number of first packets dropped on the way to the
	// scheduler so far, when there is such a queue.
	PuntDrops() (uint64, bool)
}

// Forward is plain IPv4 forwarding without NAT: clients address a real
// server directly. The floor of what the kernel's stack costs.
type Forward struct{ tp *Topo }

func (f *Forward) Name() string                            { return "forward" }
func (f *Forward) XDP() bool                               { return false }
func (f *Forward) Start(_ context.Context, tp *Topo) error { f.tp = tp; return nil }
func (f *Forward) Stop() error                             { return nil }
func (f *Forward) Scheduled() (uint64, bool)               { return 0, false }
func (f *Forward) PuntDrops() (uint64, bool)               { return 0, false }
func (f *Forward) Target(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(f.tp.Addrs.RS[0], port)
}
func (f *Forward) Targets(port uint16) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range f.tp.Addrs.RS {
		out = append(out, netip.AddrPortFrom(a, port))
	}
	return out
}

// NFT is what a user without IPVS would pick: nftables DNAT with
// conntrack, round robin by numgen inc.
type NFT struct{ tp *Topo }

const nftTable = "xvsbench"

func (n *NFT) Name() string              { return "nft" }
func (n *NFT) XDP() bool                 { return false }
func (n *NFT) PuntDrops() (uint64, bool) { return 0, false }
func (n *NFT) Target(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(n.tp.Addrs.VIP, port)
}
func (n *NFT) Targets(port uint16) []netip.AddrPort {
	return []netip.AddrPort{n.Target(port)}
}

// Start loads the ruleset: UDP and HTTP round robin over both real
// servers, iperf3 to the first.
func (n *NFT) Start(_ context.Context, tp *Topo) error {
	n.tp = tp
	a := tp.Addrs
	rr := fmt.Sprintf("numgen inc mod 2 map { 0 : %s, 1 : %s }", a.RS[0], a.RS[1])
	rules := fmt.Sprintf(`table ip %s {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %s udp dport %d dnat to %s
		ip daddr %s tcp dport %d dnat to %s
		ip daddr %s tcp dport %d dnat to %s
	}
}
`, nftTable, a.VIP, udpPort, rr, a.VIP, httpPort, rr, a.VIP, iperPort, a.RS[0])
	cmd := tp.Dir.Exec(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %w: %s", err, out)
	}
	return nil
}

// Stop deletes the table and flushes conntrack's entries with it.
func (n *NFT) Stop() error {
	_, err := n.tp.Dir.Run("nft", "delete", "table", "ip", nftTable)
	return err
}

// Scheduled: conntrack's per-CPU "insert" statistic no longer counts on
// current kernels, so nft reports only what reaches the real servers.
func (n *NFT) Scheduled() (uint64, bool) { return 0, false }

// Ref is the static XDP reference (ref_xdp in bench.c): one fixed DNAT to
// the first real server and a redirect, nothing looked up.
type Ref struct {
	tp    *Topo
	objs  *BenchObjects
	links []link.Link
}

func (r *Ref) Name() string              { return "ref" }
func (r *Ref) XDP() bool                 { return true }
func (r *Ref) Scheduled() (uint64, bool) { return 0, false }
func (r *Ref) PuntDrops() (uint64, bool) { return 0, false }
func (r *Ref) Target(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(r.tp.Addrs.VIP, port)
}
func (r *Ref) Targets(port uint16) []netip.AddrPort {
	return []netip.AddrPort{r.Target(port)}
}

// Start loads ref_xdp and attaches it to both director interfaces.
func (r *Ref) Start(_ context.Context, tp *Topo) error {
	r.tp = tp
	objs, err := loadBench(func(s *BenchSpecs) error {
		return setVars(kv{s.RefVip, be32(tp.Addrs.VIP)}, kv{s.RefRs, be32(tp.Addrs.RS[0])},
			kv{s.RefExtIdx, uint32(tp.ExtIdx)},
			kv{s.RefExtSrc, mac6(tp.ExtMAC)}, kv{s.RefExtDst, mac6(tp.GenMAC)},
			kv{s.RefIntSrc, mac6(tp.IntMAC)}, kv{s.RefIntDst, mac6(tp.RSMAC)},
			kv{s.GenFlows, uint32(1)})
	})
	if err != nil {
		return err
	}
	r.objs = objs
	// A devmap resolves ifindexes in the namespace of the thread that
	// updates it: fill it from inside the director.
	err = tp.Dir.Do(func() error {
		for k, idx := range []uint32{uint32(tp.IntIdx), uint32(tp.ExtIdx)} {
			if err := objs.RefTx.Put(uint32(k), idx); err != nil {
				return fmt.Errorf("fill ref_tx: %w", err)
			}
		}
		for _, idx := range []int{tp.ExtIdx, tp.IntIdx} {
			l, err := link.AttachXDP(link.XDPOptions{Program: objs.RefXdp, Interface: idx})
			if err != nil {
				return fmt.Errorf("attach ref_xdp to ifindex %d: %w", idx, err)
			}
			r.links = append(r.links, l)
		}
		return nil
	})
	if err != nil {
		return errors.Join(err, r.Stop())
	}
	return nil
}

// Stop detaches and unloads the reference.
func (r *Ref) Stop() error {
	var errs []error
	for _, l := range r.links {
		errs = append(errs, l.Close())
	}
	r.links = nil
	if r.objs != nil {
		errs = append(errs, r.objs.Close())
		r.objs = nil
	}
	return errors.Join(errs...)
}

// XVS is xvsd in the director, in XDP or TC mode, configured with xvsadm
// like the nft ruleset: UDP and HTTP rr over both real servers, iperf3 to
// the first.
type XVS struct {
	Mode    string // "xdp" or "tc"
	Bin     string // directory holding xvsd and xvsadm
	WorkDir string // parent of its socket, bpffs and log ("": temp dir)
	ConnMax uint32 // --conn-max (0: xvsd's default)

	tp    *Topo
	dir   string
	sock  string
	bpffs string
	tap   string
	state string
	cmd   *exec.Cmd
	done  chan error
	log   *os.File
}

func (x *XVS) Name() string {
	if x.Mode == "xdp" {
		return "xvs"
	}
	return "xvs-" + x.Mode
}
func (x *XVS) XDP() bool { return x.Mode == "xdp" }
func (x *XVS) Target(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(x.tp.Addrs.VIP, port)
}
func (x *XVS) Targets(port uint16) []netip.AddrPort {
	return []netip.AddrPort{x.Target(port)}
}

// Start runs xvsd, waits until xvsadm answers and configures the services.
func (x *XVS) Start(ctx context.Context, tp *Topo) error {
	x.tp = tp
	dir, err := os.MkdirTemp(x.WorkDir, "xvsd-")
	if err != nil {
		return err
	}
	x.dir = dir
	x.sock = filepath.Join(dir, "xvsd.sock")
	x.bpffs = filepath.Join(dir, "bpffs")
	x.state = filepath.Join(dir, "state.json")
	x.tap = tp.Prefix[len(tp.Prefix)-6:] + "p" + x.Mode // <= 15 chars
	if err := os.Mkdir(x.bpffs, 0o700); err != nil {
		return err
	}
	// `ip netns exec` remounts /sys: the pins live on our own bpffs.
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", x.bpffs).CombinedOutput(); err != nil {
		return fmt.Errorf("mount bpffs: %w: %s", err, out)
	}
	x.log, err = os.Create(filepath.Join(dir, "xvsd.log"))
	if err != nil {
		return errors.Join(err, x.Stop())
	}
	args := []string{"--iface", extIf, "--iface", intIf, "--mode", x.Mode, "--socket", x.sock,
		"--bpffs", x.bpffs, "--tap", x.tap, "--state", x.state, "--metrics", xvsMetrics,
		// Room for the new-flow runs' half-open UDP conns while the
		// 1 s UDP timeout expires them.
		"--half-open-max", "1048576"}
	// The main pair is xvsd's default (1M) unless asked: since the flow
	// cache, a big table that has churned no longer halves XDP's
	// established rate (BENCHMARKS.md, sessions 6 and 7).
	if x.ConnMax != 0 {
		args = append(args, "--conn-max", strconv.FormatUint(uint64(x.ConnMax), 10))
	}
	x.cmd = tp.Dir.Exec(context.Background(), filepath.Join(x.Bin, "xvsd"), args...)
	x.cmd.Stdout, x.cmd.Stderr = x.log, x.log
	if err := x.cmd.Start(); err != nil {
		return errors.Join(fmt.Errorf("start xvsd: %w", err), x.Stop())
	}
	x.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(x.cmd, x.done)
	if err := x.waitReady(ctx); err != nil {
		return errors.Join(err, x.Stop())
	}
	a := tp.Addrs
	var cmds [][]string
	for _, s := range []struct {
		flag string
		port uint16
		rs   []netip.Addr
	}{{"-u", udpPort, a.RS}, {"-t", httpPort, a.RS}, {"-t", iperPort, a.RS[:1]}} {
		vip := netip.AddrPortFrom(a.VIP, s.port).String()
		cmds = append(cmds, []string{"-A", s.flag, vip, "-s", "rr"})
		for _, rs := range s.rs {
			cmds = append(cmds, []string{"-a", s.flag, vip, "-r", netip.AddrPortFrom(rs, s.port).String(), "-m"})
		}
	}
	for _, c := range cmds {
		if out, err := x.adm(c...); err != nil {
			return errors.Join(fmt.Errorf("xvsadm %s: %w: %s", strings.Join(c, " "), err, out), x.Stop())
		}
	}
	return nil
}

// SetUDPScheduler changes the UDP service's scheduler: rr is scheduled
// in the datapath (a ring), wlc by xvsd's workers.
func (x *XVS) SetUDPScheduler(name string) error {
	vip := netip.AddrPortFrom(x.tp.Addrs.VIP, udpPort).String()
	if out, err := x.adm("-E", "-u", vip, "-s", name); err != nil {
		return fmt.Errorf("xvsadm -E -u %s -s %s: %w: %s", vip, name, err, out)
	}
	return nil
}

// SetUDPTimeout sets the UDP timeout (xvsadm --set 0 0 seconds).
func (x *XVS) SetUDPTimeout(seconds int) error {
	if out, err := x.adm("--set", "0", "0", strconv.Itoa(seconds)); err != nil {
		return fmt.Errorf("xvsadm --set 0 0 %d: %w: %s", seconds, err, out)
	}
	return nil
}

func (x *XVS) adm(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(x.Bin, "xvsadm"),
		append([]string{"--socket", x.sock}, args...)...).CombinedOutput()
	return string(out), err
}

func (x *XVS) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case err := <-x.done:
			x.done <- err
			return fmt.Errorf("xvsd exited during start-up: %v\n%s", err, x.logText())
		default:
		}
		if _, err := x.adm("-L", "-n"); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("xvsd not ready after 15s\n%s", x.logText())
}

func (x *XVS) logText() string {
	b, _ := os.ReadFile(filepath.Join(x.dir, "xvsd.log"))
	return string(b)
}

// Stop terminates xvsd, runs `xvsd down` and removes its files.
func (x *XVS) Stop() error {
	var errs []error
	if x.cmd != nil && x.cmd.Process != nil {
		_ = x.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-x.done:
		case <-time.After(5 * time.Second):
			_ = x.cmd.Process.Kill()
			<-x.done
		}
		x.cmd = nil
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := x.tp.Dir.Exec(ctx, filepath.Join(x.Bin, "xvsd"), "down", "--bpffs", x.bpffs,
			"--tap", x.tap, "--state", x.state).CombinedOutput()
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("xvsd down: %w: %s", err, out))
		}
	}
	if x.log != nil {
		x.log.Close()
		x.log = nil
	}
	if x.bpffs != "" && mounted(x.bpffs) {
		if out, err := exec.Command("umount", x.bpffs).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("umount %s: %w: %s", x.bpffs, err, out))
		}
	}
	if x.dir != "" && len(errs) == 0 {
		errs = append(errs, os.RemoveAll(x.dir))
	}
	return errors.Join(errs...)
}

func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// xvsMetrics is where xvsd serves Prometheus metrics: the director
// namespace's own loopback.
const xvsMetrics = "127.0.0.1:9472"

// Events returns xvsd's xvs_datapath_events_total counters by reason:
// where packets and punted frames went.
func (x *XVS) Events() (map[string]float64, error) {
	var body []byte
	err := x.tp.Dir.Do(func() error {
		c, err := net.DialTimeout("tcp", xvsMetrics, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: xvsd\r\n\r\n"); err != nil {
			return err
		}
		body, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("xvsd metrics: %w", err)
	}
	return parseEvents(string(body)), nil
}

// parseEvents reads the xvs_datapath_events_total lines of a Prometheus
// text exposition.
func parseEvents(text string) map[string]float64 {
	out := map[string]float64{}
	const name = `xvs_datapath_events_total{reason="`
	for _, l := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(l, name)
		if !ok {
			continue
		}
		reason, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[reason] = v
		}
	}
	return out
}

// Scheduled is the sum of the services' Conns counters.
func (x *XVS) Scheduled() (uint64, bool) {
	out, err := x.adm("-L", "-n", "--stats", "--exact")
	if err != nil {
		return 0, false
	}
	v, err := parseServiceConns(out)
	return v, err == nil
}

// parseServiceConns sums the Conns column of the service lines (TCP/UDP)
// of `-L -n --stats --exact`.
func parseServiceConns(out string) (uint64, error) {
	var sum uint64
	found := false
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || (f[0] != "TCP" && f[0] != "UDP") {
			continue
		}
		v, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("service conns %q: %w", l, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, errors.New("no service in listing")
	}
	return sum, nil
}

// PuntDrops is the punt tap's tx_dropped: first packets the datapath
// redirected while the tap's queues were full.
func (x *XVS) PuntDrops() (uint64, bool) {
	v, err := linkStat(x.tp.Dir, x.tap, "TX", "dropped")
	return v, err == nil
}

// CPU is the CPU time (user + system) xvsd has used so far: its punt
// workers' reads, scheduling, installs and write-backs, the kernel's work
// in those syscalls included.
func (x *XVS) CPU() (time.Duration, bool) {
	if x.cmd == nil || x.cmd.Process == nil {
		return 0, false
	}
	d, err := procCPU(x.cmd.Process.Pid)
	return d, err == nil
}

// procCPU reads utime + stime of a process from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] { // utime, stime: fields 14 and 15
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// Pin sets the CPU affinity of every thread of xvsd (threads it starts
// later inherit it from the thread that starts them).
func (x *XVS) Pin(cpus []int) error {
	if x.cmd == nil || x.cmd.Process == nil {
		return errors.New("xvsd is not running")
	}
	return pinProcess(x.cmd.Process.Pid, cpus)
}

// pinProcess sets the CPU affinity of every thread of process pid.
func pinProcess(pid int, cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d of %d: %w", tid, pid, err)
		}
	}
	return nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on
// every Linux architecture Go supports here).
const clockTicks = 100

// SetFirstPacketBudget changes xvsd's global first-packet budget in its
// pinned xvs_budget map (rate 0: unlimited), the way xvsd's
// --first-packet-rate sets it at start-up, and returns a function that
// puts the previous one back.
func (x *XVS) SetFirstPacketBudget(rate, burst uint64) (restore func() error, err error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(x.bpffs, "xvs_budget"), nil)
	if err != nil {
		return nil, fmt.Errorf("open xvs_budget: %w", err)
	}
	defer m.Close()
	// The global bucket is the map's last entry (XVS_BUDGET_GLOBAL).
	key := m.MaxEntries() - 1
	var old bpf.XvsBudget
	if err := m.Lookup(key, &old); err != nil {
		return nil, fmt.Errorf("read the global budget: %w", err)
	}
	set := func(b bpf.XvsBudget) error {
		m, err := ebpf.LoadPinnedMap(filepath.Join(x.bpffs, "xvs_budget"), nil)
		if err != nil {
			return fmt.Errorf("open xvs_budget: %w", err)
		}
		defer m.Close()
		return m.Update(key, b, ebpf.UpdateExist)
	}
	if err := set(bpf.XvsBudget{Rate: rate, Burst: burst}); err != nil {
		return nil, err
	}
	return func() error { return set(bpf.XvsBudget{Rate: old.Rate, Burst: old.Burst}) }, nil
}

// Diag is xvsd's log and listing, for failures ("" when it is not running).
func (x *XVS) Diag() string {
	if x.cmd == nil {
		return ""
	}
	out, _ := x.adm("-L", "-n", "--stats", "--exact")
	counters, _ := x.adm("--counters")
	return out + "\n" + counters + "\n" + x.logText()
}
