package maps

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"xvs/bpf"
	"xvs/testutil"
)

// newTestMaps loads the datapath's maps unpinned, so tests never touch a
// bpffs, and wraps them.
func newTestMaps(t testing.TB) (*Maps, *bpf.XvsMaps) {
	t.Helper()
	return newTestMapsSized(t, 8192)
}

// newTestMapsSized is newTestMaps with a new pair of newMax entries.
func newTestMapsSized(t testing.TB, newMax uint32) (*Maps, *bpf.XvsMaps) {
	t.Helper()
	m, raw := newTestMapsSpec(t, func(spec *ebpf.CollectionSpec) {
		spec.Maps[bpf.XvsMapXvsConns].MaxEntries = 8192
		spec.Maps[bpf.XvsMapXvsRconns].MaxEntries = 8192
		spec.Maps[bpf.XvsMapXvsConnsNew].MaxEntries = newMax
		spec.Maps[bpf.XvsMapXvsRconnsNew].MaxEntries = newMax
	})
	// The real servers of tcpConn, udp6Conn and install_test's second
	// dest, as the control plane sets them before it installs conns.
	setDests(t, m, tcpConn(0), udp6Conn(), Conn{Dest: netip.MustParseAddrPort("172.16.0.3:80"), DestID: 8})
	return m, raw
}

// newTestMapsSpec loads the xvs object's maps, unpinned, as edit leaves
// their specs, and wraps them.
func newTestMapsSpec(t testing.TB, edit func(*ebpf.CollectionSpec)) (*Maps, *bpf.XvsMaps) {
	t.Helper()
	testutil.NeedRoot(t)
	spec, err := bpf.LoadXvs()
	if err != nil {
		t.Fatal(err)
	}
	for _, ms := range spec.Maps {
		ms.Pinning = ebpf.PinNone
	}
	edit(spec)
	var raw bpf.XvsMaps
	if err := spec.LoadAndAssign(&raw, nil); err != nil {
		t.Fatalf("load maps: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	m, err := New(&raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, &raw
}

// setDests gives each conn's dest id its Dest address in xvs_dests
// (available), as the control plane does before it installs conns.
func setDests(t testing.TB, m *Maps, cs ...Conn) {
	t.Helper()
	for _, c := range cs {
		if err := m.SetDest(c.DestID, c.Dest.Addr(), true); err != nil {
			t.Fatal(err)
		}
	}
}

func tcpConn(i int) Conn {
	return Conn{
		Proto:  unix.IPPROTO_TCP,
		Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), uint16(1024+i)),
		VIP:    netip.MustParseAddrPort("202.103.106.5:80"),
		Dest:   netip.MustParseAddrPort("172.16.0.2:80"),
		Flags:  uint8(bpf.XvsConnFlagsCONN_F_NEW),
		SvcID:  1,
		DestID: 7,
	}
}

func udp6Conn() Conn {
	return Conn{
		Proto:  unix.IPPROTO_UDP,
		Client: netip.MustParseAddrPort("[2001:db8:1::7]:53000"),
		VIP:    netip.MustParseAddrPort("[2001:db8::5]:53"),
		Dest:   netip.MustParseAddrPort("[fd00::3]:53"),
		Flags:  uint8(bpf.XvsConnFlagsCONN_F_NEW),
		SvcID:  2,
		DestID: 9,
	}
}

func wantDestConns(t *testing.T, m *Maps, id uint32, active, inactive int64) {
	t.Helper()
	a, i := m.DestConns(id)
	if a != active || i != inactive {
		t.Errorf("dest %d: active/inactive %d/%d, want %d/%d", id, a, i, active, inactive)
	}
}

func TestConnLifecycle(t *testing.T) {
	m, raw := newTestMaps(t)
	tests := []struct {
		name string
		conn Conn
	}{
		{name: "tcp v4", conn: tcpConn(1)},
		{name: "udp v6", conn: udp6Conn()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.conn
			before := Now()
			if err := m.InstallConn(c); err != nil {
				t.Fatal(err)
			}
			wantDestConns(t, m, c.DestID, 0, 1)
			got, err := m.LookupConn(c.Proto, c.Client, c.VIP)
			if err != nil {
				t.Fatal(err)
			}
			if got.LastSeen < before || got.LastSeen > Now() {
				t.Errorf("zero LastSeen stamped %v, want within [%v, now]", got.LastSeen, before)
			}
			c.LastSeen = got.LastSeen

			got, err = m.LookupConn(c.Proto, c.Client, c.VIP)
			if err != nil || got != c {
				t.Fatalf("LookupConn = %+v, %v; want %+v", got, err, c)
			}
			// A new conn is in the new pair only.
			wantPair(t, m, raw, c, pairNew)
			// The server-side key maps back to the client-side key.
			_, sk, _, _ := m.connToBPF(c)
			var back bpf.XvsRconn
			want := bpf.XvsRconn{SvcId: c.SvcID, Vport: portBE(c.VIP.Port())}
			if err := raw.XvsRconnsNew.Lookup(&sk, &back); err != nil || back != want {
				t.Fatalf("rconns lookup = %+v, %v; want %+v", back, err, want)
			}

			// A second installer loses and changes nothing.
			loser := c
			loser.Dest = netip.AddrPortFrom(c.Dest.Addr().Next(), c.Dest.Port())
			loser.DestID = 11
			setDests(t, m, loser)
			if err := m.InstallConn(loser); !errors.Is(err, ErrConnExists) {
				t.Fatalf("second InstallConn = %v, want ErrConnExists", err)
			}
			_, lsk, _, _ := m.connToBPF(loser)
			if err := raw.XvsRconnsNew.Lookup(&lsk, &back); !errors.Is(err, ebpf.ErrKeyNotExist) {
				t.Errorf("loser's server-side key left behind: %v", err)
			}
			if err := raw.XvsRconnsNew.Lookup(&sk, &back); err != nil {
				t.Errorf("winner's server-side key removed: %v", err)
			}
			wantDestConns(t, m, c.DestID, 0, 1)

			removed, err := m.DeleteConn(c.Proto, c.Client, c.VIP)
			if err != nil || removed != c {
				t.Fatalf("DeleteConn = %+v, %v; want %+v", removed, err, c)
			}
			wantDestConns(t, m, c.DestID, 0, 0)
			if err := raw.XvsRconnsNew.Lookup(&sk, &back); !errors.Is(err, ebpf.ErrKeyNotExist) {
				t.Errorf("rconns key still there after delete: %v", err)
			}
			if _, err := m.LookupConn(c.Proto, c.Client, c.VIP); !errors.Is(err, ErrNotFound) {
				t.Errorf("LookupConn after delete = %v, want ErrNotFound", err)
			}
			if _, err := m.DeleteConn(c.Proto, c.Client, c.VIP); !errors.Is(err, ErrNotFound) {
				t.Errorf("second DeleteConn = %v, want ErrNotFound", err)
			}
		})
	}
}

// datapathSetState does what the datapath does when a packet moves a conn
// to another state: store the state, move the count through the mmap.
func datapathSetState(t *testing.T, m *Maps, raw *bpf.XvsMaps, c Conn, state uint8, lastSeen time.Duration) {
	t.Helper()
	ck, _, _, err := m.connToBPF(c)
	if err != nil {
		t.Fatal(err)
	}
	tbl := raw.XvsConns
	var v bpf.XvsConn
	if err := tbl.Lookup(&ck, &v); err != nil {
		tbl = raw.XvsConnsNew
		if err := tbl.Lookup(&ck, &v); err != nil {
			t.Fatal(err)
		}
	}
	if Active(v.State) != Active(state) {
		m.addDestConns(v.DestId, v.State, -1)
		m.addDestConns(v.DestId, state, 1)
	}
	v.State = state
	v.Flags = 0
	v.LastSeen = uint64(lastSeen)
	if err := tbl.Put(&ck, &v); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteByClass(t *testing.T) {
	tests := []struct {
		name       string
		state      bpf.XvsTcpState
		wantActive int64
	}{
		{name: "established is active", state: bpf.XvsTcpStateSTATE_ESTABLISHED, wantActive: 1},
		{name: "synack is active", state: bpf.XvsTcpStateSTATE_SYNACK, wantActive: 1},
		{name: "time wait is inactive", state: bpf.XvsTcpStateSTATE_TIME_WAIT, wantActive: 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, raw := newTestMaps(t)
			c := tcpConn(i)
			if err := m.InstallConn(c); err != nil {
				t.Fatal(err)
			}
			datapathSetState(t, m, raw, c, uint8(tt.state), Now())
			wantDestConns(t, m, c.DestID, tt.wantActive, 1-tt.wantActive)
			got, err := m.DeleteConn(c.Proto, c.Client, c.VIP)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != uint8(tt.state) {
				t.Errorf("removed state %d, want %d", got.State, tt.state)
			}
			wantDestConns(t, m, c.DestID, 0, 0)
		})
	}
}

func TestDeleteConnIf(t *testing.T) {
	m, raw := newTestMaps(t)
	c := tcpConn(1)
	c.LastSeen = 100 * time.Second
	if err := m.InstallConn(c); err != nil {
		t.Fatal(err)
	}

	// A packet refreshed the conn after the expiry pass read it.
	datapathSetState(t, m, raw, c, uint8(bpf.XvsTcpStateSTATE_ESTABLISHED), 101*time.Second)
	ok, err := m.DeleteConnIf(c, c.LastSeen)
	if err != nil || ok {
		t.Fatalf("DeleteConnIf with old last_seen = %v, %v; want false, nil", ok, err)
	}
	if _, err := m.LookupConn(c.Proto, c.Client, c.VIP); err != nil {
		t.Fatalf("refreshed conn removed: %v", err)
	}
	wantDestConns(t, m, c.DestID, 1, 0)

	ok, err = m.DeleteConnIf(c, 101*time.Second)
	if err != nil || !ok {
		t.Fatalf("DeleteConnIf with current last_seen = %v, %v; want true, nil", ok, err)
	}
	if _, err := m.LookupConn(c.Proto, c.Client, c.VIP); !errors.Is(err, ErrNotFound) {
		t.Errorf("conn still there: %v", err)
	}
	wantDestConns(t, m, c.DestID, 0, 0)

	ok, err = m.DeleteConnIf(c, 101*time.Second)
	if err != nil || ok {
		t.Errorf("DeleteConnIf on a gone conn = %v, %v; want false, nil", ok, err)
	}
}

func TestWalkConns(t *testing.T) {
	m, _ := newTestMaps(t)
	const n = 1000
	want := map[netip.AddrPort]Conn{}
	for i := range n {
		c := tcpConn(i)
		c.LastSeen = time.Duration(i+1) * time.Second
		if err := m.InstallConn(c); err != nil {
			t.Fatal(err)
		}
		want[c.Client] = c
	}
	wantDestConns(t, m, 7, 0, n)

	walkers := []struct {
		name string
		walk func(context.Context, func(Conn) bool) error
	}{
		{name: "batch", walk: m.WalkConns},
		{name: "iterator", walk: m.iterateConns},
	}
	for _, w := range walkers {
		t.Run(w.name+" all", func(t *testing.T) {
			got := map[netip.AddrPort]Conn{}
			if err := w.walk(context.Background(), func(c Conn) bool {
				got[c.Client] = c
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != n {
				t.Fatalf("walked %d conns, want %d", len(got), n)
			}
			for k, c := range want {
				if got[k] != c {
					t.Fatalf("conn %s = %+v, want %+v", k, got[k], c)
				}
			}
		})
		t.Run(w.name+" stops", func(t *testing.T) {
			calls := 0
			if err := w.walk(context.Background(), func(Conn) bool {
				calls++
				return calls < 10
			}); err != nil {
				t.Fatal(err)
			}
			if calls != 10 {
				t.Errorf("fn called %d times after returning false at 10", calls)
			}
		})
		t.Run(w.name+" cancelled", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := w.walk(ctx, func(Conn) bool { return true }); !errors.Is(err, context.Canceled) {
				t.Errorf("walk with cancelled ctx = %v", err)
			}
		})
	}
}

// TestCountersConcurrent checks that Go's adds and the datapath's adds on
// the mmap never lose each other's updates.
func TestCountersConcurrent(t *testing.T) {
	m, raw := newTestMaps(t)
	const conns, moves = 2000, 5000
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < conns; i += 2 {
				if err := m.InstallConn(tcpConn(i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// The "datapath": flip counts between the classes, ending balanced
	// except for the last moves.
	wg.Go(func() {
		act := (*int64)(m.destField(7, offActive))
		inact := (*int64)(m.destField(7, offInactive))
		for i := range moves {
			if i%2 == 0 {
				atomic.AddInt64(act, 1)
				atomic.AddInt64(inact, -1)
			} else {
				atomic.AddInt64(act, -1)
				atomic.AddInt64(inact, 1)
			}
		}
		atomic.AddInt64(act, 3)
		atomic.AddInt64(inact, -3)
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wantDestConns(t, m, 7, 3, conns-3)

	// The kernel sees the same values through the map.
	var d bpf.XvsDest
	if err := raw.XvsDests.Lookup(uint32(7), &d); err != nil {
		t.Fatal(err)
	}
	if d.Active != 3 || d.Inactive != conns-3 {
		t.Errorf("map lookup active/inactive %d/%d", d.Active, d.Inactive)
	}
}

func TestDestFlagsAndReset(t *testing.T) {
	m, raw := newTestMaps(t)
	c := tcpConn(1)
	if err := m.InstallConn(c); err != nil {
		t.Fatal(err)
	}
	if err := m.SetDest(c.DestID, c.Dest.Addr(), true); err != nil {
		t.Fatal(err)
	}
	var d bpf.XvsDest
	if err := raw.XvsDests.Lookup(c.DestID, &d); err != nil {
		t.Fatal(err)
	}
	if d.Flags != uint32(bpf.XvsDestFlagsDEST_F_AVAILABLE) || d.Inactive != 1 ||
		d.Family != familyInet || d.Addr != [16]byte{172, 16, 0, 2} {
		t.Errorf("after SetDest: %+v", d)
	}
	if !m.DestAvailable(c.DestID) {
		t.Error("DestAvailable false after SetDest(true)")
	}
	// An IPv6 address, as the datapath reads it; a mapped IPv4 one is
	// IPv4.
	v6 := netip.MustParseAddr("fd00::7")
	if err := m.SetDest(c.DestID, v6, false); err != nil {
		t.Fatal(err)
	}
	if m.DestAvailable(c.DestID) {
		t.Error("DestAvailable true after SetDest(false)")
	}
	if err := raw.XvsDests.Lookup(c.DestID, &d); err != nil || d.Family != familyInet6 || d.Addr != v6.As16() {
		t.Errorf("after SetDest(%s): %+v, %v", v6, d, err)
	}
	if a, ok := m.DestAddr(c.DestID); !ok || a != v6 {
		t.Errorf("DestAddr = %s, %v; want %s", a, ok, v6)
	}
	if err := m.SetDest(c.DestID, netip.MustParseAddr("::ffff:172.16.0.2"), false); err != nil {
		t.Fatal(err)
	}
	if a, ok := m.DestAddr(c.DestID); !ok || a != c.Dest.Addr() {
		t.Errorf("DestAddr after a mapped address = %s, %v; want %s", a, ok, c.Dest.Addr())
	}
	wantDestConns(t, m, c.DestID, 0, 1)

	putPerCPU(t, raw.XvsDestStats, c.DestID, func(cpu int) bpf.XvsStats { return bpf.XvsStats{Conns: 1, Inpkts: uint64(cpu)} })
	if err := m.ResetDest(c.DestID); err != nil {
		t.Fatal(err)
	}
	wantDestConns(t, m, c.DestID, 0, 0)
	if s, err := m.DestStats(c.DestID); err != nil || s != (Stats{}) {
		t.Errorf("DestStats after reset = %+v, %v", s, err)
	}
	if a, ok := m.DestAddr(c.DestID); ok {
		t.Errorf("DestAddr after reset = %s, want none", a)
	}
	if err := m.SetDest(c.DestID, netip.Addr{}, true); err == nil {
		t.Error("SetDest without an address succeeded")
	}

	if err := m.SetDest(m.destMax, c.Dest.Addr(), true); err == nil {
		t.Error("SetDest out of range succeeded")
	}
	if a, i := m.DestConns(m.destMax); a != 0 || i != 0 {
		t.Error("DestConns out of range not zero")
	}
	if err := m.InstallConn(Conn{Proto: 6, Client: c.Client, VIP: c.VIP, Dest: c.Dest, DestID: m.destMax}); err == nil {
		t.Error("InstallConn with out-of-range dest id succeeded")
	}
}

func TestDestConnsNoAlloc(t *testing.T) {
	m, _ := newTestMaps(t)
	var sink int64
	allocs := testing.AllocsPerRun(1000, func() {
		a, i := m.DestConns(5)
		sink += a + i
	})
	if allocs != 0 {
		t.Errorf("DestConns allocates %.1f times per call", allocs)
	}
	_ = sink
}

func putPerCPU(t *testing.T, mp *ebpf.Map, id uint32, fn func(cpu int) bpf.XvsStats) {
	t.Helper()
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]bpf.XvsStats, ncpu)
	for i := range vals {
		vals[i] = fn(i)
	}
	if err := mp.Put(id, vals); err != nil {
		t.Fatal(err)
	}
}

func TestStatsSum(t *testing.T) {
	m, raw := newTestMaps(t)
	ncpu, _ := ebpf.PossibleCPU()
	n := uint64(ncpu)
	per := func(cpu int) bpf.XvsStats {
		c := uint64(cpu + 1)
		return bpf.XvsStats{Conns: c, Inpkts: 10 * c, Outpkts: 100 * c, Inbytes: 1000 * c, Outbytes: 1 << 40 * c}
	}
	sum := n * (n + 1) / 2 // 1 + 2 + ... + ncpu
	want := Stats{Conns: sum, InPkts: 10 * sum, OutPkts: 100 * sum, InBytes: 1000 * sum, OutBytes: 1 << 40 * sum}

	putPerCPU(t, raw.XvsSvcStats, 12, per)
	putPerCPU(t, raw.XvsDestStats, 300, per)
	if got, err := m.ServiceStats(12); err != nil || got != want {
		t.Errorf("ServiceStats = %+v, %v; want %+v", got, err, want)
	}
	if got, err := m.DestStats(300); err != nil || got != want {
		t.Errorf("DestStats = %+v, %v; want %+v", got, err, want)
	}
	if got, err := m.ServiceStats(13); err != nil || got != (Stats{}) {
		t.Errorf("untouched ServiceStats = %+v, %v", got, err)
	}
	if _, err := m.ServiceStats(1 << 20); err == nil {
		t.Error("ServiceStats out of range succeeded")
	}

	// Reasons: reason r counts r+1 on every CPU.
	for r := range uint32(bpf.XvsReasonREASON_MAX) {
		vals := make([]uint64, ncpu)
		for i := range vals {
			vals[i] = uint64(r + 1)
		}
		if err := raw.XvsReasons.Put(r, vals); err != nil {
			t.Fatal(err)
		}
	}
	reasons, err := m.Reasons()
	if err != nil {
		t.Fatal(err)
	}
	for r, got := range reasons {
		if want := uint64(r+1) * n; got != want {
			t.Errorf("reason %s = %d, want %d", ReasonName(bpf.XvsReason(r)), got, want)
		}
	}
}

func TestServices(t *testing.T) {
	m, raw := newTestMaps(t)
	want := map[SvcKey]uint32{
		{Proto: unix.IPPROTO_TCP, Addr: netip.MustParseAddrPort("202.103.106.5:80")}:  1,
		{Proto: unix.IPPROTO_UDP, Addr: netip.MustParseAddrPort("202.103.106.5:80")}:  2,
		{Proto: unix.IPPROTO_TCP, Addr: netip.MustParseAddrPort("[2001:db8::5]:443")}: 4095,
	}
	for k, id := range want {
		if err := m.PutService(k, id); err != nil {
			t.Fatal(err)
		}
	}
	got, err := m.Services()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("Services = %v, want %v", got, want)
	}
	for k, id := range want {
		if gid, ok := got[k]; !ok || gid != id {
			t.Errorf("Services[%v] = %d, %v; want %d", k, gid, ok, id)
		}
	}
	gone := SvcKey{Proto: unix.IPPROTO_UDP, Addr: netip.MustParseAddrPort("202.103.106.5:80")}
	if err := m.DeleteService(gone); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteService(gone); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteService = %v, want ErrNotFound", err)
	}
	got, _ = m.Services()
	if _, ok := got[gone]; ok || len(got) != 2 {
		t.Errorf("Services after delete = %v", got)
	}
	// xvs_vips holds every service's key by id, the deleted one's too
	// (its conns may outlive it).
	for k, id := range want {
		var v bpf.XvsSvcKey
		if err := raw.XvsVips.Lookup(id, &v); err != nil {
			t.Fatal(err)
		}
		if back, err := svcKeyFromBPF(v); err != nil || back != k {
			t.Errorf("xvs_vips[%d] = %v, %v; want %v", id, back, err, k)
		}
	}
	if err := m.PutService(gone, 4096); err == nil {
		t.Error("PutService with an id beyond xvs_vips succeeded")
	}
}

func TestPuntAndHeartbeat(t *testing.T) {
	m, _ := newTestMaps(t)
	before := Now()
	if err := m.SetPunt(7, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	c, err := m.Cfg()
	if err != nil {
		t.Fatal(err)
	}
	if c.PuntIfindex != 7 || c.StaleNs != uint64(3*time.Second) {
		t.Errorf("cfg after SetPunt = %+v", c)
	}
	if c.AliveNs < uint64(before) || c.AliveNs > uint64(Now()) {
		t.Errorf("alive_ns %d outside [%d, now]", c.AliveNs, before)
	}
	first := c.AliveNs
	// Let the monotonic clock move on; bounded.
	for i := 0; i < 1000 && Now() == time.Duration(first); i++ {
		time.Sleep(time.Microsecond)
	}
	if err := m.Heartbeat(); err != nil {
		t.Fatal(err)
	}
	c2, _ := m.Cfg()
	if c2.AliveNs <= first || c2.PuntIfindex != 7 || c2.StaleNs != uint64(3*time.Second) {
		t.Errorf("cfg after Heartbeat = %+v (first alive %d)", c2, first)
	}
}

func TestNowIsMonotonic(t *testing.T) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	a := Now()
	if a < time.Duration(ts.Nano()) {
		t.Errorf("Now %v before CLOCK_MONOTONIC %v", a, time.Duration(ts.Nano()))
	}
	if b := Now(); b < a {
		t.Errorf("Now went backwards: %v < %v", b, a)
	}
}

func TestSetBudget(t *testing.T) {
	m, raw := newTestMaps(t)
	tests := []struct {
		name        string
		id          uint32
		global      bool
		rate, burst uint64
		wantIndex   uint32
	}{
		{name: "service", id: 7, rate: 1000, burst: 100, wantIndex: 7},
		{name: "global", id: 7, global: true, rate: 50000, burst: 0, wantIndex: raw.XvsBudget.MaxEntries() - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A bucket the datapath has used starts full again.
			if err := raw.XvsBudget.Put(tt.wantIndex, &bpf.XvsBudget{Tokens: -5, LastNs: 99}); err != nil {
				t.Fatal(err)
			}
			if err := m.SetBudget(tt.id, tt.global, tt.rate, tt.burst); err != nil {
				t.Fatal(err)
			}
			var got bpf.XvsBudget
			if err := raw.XvsBudget.Lookup(tt.wantIndex, &got); err != nil {
				t.Fatal(err)
			}
			if want := (bpf.XvsBudget{Rate: tt.rate, Burst: tt.burst}); got != want {
				t.Errorf("budget[%d] = %+v, want %+v", tt.wantIndex, got, want)
			}
		})
	}
}
