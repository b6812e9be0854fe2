package maps

import (
	"errors"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"xvs/bpf"
	"xvs/bpf/expire"
)

// expireOne runs the batch expiry on cands and fails the test unless the
// kernel program (not the fallback) did it.
func expireOne(t *testing.T, m *Maps, cands []Conn) (int, []uint8) {
	t.Helper()
	out := make([]uint8, len(cands))
	n, err := m.expireConns(cands, out)
	if err != nil {
		t.Fatalf("expireConns: %v", err)
	}
	if m.expire.err != nil || m.expire.prog == nil {
		t.Fatalf("xvs_expire not loaded: %v", m.expire.err)
	}
	return n, out
}

func TestExpireKeyLayout(t *testing.T) {
	if a, b := unsafe.Sizeof(expire.ExpireConnKey{}), unsafe.Sizeof(bpf.XvsConnKey{}); a != b {
		t.Fatalf("expire conn_key is %d bytes, xvs conn_key %d", a, b)
	}
	c := udp6Conn()
	k, err := connKeyToBPF(c.Proto, c.Client, c.VIP)
	if err != nil {
		t.Fatal(err)
	}
	k.Pad = [2]uint8{1, 2}
	e := expireKey(k)
	if got, want := unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e)),
		unsafe.Slice((*byte)(unsafe.Pointer(&k)), unsafe.Sizeof(k)); string(got) != string(want) {
		t.Errorf("expireKey changed the bytes: %x, want %x", got, want)
	}
}

// TestExpireConns: one conn per case, expired alone in a batch, against
// the real maps: where it ends up, what the run reports and its real
// server's counters.
func TestExpireConns(t *testing.T) {
	const seen = 100 * time.Second
	tests := []struct {
		name  string
		conn  Conn
		state bpf.XvsTcpState // set as the datapath would, if not NONE
		// refreshed: a packet stamped a later last_seen after the walk.
		refreshed bool
		// absent: the conn is not installed at all.
		absent      bool
		wantPair    pair
		wantOutcome uint8
		// counters after the run (active, inactive)
		wantActive, wantInactive int64
	}{
		{name: "new pair, state none: inactive counted out", conn: tcpConn(1),
			wantPair: pairNone, wantOutcome: outcomeRemoved},
		{name: "new pair, syn recv: active counted out", conn: tcpConn(2), state: bpf.XvsTcpStateSTATE_SYN_RECV,
			wantPair: pairNone, wantOutcome: outcomeRemoved},
		{name: "new pair, udp over ipv6", conn: udp6Conn(),
			wantPair: pairNone, wantOutcome: outcomeRemoved},
		{name: "main pair, established: active counted out",
			conn:     withState(tcpConn(3), bpf.XvsTcpStateSTATE_ESTABLISHED),
			wantPair: pairNone, wantOutcome: outcomeRemoved},
		{name: "main pair, fin wait: inactive counted out",
			conn:     withState(tcpConn(4), bpf.XvsTcpStateSTATE_ESTABLISHED),
			state:    bpf.XvsTcpStateSTATE_FIN_WAIT,
			wantPair: pairNone, wantOutcome: outcomeRemoved},
		{name: "main pair, refreshed: kept", conn: withState(tcpConn(5), bpf.XvsTcpStateSTATE_ESTABLISHED),
			refreshed: true, wantPair: pairMain, wantOutcome: outcomeFresh, wantActive: 1},
		{name: "new pair, refreshed: kept", conn: tcpConn(6),
			refreshed: true, wantPair: pairNew, wantOutcome: outcomeFresh, wantInactive: 1},
		{name: "missing: reported gone", conn: tcpConn(7), absent: true,
			wantPair: pairNone, wantOutcome: outcomeGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, raw := newTestMaps(t)
			c := tt.conn
			c.LastSeen = seen
			if !tt.absent {
				if err := m.InstallConn(c); err != nil {
					t.Fatal(err)
				}
				if tt.state != bpf.XvsTcpStateSTATE_NONE {
					datapathSetState(t, m, raw, c, uint8(tt.state), seen)
				}
				if tt.refreshed {
					st, err := m.LookupConn(c.Proto, c.Client, c.VIP)
					if err != nil {
						t.Fatal(err)
					}
					datapathSetState(t, m, raw, c, st.State, seen+time.Second)
				}
			}
			n, out := expireOne(t, m, []Conn{c})
			if out[0] != tt.wantOutcome {
				t.Errorf("outcome %d, want %d", out[0], tt.wantOutcome)
			}
			want := 0
			if tt.wantOutcome == outcomeRemoved {
				want = 1
			}
			if n != want {
				t.Errorf("removed %d, want %d", n, want)
			}
			wantPair(t, m, raw, c, tt.wantPair)
			wantDestConns(t, m, c.DestID, tt.wantActive, tt.wantInactive)
		})
	}
}

func withState(c Conn, s bpf.XvsTcpState) Conn {
	c.State = uint8(s)
	c.Flags = 0
	return c
}

// TestExpireDuringMove: the datapath is half-way through promoting a conn
// (both pairs hold it) when it expires: both copies go, and it is counted
// out once.
func TestExpireDuringMove(t *testing.T) {
	m, raw := newTestMaps(t)
	c := tcpConn(10)
	c = halfPromoted(t, m, raw, c)
	n, out := expireOne(t, m, []Conn{c})
	if n != 1 || out[0] != outcomeRemoved {
		t.Errorf("removed %d, outcome %d; want 1, %d", n, out[0], outcomeRemoved)
	}
	wantPair(t, m, raw, c, pairNone)
	wantDestConns(t, m, c.DestID, 0, 0)
}

// TestExpireSharedServerKey: a server-side key that another, newer conn
// has taken over stays when the older conn expires, in both pairs.
func TestExpireSharedServerKey(t *testing.T) {
	m, raw := newTestMaps(t)
	old := withState(tcpConn(20), bpf.XvsTcpStateSTATE_ESTABLISHED)
	old.LastSeen = time.Second
	if err := m.InstallConn(old); err != nil {
		t.Fatal(err)
	}
	nc := tcpConn(20) // same real server and client port, another service
	nc.VIP = netip.MustParseAddrPort("202.103.106.6:80")
	nc.SvcID = 3
	nc.LastSeen = 2 * time.Second
	if err := m.InstallConn(nc); err != nil {
		t.Fatal(err)
	}
	nck, sk, _, _ := m.connToBPF(nc)
	n, out := expireOne(t, m, []Conn{old})
	if n != 1 || out[0] != outcomeRemoved {
		t.Fatalf("removed %d, outcome %d; want 1, %d", n, out[0], outcomeRemoved)
	}
	for _, mp := range []*ebpf.Map{raw.XvsRconns, raw.XvsRconnsNew} {
		var back bpf.XvsRconn
		if err := mp.Lookup(&sk, &back); err != nil || back != (bpf.XvsRconn{SvcId: 3, Vport: portBE(80)}) {
			t.Errorf("%v: server-side key = %+v, %v; want the newer conn's", mp, back, err)
		}
	}
	if _, err := m.LookupConn(old.Proto, old.Client, old.VIP); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired conn still there: %v", err)
	}
	var v bpf.XvsConn
	if err := raw.XvsConnsNew.Lookup(&nck, &v); err != nil {
		t.Errorf("newer conn gone: %v", err)
	}
	wantDestConns(t, m, nc.DestID, 0, 1) // the newer conn, still counted
}

// TestExpireBatches: more candidates than one run takes, mixed: in the
// main pair, in the new pair, refreshed since the walk, and never
// installed. Each is reported and handled on its own.
func TestExpireBatches(t *testing.T) {
	const total = 2*expireBatch + 77
	m, raw := newTestMaps(t)
	cands := make([]Conn, total)
	want := make([]uint8, total)
	wantRemoved := 0
	var active, inactive int64
	for i := range total {
		c := tcpConn(i)
		c.DestID = uint32(i % 3)
		if i < 3 {
			setDests(t, m, c)
		}
		c.LastSeen = time.Duration(i+1) * time.Second
		if i%2 == 0 {
			c = withState(c, bpf.XvsTcpStateSTATE_ESTABLISHED)
		}
		cands[i] = c
		switch {
		case i%11 == 0:
			want[i] = outcomeGone
			continue // never installed
		case i%7 == 0:
			want[i] = outcomeFresh
		default:
			want[i] = outcomeRemoved
			wantRemoved++
		}
		if err := m.InstallConn(c); err != nil {
			t.Fatalf("install %d: %v", i, err)
		}
		if want[i] == outcomeFresh {
			datapathSetState(t, m, raw, c, c.State, c.LastSeen+time.Millisecond)
			if Active(c.State) {
				active++
			} else {
				inactive++
			}
		}
	}
	n, out := expireOne(t, m, cands)
	if n != wantRemoved {
		t.Errorf("removed %d, want %d", n, wantRemoved)
	}
	for i, c := range cands {
		if out[i] != want[i] {
			t.Errorf("cand %d: outcome %d, want %d", i, out[i], want[i])
		}
		p := pairNone
		if want[i] == outcomeFresh {
			p = pairNew
			if i%2 == 0 {
				p = pairMain
			}
		}
		wantPair(t, m, raw, c, p)
	}
	var gotA, gotI int64
	for id := range uint32(3) {
		a, in := m.DestConns(id)
		gotA += a
		gotI += in
	}
	if gotA != active || gotI != inactive {
		t.Errorf("counters left %d/%d, want %d/%d (the refreshed conns)", gotA, gotI, active, inactive)
	}

	// A second pass removes nothing more: everything left is fresh.
	n, _ = expireOne(t, m, cands)
	if n != 0 {
		t.Errorf("second pass removed %d, want 0", n)
	}
}

// TestExpireAfterClose: the program goes with the Maps.
func TestExpireAfterClose(t *testing.T) {
	m, _ := newTestMaps(t)
	c := tcpConn(1)
	if err := m.InstallConn(c); err != nil {
		t.Fatal(err)
	}
	expireOne(t, m, []Conn{c})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ExpireConns([]Conn{c}); err == nil {
		t.Error("ExpireConns after Close succeeded")
	}
	if n, err := m.ExpireConns(nil); n != 0 || err != nil {
		t.Errorf("ExpireConns(nil) = %d, %v; want 0, nil", n, err)
	}
}

// TestExpireFallback: without xvs_expire (a kernel that refuses it),
// ExpireConns does the same with DeleteConnIf per conn.
func TestExpireFallback(t *testing.T) {
	m, raw := newTestMaps(t)
	m.expire.loaded, m.expire.err = true, errors.New("refused by the test")
	gone := withState(tcpConn(1), bpf.XvsTcpStateSTATE_ESTABLISHED)
	kept := tcpConn(2)
	missing := tcpConn(3)
	for _, c := range []*Conn{&gone, &kept} {
		c.LastSeen = time.Second
		if err := m.InstallConn(*c); err != nil {
			t.Fatal(err)
		}
	}
	datapathSetState(t, m, raw, kept, 0, 2*time.Second)
	out := make([]uint8, 3)
	n, err := m.expireConns([]Conn{gone, kept, missing}, out)
	if err != nil || n != 1 {
		t.Fatalf("expireConns = %d, %v; want 1, nil", n, err)
	}
	if want := []uint8{outcomeRemoved, outcomeGone, outcomeGone}; string(out) != string(want) {
		t.Errorf("outcomes %v, want %v", out, want)
	}
	wantPair(t, m, raw, gone, pairNone)
	wantPair(t, m, raw, kept, pairNew)
	wantDestConns(t, m, gone.DestID, 0, 1)
}
