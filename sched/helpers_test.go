package sched

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCounters is a Counters the test sets by hand.
type fakeCounters struct {
	mu               sync.Mutex
	active, inactive int64
}

func (c *fakeCounters) Active() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active
}

func (c *fakeCounters) Inactive() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inactive
}

func (c *fakeCounters) set(a, i int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active, c.inactive = a, i
}

func (c *fakeCounters) addActive(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active += n
}

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// rig is a pool whose dests have short names (A, B, C or an address).
type rig struct {
	t    *testing.T
	p    *Pool
	c    map[string]*fakeCounters
	addr map[string]netip.AddrPort
	name map[netip.AddrPort]string
}

func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	p, err := NewPool(cfg)
	if err != nil {
		t.Fatalf("NewPool(%+v): %v", cfg, err)
	}
	return &rig{t: t, p: p, c: map[string]*fakeCounters{}, addr: map[string]netip.AddrPort{}, name: map[netip.AddrPort]string{}}
}

// addrOf maps a name to an address: an "ip:port" name is itself, else a
// stable address in 10.9.0.0/24 port 80.
func (r *rig) addrOf(name string) netip.AddrPort {
	if a, ok := r.addr[name]; ok {
		return a
	}
	a, err := netip.ParseAddrPort(name)
	if err != nil {
		a = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, 0, byte(len(r.addr) + 1)}), 80)
	}
	r.addr[name] = a
	r.name[a] = name
	return a
}

func (r *rig) add(name string, w int32) {
	r.t.Helper()
	r.addThr(name, w, 0, 0)
}

func (r *rig) addThr(name string, w int32, u, l uint32) {
	r.t.Helper()
	c := &fakeCounters{}
	if _, err := r.p.AddDest(DestConfig{Addr: r.addrOf(name), Weight: w, UThreshold: u, LThreshold: l}, c); err != nil {
		r.t.Fatalf("AddDest %s: %v", name, err)
	}
	r.c[name] = c
}

func (r *rig) edit(name string, w int32, u, l uint32) {
	r.t.Helper()
	if err := r.p.EditDest(DestConfig{Addr: r.addrOf(name), Weight: w, UThreshold: u, LThreshold: l}); err != nil {
		r.t.Fatalf("EditDest %s: %v", name, err)
	}
}

func (r *rig) del(name string) {
	r.t.Helper()
	if err := r.p.DelDest(r.addrOf(name)); err != nil {
		r.t.Fatalf("DelDest %s: %v", name, err)
	}
}

// pick schedules f and returns the dest's name, or "-" for ErrNoDest.
func (r *rig) pick(f Flow) string {
	r.t.Helper()
	d, err := r.p.Schedule(f)
	if err != nil {
		if d != nil {
			r.t.Fatalf("Schedule returned %v with error %v", d.Addr, err)
		}
		return "-"
	}
	n, ok := r.name[d.Addr]
	if !ok {
		r.t.Fatalf("Schedule returned unknown dest %v", d.Addr)
	}
	return n
}

// picks schedules n flows and returns the names space-separated; with
// active set, each pick counts one more active connection on its dest.
func (r *rig) picks(n int, f Flow, active bool) string {
	r.t.Helper()
	out := make([]string, n)
	for i := range out {
		out[i] = r.pick(f)
		if active && out[i] != "-" {
			r.c[out[i]].addActive(1)
		}
	}
	return strings.Join(out, " ")
}

var flow0 = Flow{Proto: 6, Client: netip.MustParseAddrPort("10.0.0.2:40000"), VIP: netip.MustParseAddrPort("192.0.2.1:80")}

// clientFlow is flow0 from another client address.
func clientFlow(client string) Flow {
	f := flow0
	f.Client = netip.AddrPortFrom(netip.MustParseAddr(client), 40000)
	return f
}

func rep(s string, n int) string {
	return strings.TrimSpace(strings.Repeat(s+" ", n))
}
