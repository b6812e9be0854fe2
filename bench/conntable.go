package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"xvs/bpf"
	"xvs/ctl"
	"xvs/maps"
)

// ConnTableResult is the scale figure: the connection table's memory at
// Entries connections and the cost of expiry sweeps over it.
type ConnTableResult struct {
	MaxEntries  uint32
	Installed   int           // conns installed (InstallConn calls that succeeded)
	Walked      int           // conns a walk saw afterwards (LRU may evict early)
	FillTime    time.Duration // wall time of installing them
	ConnsBytes  uint64        // memlock of xvs_conns
	RconnsBytes uint64        // memlock of xvs_rconns
	// TableBytes is the memlock of every map of the connection table:
	// the main pair above and, in datapaths that have it, the pair for
	// half-open conns (xvs_conns_new, xvs_rconns_new), sized from it.
	TableBytes uint64
	TableMaps  []string
	// Sweeps with nothing to expire (the steady state of a busy director,
	// paid every interval), then one sweep that expires every conn: by
	// the daemon's walk (xvsd's default at this size), and by the kernel's
	// sweep (xvsd --sweep-max-conns at least the table's size) after the
	// table is filled again. The kernel's run stops after 1024 removals
	// (maps.SweepConns), so its expire-all is that run, then the walk.
	Sweeps, KSweeps       []Sweep
	ExpireAll, KExpireAll Sweep
	// DeleteAll is the kernel's own part of expiring everything: both
	// keys of every conn removed with BPF_MAP_DELETE_BATCH, nothing of
	// xvs around it, after the table is filled a third time. No expiry
	// removes conns for less.
	DeleteAll Sweep
}

// Sweep is one call of ctl.Table.Expire.
type Sweep struct {
	Wall, CPU time.Duration
	Expired   int
}

// BytesPerConn is the table's memory divided by its capacity (the maps
// are preallocated, so this is also the cost of each connection when full).
func (r ConnTableResult) BytesPerConn() float64 {
	if r.MaxEntries == 0 {
		return 0
	}
	return float64(r.TableBytes) / float64(r.MaxEntries)
}

// tableMemlock creates each connection-table map of spec on its own (a
// map's memory depends only on its spec; the maps are preallocated) and
// sums their memlock.
func tableMemlock(spec *ebpf.CollectionSpec) (uint64, []string, error) {
	var sum uint64
	var names []string
	for name, ms := range spec.Maps {
		if !strings.HasPrefix(name, "xvs_conns") && !strings.HasPrefix(name, "xvs_rconns") {
			continue
		}
		m, err := ebpf.NewMap(ms)
		if err != nil {
			return 0, nil, fmt.Errorf("create %s: %w", name, err)
		}
		n, err := memlock(m)
		m.Close()
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w", name, err)
		}
		sum += n
		names = append(names, fmt.Sprintf("%s(%d entries)=%d", name, ms.MaxEntries, n))
	}
	slices.Sort(names)
	return sum, names, nil
}

// ConnTable loads the xvs object unpinned and unattached with n entries in
// both connection maps, fills xvs_conns/xvs_rconns through maps.InstallConn,
// and times ctl.Table.Expire over it: reps sweeps that expire nothing, then
// one that expires everything (a clock one hour ahead).
func ConnTable(ctx context.Context, n uint32, reps int) (ConnTableResult, error) {
	res := ConnTableResult{MaxEntries: n}
	spec, err := bpf.LoadXvs()
	if err != nil {
		return res, fmt.Errorf("load xvs spec: %w", err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	spec.Maps[bpf.XvsMapXvsConns].MaxEntries = n
	spec.Maps[bpf.XvsMapXvsRconns].MaxEntries = n
	if res.TableBytes, res.TableMaps, err = tableMemlock(spec); err != nil {
		return res, err
	}
	var objs bpf.XvsMaps
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return res, fmt.Errorf("load xvs maps: %w", err)
	}
	defer objs.Close()
	if res.ConnsBytes, err = memlock(objs.XvsConns); err != nil {
		return res, err
	}
	if res.RconnsBytes, err = memlock(objs.XvsRconns); err != nil {
		return res, err
	}
	m, err := maps.New(&objs)
	if err != nil {
		return res, err
	}
	defer m.Close()

	vip := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.1"), 80)
	rs := netip.AddrPortFrom(netip.MustParseAddr("198.19.0.2"), 80)
	// The conns go to dest id 0, whose address the datapath (and
	// InstallConn's check) takes from xvs_dests.
	if err := m.SetDest(0, rs.Addr(), true); err != nil {
		return res, err
	}
	fill := func() error {
		for i := range n {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c := maps.Conn{
				Proto:  unix.IPPROTO_TCP,
				Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000),
				VIP:    vip,
				Dest:   rs,
				State:  uint8(bpf.XvsTcpStateSTATE_ESTABLISHED),
			}
			if err := m.InstallConn(c); err != nil {
				return fmt.Errorf("fill conn table at %d: %w", i, err)
			}
		}
		return nil
	}
	t0 := time.Now()
	if err := fill(); err != nil {
		return res, err
	}
	res.Installed = int(n)
	res.FillTime = time.Since(t0)
	if err := m.WalkConns(ctx, func(maps.Conn) bool { res.Walked++; return true }); err != nil {
		return res, err
	}

	// sweeps times reps sweeps of tab that expire nothing (after one
	// untimed, which tells the table its size), then one with a clock an
	// hour ahead that expires everything.
	sweeps := func(max int) ([]Sweep, Sweep, error) {
		now := maps.Now()
		tab := ctl.NewTable(m, ctl.TableOptions{SweepMaxConns: max, Mono: func() time.Duration { return now }})
		if _, err := tab.Expire(ctx); err != nil {
			return nil, Sweep{}, err
		}
		var out []Sweep
		for range reps {
			s, err := timeSweep(ctx, tab)
			if err != nil {
				return out, Sweep{}, err
			}
			out = append(out, s)
		}
		now += time.Hour
		all, err := timeSweep(ctx, tab)
		return out, all, err
	}
	if res.Sweeps, res.ExpireAll, err = sweeps(-1); err != nil {
		return res, err
	}
	if err := fill(); err != nil {
		return res, err
	}
	if res.KSweeps, res.KExpireAll, err = sweeps(int(n)); err != nil {
		return res, err
	}
	if err := fill(); err != nil {
		return res, err
	}
	res.DeleteAll, err = deleteAll(objs.XvsConns, objs.XvsRconns)
	return res, err
}

// deleteAll removes every key of the maps with BPF_MAP_DELETE_BATCH and
// times that alone (the keys are read first, untimed).
func deleteAll(ms ...*ebpf.Map) (Sweep, error) {
	keys := make([][]bpf.XvsConnKey, len(ms))
	for i, m := range ms {
		var k bpf.XvsConnKey
		it := m.Iterate()
		var v []byte
		for it.Next(&k, &v) {
			keys[i] = append(keys[i], k)
		}
		if err := it.Err(); err != nil {
			return Sweep{}, fmt.Errorf("read keys: %w", err)
		}
	}
	c0, err := cpuTime()
	if err != nil {
		return Sweep{}, err
	}
	t0 := time.Now()
	n := 0
	for i, m := range ms {
		d, err := m.BatchDelete(keys[i], nil)
		n += d
		if err != nil {
			return Sweep{}, fmt.Errorf("batch delete: %w", err)
		}
	}
	wall := time.Since(t0)
	c1, err := cpuTime()
	if err != nil {
		return Sweep{}, err
	}
	return Sweep{Wall: wall, CPU: c1 - c0, Expired: n / len(ms)}, nil
}

func timeSweep(ctx context.Context, tab *ctl.Table) (Sweep, error) {
	c0, err := cpuTime()
	if err != nil {
		return Sweep{}, err
	}
	t0 := time.Now()
	n, err := tab.Expire(ctx)
	wall := time.Since(t0)
	if err != nil {
		return Sweep{}, fmt.Errorf("expire: %w", err)
	}
	c1, err := cpuTime()
	if err != nil {
		return Sweep{}, err
	}
	return Sweep{Wall: wall, CPU: c1 - c0, Expired: n}, nil
}

// cpuTime is the process's user + system time: the sweep's own CPU and
// the kernel's work in its map syscalls.
func cpuTime() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// memlock is the map's memory as the kernel accounts it (the "memlock"
// that bpftool map show prints), from /proc/self/fdinfo.
func memlock(m *ebpf.Map) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		return 0, fmt.Errorf("map fdinfo: %w", err)
	}
	defer f.Close()
	return parseMemlock(f)
}

func parseMemlock(f *os.File) (uint64, error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && k == "memlock" {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read fdinfo: %w", err)
	}
	return 0, errors.New("no memlock in map fdinfo")
}
