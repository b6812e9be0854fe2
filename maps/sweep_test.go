package maps

import (
	"testing"
	"time"

	"xvs/bpf"
)

// sweepTimeouts are IPVS's defaults in the sweep's terms (the daemon
// derives them from its --set timeouts; ctl tests that derivation).
func testSweepTimeouts() SweepTimeouts {
	to := SweepTimeouts{New: 3 * time.Second, UDP: 300 * time.Second}
	for s, sec := range map[bpf.XvsTcpState]int{
		bpf.XvsTcpStateSTATE_NONE: 2, bpf.XvsTcpStateSTATE_ESTABLISHED: 900,
		bpf.XvsTcpStateSTATE_SYN_SENT: 120, bpf.XvsTcpStateSTATE_SYN_RECV: 60,
		bpf.XvsTcpStateSTATE_FIN_WAIT: 120, bpf.XvsTcpStateSTATE_TIME_WAIT: 120,
		bpf.XvsTcpStateSTATE_CLOSE: 10, bpf.XvsTcpStateSTATE_CLOSE_WAIT: 60,
		bpf.XvsTcpStateSTATE_LAST_ACK: 30, bpf.XvsTcpStateSTATE_LISTEN: 120,
		bpf.XvsTcpStateSTATE_SYNACK: 120,
	} {
		to.TCP[s] = time.Duration(sec) * time.Second
	}
	return to
}

// TestSweepConns: conns of every kind in both pairs, swept together by
// the kernel: the idle ones go from their pair, counted out of their real
// server's class; the others stay, as do their counts.
func TestSweepConns(t *testing.T) {
	const now = 1000 * time.Second
	tests := []struct {
		name  string
		conn  Conn
		state bpf.XvsTcpState // set as the datapath would (clears CONN_F_NEW), if not NONE
		idle  time.Duration   // now - last_seen
		pair  pair            // where it is before the sweep
		gone  bool
	}{
		{name: "new, idle past 3 s", conn: tcpConn(1), idle: 4 * time.Second, pair: pairNew, gone: true},
		{name: "new, idle 2 s", conn: tcpConn(2), idle: 2 * time.Second, pair: pairNew},
		{name: "new pair, syn recv past 60 s", conn: tcpConn(3), state: bpf.XvsTcpStateSTATE_SYN_RECV,
			idle: 61 * time.Second, pair: pairNew, gone: true},
		{name: "new pair, syn recv 59 s", conn: tcpConn(4), state: bpf.XvsTcpStateSTATE_SYN_RECV,
			idle: 59 * time.Second, pair: pairNew},
		{name: "established past 900 s", conn: withState(tcpConn(5), bpf.XvsTcpStateSTATE_ESTABLISHED),
			idle: 901 * time.Second, pair: pairMain, gone: true},
		{name: "established 899 s", conn: withState(tcpConn(6), bpf.XvsTcpStateSTATE_ESTABLISHED),
			idle: 899 * time.Second, pair: pairMain},
		{name: "fin wait past 120 s", conn: withState(tcpConn(7), bpf.XvsTcpStateSTATE_ESTABLISHED),
			state: bpf.XvsTcpStateSTATE_FIN_WAIT, idle: 121 * time.Second, pair: pairMain, gone: true},
		{name: "close past 10 s", conn: withState(tcpConn(8), bpf.XvsTcpStateSTATE_ESTABLISHED),
			state: bpf.XvsTcpStateSTATE_CLOSE, idle: 11 * time.Second, pair: pairMain, gone: true},
		{name: "close 9 s", conn: withState(tcpConn(9), bpf.XvsTcpStateSTATE_ESTABLISHED),
			state: bpf.XvsTcpStateSTATE_CLOSE, idle: 9 * time.Second, pair: pairMain},
		{name: "udp over ipv6 past 300 s, not new", conn: withState(udp6Conn(), bpf.XvsTcpStateSTATE_NONE),
			idle: 301 * time.Second, pair: pairNew, gone: true},
		{name: "seen after the clock was read", conn: withState(tcpConn(10), bpf.XvsTcpStateSTATE_ESTABLISHED),
			state: bpf.XvsTcpStateSTATE_CLOSE, idle: -time.Second, pair: pairMain},
	}
	m, raw := newTestMaps(t)
	for _, tt := range tests {
		c := tt.conn
		c.LastSeen = now - tt.idle
		if err := m.InstallConn(c); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if tt.state != bpf.XvsTcpStateSTATE_NONE {
			datapathSetState(t, m, raw, c, uint8(tt.state), c.LastSeen)
		}
		wantPair(t, m, raw, c, tt.pair)
	}
	// What stays counted: the kept conns by class and real server.
	type counts struct{ active, inactive int64 }
	want := map[uint32]*counts{}
	for _, tt := range tests {
		if want[tt.conn.DestID] == nil {
			want[tt.conn.DestID] = &counts{}
		}
		if tt.gone {
			continue
		}
		st := tt.conn.State
		if tt.state != bpf.XvsTcpStateSTATE_NONE {
			st = uint8(tt.state)
		}
		if Active(st) {
			want[tt.conn.DestID].active++
		} else {
			want[tt.conn.DestID].inactive++
		}
	}

	res, err := m.SweepConns(now, testSweepTimeouts(), 0)
	if err != nil {
		t.Fatal(err)
	}
	n := res.Removed
	gone := 0
	for _, tt := range tests {
		c := tt.conn
		p := tt.pair
		if tt.gone {
			p, gone = pairNone, gone+1
		}
		t.Run(tt.name, func(t *testing.T) { wantPair(t, m, raw, c, p) })
	}
	if n != gone {
		t.Errorf("sweep removed %d, want %d", n, gone)
	}
	if res.Left != len(tests)-gone {
		t.Errorf("sweep left %d, want %d", res.Left, len(tests)-gone)
	}
	for id, w := range want {
		wantDestConns(t, m, id, w.active, w.inactive)
	}
}

// TestSweepDuringMove: a conn half-way through its promotion (in both
// pairs) is swept: both copies go, counted out once.
func TestSweepDuringMove(t *testing.T) {
	m, raw := newTestMaps(t)
	c := halfPromoted(t, m, raw, tcpConn(10))
	res, err := m.SweepConns(c.LastSeen+time.Hour, testSweepTimeouts(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed != 1 {
		t.Errorf("removed %d, want 1", res.Removed)
	}
	wantPair(t, m, raw, c, pairNone)
	wantDestConns(t, m, c.DestID, 0, 0)
}

// TestSweepAfterClose: a sweep of closed maps is an error, not a crash.
func TestSweepAfterClose(t *testing.T) {
	m, _ := newTestMaps(t)
	if _, err := m.SweepConns(time.Hour, testSweepTimeouts(), 0); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := m.SweepConns(time.Hour, testSweepTimeouts(), 0); err == nil {
		t.Fatal("sweep after Close succeeded")
	}
}

// TestSweepCut: a run stops at its limit of removals or of conns looked
// at and says so (Cut); what it removed before it stopped is gone, and
// whatever it had not reached stays. A run that reaches the end of the
// tables is not cut, even one that looked at exactly its bound.
func TestSweepCut(t *testing.T) {
	const now = 10 * time.Hour
	const total, nKept = 23, 5
	tests := []struct {
		name      string
		limit     uint32
		maxVisits int
		cut       bool
		removed   int // -1: between 1 and maxVisits
	}{
		{name: "no bound", limit: 1024, removed: total - nKept},
		{name: "limit of removals", limit: 3, cut: true, removed: 3},
		{name: "limit above the idle conns", limit: total - nKept + 1, removed: total - nKept},
		{name: "bound of visits", limit: 1024, maxVisits: 7, cut: true, removed: -1},
		{name: "bound of visits at the end", limit: 1024, maxVisits: total, removed: total - nKept},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, raw := newTestMaps(t)
			var all []Conn
			for i := range total {
				c := tcpConn(100 + i)
				if i%2 == 0 {
					c = withState(c, bpf.XvsTcpStateSTATE_ESTABLISHED) // main pair
				}
				c.LastSeen = now - time.Hour
				if i%5 == 0 { // nKept of them
					c.LastSeen = now
				}
				if err := m.InstallConn(c); err != nil {
					t.Fatal(err)
				}
				all = append(all, c)
			}
			if _, err := m.SweepConns(0, testSweepTimeouts(), 0); err != nil { // loads it; nothing idle yet
				t.Fatal(err)
			}
			m.sweep.mu.Lock()
			res, err := m.sweep.run(now, testSweepTimeouts(), tt.limit, tt.maxVisits)
			m.sweep.mu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if res.Cut != tt.cut {
				t.Errorf("cut %v, want %v", res.Cut, tt.cut)
			}
			if tt.removed >= 0 && res.Removed != tt.removed {
				t.Errorf("removed %d, want %d", res.Removed, tt.removed)
			}
			if tt.removed < 0 && (res.Removed < 1 || res.Removed > tt.maxVisits) {
				t.Errorf("removed %d, want 1..%d", res.Removed, tt.maxVisits)
			}
			if !tt.cut && res.Left != nKept {
				t.Errorf("left %d, want %d", res.Left, nKept)
			}
			gone := 0
			for _, c := range all {
				if pairOf(t, m, raw, c) != pairNone {
					continue
				}
				if c.LastSeen == now {
					t.Errorf("fresh conn %s swept", c.Client)
				}
				gone++
			}
			if gone != res.Removed {
				t.Errorf("%d conns gone, sweep says %d", gone, res.Removed)
			}
		})
	}
}
