package maps

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"xvs/bpf"
)

type pair int

const (
	pairNone pair = iota
	pairNew
	pairMain
	pairBoth
)

func (p pair) String() string { return [...]string{"none", "new", "main", "both"}[p] }

// pairOf says which pair holds c: both keys must agree, and the
// server-side key must name the client-side key (its service and virtual
// port).
func pairOf(t *testing.T, m *Maps, raw *bpf.XvsMaps, c Conn) pair {
	t.Helper()
	ck, sk, _, err := m.connToBPF(c)
	if err != nil {
		t.Fatal(err)
	}
	in := func(conns, rconns *ebpf.Map) bool {
		var v bpf.XvsConn
		cerr := conns.Lookup(&ck, &v)
		var back bpf.XvsRconn
		rerr := rconns.Lookup(&sk, &back)
		if (cerr == nil) != (rerr == nil) {
			t.Errorf("%s: client side %v, server side %v: keys disagree", c.Client, cerr, rerr)
		}
		if want := rconnOf(ck, v); rerr == nil && back != want {
			t.Errorf("%s: server side maps to %+v, want %+v", c.Client, back, want)
		}
		return cerr == nil
	}
	p := pairNone
	if in(raw.XvsConnsNew, raw.XvsRconnsNew) {
		p = pairNew
	}
	if in(raw.XvsConns, raw.XvsRconns) {
		p += pairMain - pairNone
		if p > pairBoth {
			p = pairBoth
		}
	}
	return p
}

func wantPair(t *testing.T, m *Maps, raw *bpf.XvsMaps, c Conn, want pair) {
	t.Helper()
	if got := pairOf(t, m, raw, c); got != want {
		t.Errorf("conn %s is in pair %s, want %s", c.Client, got, want)
	}
}

// datapathPromote does what bpf/lib/conn.h's conn_promote does when a
// packet establishes a conn of the new pair: insert both keys into the
// main pair, then delete them from the new one. half stops after the
// halfPromoted installs c (last seen 1 s), establishes it and leaves it
// half-way through the datapath's promotion: in both pairs. It returns c
// as installed.
func halfPromoted(t *testing.T, m *Maps, raw *bpf.XvsMaps, c Conn) Conn {
	t.Helper()
	c.LastSeen = time.Second
	if err := m.InstallConn(c); err != nil {
		t.Fatal(err)
	}
	datapathSetState(t, m, raw, c, uint8(bpf.XvsTcpStateSTATE_ESTABLISHED), time.Second)
	datapathPromote(t, m, raw, c, true)
	wantPair(t, m, raw, c, pairBoth)
	return c
}

// inserts (a move in progress on another CPU).
func datapathPromote(t *testing.T, m *Maps, raw *bpf.XvsMaps, c Conn, half bool) {
	t.Helper()
	ck, sk, _, err := m.connToBPF(c)
	if err != nil {
		t.Fatal(err)
	}
	var v bpf.XvsConn
	if err := raw.XvsConnsNew.Lookup(&ck, &v); err != nil {
		t.Fatal(err)
	}
	if err := raw.XvsConns.Update(&ck, &v, ebpf.UpdateNoExist); err != nil {
		t.Fatal(err)
	}
	if err := raw.XvsRconns.Update(&sk, rconnOf(ck, v), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if half {
		return
	}
	if err := raw.XvsConnsNew.Delete(&ck); err != nil {
		t.Fatal(err)
	}
	if err := raw.XvsRconnsNew.Delete(&sk); err != nil {
		t.Fatal(err)
	}
}

func TestInstallPair(t *testing.T) {
	tests := []struct {
		name  string
		proto uint8
		state bpf.XvsTcpState
		want  pair
	}{
		{name: "new tcp conn", state: bpf.XvsTcpStateSTATE_NONE, want: pairNew},
		{name: "syn recv", state: bpf.XvsTcpStateSTATE_SYN_RECV, want: pairNew},
		{name: "time wait (reachable without established)", state: bpf.XvsTcpStateSTATE_TIME_WAIT, want: pairNew},
		{name: "established from a sync master", state: bpf.XvsTcpStateSTATE_ESTABLISHED, want: pairMain},
		{name: "fin wait", state: bpf.XvsTcpStateSTATE_FIN_WAIT, want: pairMain},
		{name: "close wait", state: bpf.XvsTcpStateSTATE_CLOSE_WAIT, want: pairMain},
		{name: "udp", proto: 17, want: pairNew},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, raw := newTestMaps(t)
			c := tcpConn(i)
			if tt.proto != 0 {
				c.Proto = tt.proto
			}
			c.State = uint8(tt.state)
			if err := m.InstallConn(c); err != nil {
				t.Fatal(err)
			}
			wantPair(t, m, raw, c, tt.want)
			a, in := int64(0), int64(1)
			if Active(c.State) {
				a, in = 1, 0
			}
			wantDestConns(t, m, c.DestID, a, in)

			// The same client-side key is refused whichever pair holds it.
			other := c
			other.State = uint8(bpf.XvsTcpStateSTATE_NONE)
			if tt.want == pairNew {
				other.State = uint8(bpf.XvsTcpStateSTATE_ESTABLISHED)
				other.Proto = c.Proto
			}
			if c.Proto == 17 {
				other.State = 0
			}
			if err := m.InstallConn(other); !errors.Is(err, ErrConnExists) {
				t.Errorf("second install = %v, want ErrConnExists", err)
			}
			wantPair(t, m, raw, c, tt.want)
			wantDestConns(t, m, c.DestID, a, in)
		})
	}
}

// TestPromotedConn: a conn the datapath moved to the main pair is found,
// walked once, expired and deleted there, with its counter.
func TestPromotedConn(t *testing.T) {
	m, raw := newTestMaps(t)
	c := tcpConn(3)
	c.LastSeen = 50 * time.Second
	if err := m.InstallConn(c); err != nil {
		t.Fatal(err)
	}
	wantPair(t, m, raw, c, pairNew)
	datapathSetState(t, m, raw, c, uint8(bpf.XvsTcpStateSTATE_ESTABLISHED), 60*time.Second)
	wantDestConns(t, m, c.DestID, 1, 0)
	datapathPromote(t, m, raw, c, false)
	wantPair(t, m, raw, c, pairMain)
	wantDestConns(t, m, c.DestID, 1, 0) // the move changes no counter

	c.State, c.Flags, c.LastSeen = uint8(bpf.XvsTcpStateSTATE_ESTABLISHED), 0, 60*time.Second
	if got, err := m.LookupConn(c.Proto, c.Client, c.VIP); err != nil || got != c {
		t.Fatalf("LookupConn = %+v, %v; want %+v", got, err, c)
	}
	// Another conn stays in the new pair: the walk sees both, each once.
	d := tcpConn(4)
	if err := m.InstallConn(d); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.AddrPort]int{}
	for _, walk := range []func(context.Context, func(Conn) bool) error{m.WalkConns, m.iterateConns} {
		clear(seen)
		if err := walk(context.Background(), func(x Conn) bool { seen[x.Client]++; return true }); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2 || seen[c.Client] != 1 || seen[d.Client] != 1 {
			t.Errorf("walk saw %v, want %s and %s once each", seen, c.Client, d.Client)
		}
	}

	if ok, err := m.DeleteConnIf(c, 50*time.Second); ok || err != nil {
		t.Errorf("DeleteConnIf with an old last_seen = %v, %v; want false, nil", ok, err)
	}
	if ok, err := m.DeleteConnIf(c, 60*time.Second); !ok || err != nil {
		t.Errorf("DeleteConnIf = %v, %v; want true, nil", ok, err)
	}
	wantPair(t, m, raw, c, pairNone)
	wantDestConns(t, m, c.DestID, 0, 1)
	if _, err := m.DeleteConn(d.Proto, d.Client, d.VIP); err != nil {
		t.Fatal(err)
	}
	wantPair(t, m, raw, d, pairNone)
	wantDestConns(t, m, c.DestID, 0, 0)
}

// TestRemoveDuringMove: the datapath is half-way through moving a conn
// (inserted into the main pair, not yet deleted from the new one) when Go
// removes it. Whatever Go does, the conn is counted out exactly once.
func TestRemoveDuringMove(t *testing.T) {
	tests := []struct {
		name       string
		remove     func(m *Maps, c Conn) error
		wantPair   pair
		wantActive int64
	}{
		{name: "delete conn removes both copies", wantPair: pairNone, wantActive: 0,
			remove: func(m *Maps, c Conn) error {
				_, err := m.DeleteConn(c.Proto, c.Client, c.VIP)
				return err
			}},
		{name: "expiry of the main copy removes both", wantPair: pairNone, wantActive: 0,
			remove: func(m *Maps, c Conn) error {
				ok, err := m.DeleteConnIf(c, c.LastSeen)
				if err == nil && !ok {
					err = errors.New("not removed")
				}
				return err
			}},
		{name: "new pair removed after the move: reported moved, still counted", wantPair: pairMain, wantActive: 1,
			remove: func(m *Maps, c Conn) error {
				ck, _, _, _ := m.connToBPF(c)
				_, moved, err := m.removeNew(ck)
				if err == nil && !moved {
					err = errors.New("not reported as moved")
				}
				return err
			}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, raw := newTestMaps(t)
			c := tcpConn(10 + i)
			c = halfPromoted(t, m, raw, c)
			if err := tt.remove(m, c); err != nil {
				t.Fatal(err)
			}
			wantPair(t, m, raw, c, tt.wantPair)
			wantDestConns(t, m, c.DestID, tt.wantActive, 0)
		})
	}
}

// shadowingPair installs an established conn and returns it with a
// half-open conn, not installed, of another service with the same real
// server and client port: its server-side key is the older conn's.
func shadowingPair(t *testing.T, m *Maps) (old, nc Conn) {
	t.Helper()
	old = tcpConn(20)
	old.State = uint8(bpf.XvsTcpStateSTATE_ESTABLISHED)
	if err := m.InstallConn(old); err != nil {
		t.Fatal(err)
	}
	nc = old
	nc.VIP = netip.MustParseAddrPort("202.103.106.6:80") // same RS and client port
	nc.SvcID = 3                                         // another service
	nc.State = 0
	return old, nc
}

// TestServerKeyShadowing: a newer half-open conn with the same server-side
// key as an established one takes the key over in the main pair too (the
// datapath looks there first), as a newer conn shadows an older one.
func TestServerKeyShadowing(t *testing.T) {
	m, raw := newTestMaps(t)
	old, nc := shadowingPair(t, m)
	if err := m.InstallConn(nc); err != nil {
		t.Fatal(err)
	}
	_, sk, _, _ := m.connToBPF(nc)
	want := bpf.XvsRconn{SvcId: 3, Vport: portBE(80)}
	var back bpf.XvsRconn
	for _, mp := range []*ebpf.Map{raw.XvsRconns, raw.XvsRconnsNew} {
		if err := mp.Lookup(&sk, &back); err != nil || back != want {
			t.Errorf("%v: server side = %+v, %v; want the newer conn's %+v", mp, back, err, want)
		}
	}
	if _, err := m.DeleteConn(nc.Proto, nc.Client, nc.VIP); err != nil {
		t.Fatal(err)
	}
	if err := raw.XvsRconns.Lookup(&sk, &back); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("server side of the deleted conn left in the main pair: %v", err)
	}
	if _, err := m.LookupConn(old.Proto, old.Client, old.VIP); err != nil {
		t.Errorf("older conn gone: %v", err)
	}
}

// TestFullNewPair: a flood of half-open installs beyond the new pair's size
// removes the oldest half-open conns, with their counters, and never an
// established one; after a restart (a fresh Maps, nothing remembered) the
// longest idle half-open conn goes first.
func TestFullNewPair(t *testing.T) {
	const size, est, flood = 64, 10, 200
	m, raw := newTestMapsSized(t, size)
	var conns []Conn
	for i := range size {
		c := tcpConn(i)
		c.LastSeen = time.Duration(i+1) * time.Second
		if err := m.InstallConn(c); err != nil {
			t.Fatalf("install %d of %d: %v", i, size, err)
		}
		conns = append(conns, c)
	}
	// The first est of them get established and move to the main pair.
	for _, c := range conns[:est] {
		datapathSetState(t, m, raw, c, uint8(bpf.XvsTcpStateSTATE_ESTABLISHED), time.Hour)
		datapathPromote(t, m, raw, c, false)
	}
	for i := range flood {
		c := tcpConn(1000 + i)
		c.LastSeen = time.Duration(1000+i) * time.Second
		if err := m.InstallConn(c); err != nil {
			t.Fatalf("flood install %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	if got, want := m.HalfOpenEvicted(), uint64(flood-est); got != want {
		t.Errorf("evicted %d, want %d", got, want)
	}
	for i, c := range conns {
		want := pairNone
		switch {
		case i < est:
			want = pairMain
		case i >= len(conns)-size:
			want = pairNew
		}
		wantPair(t, m, raw, c, want)
	}
	wantDestConns(t, m, 7, est, size)

	// A restarted daemon remembers nothing: the longest idle goes first.
	m2, err := New(raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Close() })
	oldest := conns[len(conns)-size]
	victim := conns[len(conns)-size/2]
	var v bpf.XvsConn
	ck, _, _, _ := m.connToBPF(victim)
	if err := raw.XvsConnsNew.Lookup(&ck, &v); err != nil {
		t.Fatal(err)
	}
	v.LastSeen = uint64(2 * time.Second) // idle longest
	if err := raw.XvsConnsNew.Put(&ck, &v); err != nil {
		t.Fatal(err)
	}
	c := tcpConn(5000)
	if err := m2.InstallConn(c); err != nil {
		t.Fatal(err)
	}
	wantPair(t, m, raw, victim, pairNone)
	wantPair(t, m, raw, oldest, pairNew)
	wantPair(t, m, raw, c, pairNew)
	wantDestConns(t, m, 7, est, size)
}

// TestFullNewPairMoving: a full new pair whose every conn is being moved
// to the main pair (inserted there, not yet deleted from the new one)
// still takes a new install; the moving conns stay, counted once.
func TestFullNewPairMoving(t *testing.T) {
	const size = 8
	m, raw := newTestMapsSized(t, size)
	var conns []Conn
	for i := range size {
		c := tcpConn(i)
		if err := m.InstallConn(c); err != nil {
			t.Fatal(err)
		}
		datapathSetState(t, m, raw, c, uint8(bpf.XvsTcpStateSTATE_ESTABLISHED), time.Hour)
		datapathPromote(t, m, raw, c, true)
		conns = append(conns, c)
	}
	n := tcpConn(100)
	if err := m.InstallConn(n); err != nil {
		t.Fatalf("install into a full pair of moving conns: %v", err)
	}
	wantPair(t, m, raw, n, pairNew)
	if got := m.HalfOpenEvicted(); got != 0 {
		t.Errorf("evicted %d, want 0: moving conns are not evicted", got)
	}
	for _, c := range conns {
		if p := pairOf(t, m, raw, c); p != pairMain && p != pairBoth {
			t.Errorf("moving conn %s in pair %s, want main", c.Client, p)
		}
	}
	wantDestConns(t, m, 7, size, 1)
}

// TestShadowFlag: a half-open conn whose install points an older conn's
// server-side key in xvs_rconns at it carries CONN_F_SHADOW, whichever
// way it was installed (InstallConn, or xvs_install through
// InstallConns), and a conn that shadows nothing does not. The kernel's
// removals drop the key from xvs_rconns only for a conn with the flag,
// sparing the lookup for the others; the shadowing key goes with its
// conn.
func TestShadowFlag(t *testing.T) {
	shadow := uint8(bpf.XvsConnFlagsCONN_F_SHADOW)
	installs := []struct {
		name    string
		install func(*Maps, Conn) error
	}{
		{"InstallConn", (*Maps).InstallConn},
		{"InstallConns", func(m *Maps, c Conn) error {
			errs := make([]error, 1)
			m.InstallConns([]Conn{c}, errs)
			return errs[0]
		}},
	}
	removals := []struct {
		name   string
		remove func(*Maps, Conn) (int, error)
	}{
		{"SweepConns", func(m *Maps, c Conn) (int, error) {
			res, err := m.SweepConns(c.LastSeen+time.Hour, testSweepTimeouts(), 0)
			return res.Removed, err
		}},
		{"ExpireConns", func(m *Maps, c Conn) (int, error) { return m.ExpireConns([]Conn{c}) }},
	}
	for _, in := range installs {
		for _, rm := range removals {
			t.Run(in.name+"/"+rm.name, func(t *testing.T) {
				m, raw := newTestMaps(t)
				old, nc := shadowingPair(t, m)
				nc.LastSeen = time.Second
				other := tcpConn(21)
				other.LastSeen = time.Second
				for _, c := range []Conn{nc, other} {
					if err := in.install(m, c); err != nil {
						t.Fatal(err)
					}
				}
				for _, tt := range []struct {
					c    Conn
					want uint8
				}{{nc, shadow}, {other, 0}} {
					ck, _, _, err := m.connToBPF(tt.c)
					if err != nil {
						t.Fatal(err)
					}
					var v bpf.XvsConn
					if err := raw.XvsConnsNew.Lookup(&ck, &v); err != nil {
						t.Fatalf("%s: %v", tt.c.Client, err)
					}
					if v.Flags&shadow != tt.want {
						t.Errorf("%s: flags %#x, want shadow bit %#x", tt.c.Client, v.Flags, tt.want)
					}
				}
				// The old conn stays fresh; both half-open conns go.
				old.LastSeen = nc.LastSeen + 2*time.Hour
				datapathSetState(t, m, raw, old, old.State, old.LastSeen)
				n, err := rm.remove(m, nc)
				if err == nil && rm.name == "ExpireConns" {
					var k int
					k, err = rm.remove(m, other)
					n += k
				}
				if err != nil || n != 2 {
					t.Fatalf("removed %d, %v; want 2", n, err)
				}
				_, sk, _, _ := m.connToBPF(nc)
				var back bpf.XvsRconn
				if err := raw.XvsRconns.Lookup(&sk, &back); !errors.Is(err, ebpf.ErrKeyNotExist) {
					t.Errorf("shadowing server-side key left in xvs_rconns: %+v, %v", back, err)
				}
				if _, err := m.LookupConn(old.Proto, old.Client, old.VIP); err != nil {
					t.Errorf("older conn gone: %v", err)
				}
			})
		}
	}
}
