package ctl

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"testing"
	"time"

	"xvs/bpf"
	"xvs/ctl/ctltest"
	"xvs/ipvsadm"
	"xvs/maps"
)

// TestExpireInChunks: expired conns are handed to the datapath in chunks
// during the walk; every one goes whatever the chunk boundaries, the
// conns still within their timeout stay, and the count is exact.
func TestExpireInChunks(t *testing.T) {
	tests := []struct {
		name           string
		expired, fresh int
	}{
		{name: "none expired", expired: 0, fresh: 10},
		{name: "less than a chunk", expired: 5, fresh: 3},
		{name: "exactly one chunk", expired: expireChunk, fresh: 1},
		{name: "chunks and a partial one", expired: 2*expireChunk + 7, fresh: 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dp := ctltest.New()
			now := time.Hour
			tb := NewTable(dp, TableOptions{Mono: func() time.Duration { return now }})
			must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m"), nil))
			vip := netip.MustParseAddrPort("10.0.0.1:80")
			for i := range tt.expired + tt.fresh {
				client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)}), 1000)
				seen := now - time.Hour // idle far beyond every timeout
				if i >= tt.expired {
					seen = now
				}
				must(t, dp.InstallConn(maps.Conn{Proto: 6, Client: client, VIP: vip, Dest: netip.MustParseAddrPort("172.16.0.2:80"), LastSeen: seen}))
			}
			n, err := tb.Expire(context.Background())
			if err != nil || n != tt.expired {
				t.Fatalf("Expire = %d, %v; want %d, nil", n, err, tt.expired)
			}
			if len(dp.Conns) != tt.fresh {
				t.Errorf("%d conns left, want %d", len(dp.Conns), tt.fresh)
			}
			for _, c := range dp.Conns {
				if c.LastSeen != now {
					t.Errorf("expired conn %s left", c.Client)
				}
			}
			if a, in := dp.DestConns(0); a != 0 || in != int64(tt.fresh) {
				t.Errorf("dest counters %d/%d, want 0/%d", a, in, tt.fresh)
			}
		})
	}
}

// TestSweepTimeouts: the timeouts handed to the kernel's sweep, applied
// the way xvs_sweep applies them (CONN_F_NEW first, then UDP, then the
// TCP state, out of range as NONE), give every conn connTimeout's.
func TestSweepTimeouts(t *testing.T) {
	for _, to := range []ipvsadm.Timeouts{DefaultTimeouts, {TCP: 5, TCPFin: 7, UDP: 11}} {
		st := sweepTimeouts(to)
		for _, proto := range []uint8{protoTCP, protoUDP} {
			for _, flags := range []uint8{0, uint8(bpf.XvsConnFlagsCONN_F_NEW)} {
				for state := range 256 {
					c := maps.Conn{Proto: proto, State: uint8(state), Flags: flags}
					var got time.Duration
					switch {
					case flags&uint8(bpf.XvsConnFlagsCONN_F_NEW) != 0:
						got = st.New
					case proto == protoUDP:
						got = st.UDP
					case state < len(st.TCP):
						got = st.TCP[state]
					default:
						got = st.TCP[bpf.XvsTcpStateSTATE_NONE]
					}
					if want := connTimeout(c, to); got != want {
						t.Errorf("%+v, proto %d state %d flags %d: sweep timeout %v, want %v", to, proto, state, flags, got, want)
					}
				}
			}
		}
	}
}

// sweepingDP is the fake datapath with an in-kernel sweep that records
// its calls, removes nothing, and reports removed and left.
type sweepingDP struct {
	*ctltest.Datapath
	calls         int
	now           time.Duration
	to            maps.SweepTimeouts
	maxVisits     int
	removed, left int
	cut           bool
	err           error
}

func (d *sweepingDP) SweepConns(now time.Duration, to maps.SweepTimeouts, maxVisits int) (maps.SweepResult, error) {
	d.calls++
	d.now, d.to, d.maxVisits = now, to, maxVisits
	return maps.SweepResult{Removed: d.removed, Left: d.left, Cut: d.cut}, d.err
}

// TestExpireSweeps: the first expiry walks the tables (and counts what it
// leaves); the later ones leave the walk to the kernel's sweep while what
// the last one left is within SweepMaxConns. The walk still runs for
// persistent services (their templates are held by the conns a sweep
// keeps), above the limit, and when the kernel has no sweep.
func TestExpireSweeps(t *testing.T) {
	tests := []struct {
		name       string
		persistent bool
		fresh      int // conns within their timeout
		max        int // SweepMaxConns
		left       int // what the fake sweep reports left
		err        error
		wantSweeps int // of the three expiries
	}{
		{name: "walk, then sweeps", fresh: 2, left: 2, wantSweeps: 2},
		{name: "largest limit: sweeps, bounded", fresh: 2, max: math.MaxInt, left: 2, wantSweeps: 2},
		{name: "walk, then a sweep that finds the tables grown", fresh: 2, max: 3, left: 4, wantSweeps: 1},
		{name: "above the limit: walks", fresh: 4, max: 3, wantSweeps: 0},
		{name: "persistent service: walks", persistent: true, fresh: 1, wantSweeps: 0},
		{name: "no sweep in the kernel: walks", err: fmt.Errorf("%w: old kernel", maps.ErrNoSweep), wantSweeps: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dp := &sweepingDP{Datapath: ctltest.New(), removed: 42, left: tt.left, err: tt.err}
			now := time.Hour
			tb := NewTable(dp, TableOptions{Mono: func() time.Duration { return now }, SweepMaxConns: tt.max})
			svc := "-A -t 10.0.0.1:80 -s rr"
			if tt.persistent {
				svc += " -p 60"
			}
			must(t, tb.Apply(parseAll(t, svc, "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m", "--set 5 6 7"), nil))
			install := func(port uint16, seen time.Duration) {
				must(t, dp.InstallConn(maps.Conn{Proto: 6, Client: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port),
					VIP: netip.MustParseAddrPort("10.0.0.1:80"), Dest: netip.MustParseAddrPort("172.16.0.2:80"), LastSeen: seen}))
			}
			for i := range tt.fresh {
				install(uint16(2000+i), now)
			}
			walks := 0
			for i := range 3 {
				install(1000, now-time.Hour) // idle
				calls := dp.calls
				n, err := tb.Expire(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if dp.calls > calls && !errors.Is(tt.err, maps.ErrNoSweep) {
					if n != 42 || dp.now != now || dp.to != sweepTimeouts(tb.Timeouts()) || dp.maxVisits != sweepVisits(tb.sweepMax) {
						t.Errorf("expiry %d: sweep at %v with %+v, bound %d, Expire = %d; want at %v with the table's timeouts, bound %d, 42",
							i, dp.now, dp.to, dp.maxVisits, n, now, sweepVisits(tb.sweepMax))
					}
					// What the kernel's sweep would have removed.
					if ok, err := dp.DeleteConnIf(maps.Conn{Proto: 6, Client: netip.MustParseAddrPort("192.0.2.1:1000"), VIP: netip.MustParseAddrPort("10.0.0.1:80")}, now-time.Hour); !ok || err != nil {
						t.Fatalf("expiry %d: idle conn not there to sweep: %v", i, err)
					}
					continue
				}
				walks++
				if n != 1 || len(dp.Conns) != tt.fresh {
					t.Errorf("expiry %d: Expire = %d with %d conns left, want the walk to remove the idle conn", i, n, len(dp.Conns))
				}
			}
			sweeps := 3 - walks
			if errors.Is(tt.err, maps.ErrNoSweep) {
				sweeps = dp.calls
			}
			if sweeps != tt.wantSweeps {
				t.Errorf("%d sweeps (%d walks), want %d", sweeps, walks, tt.wantSweeps)
			}
		})
	}
}

// TestExpireCutSweepWalks: a sweep run that stopped at its bounds (Cut)
// is finished by the walk, in the same expiry: both removals count, and
// the population is the walk's.
func TestExpireCutSweepWalks(t *testing.T) {
	dp := &sweepingDP{Datapath: ctltest.New(), removed: 3, cut: true}
	now := time.Hour
	tb := NewTable(dp, TableOptions{Mono: func() time.Duration { return now }})
	must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m"), nil))
	install := func(port uint16, seen time.Duration) maps.Conn {
		c := maps.Conn{Proto: 6, Client: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port),
			VIP: netip.MustParseAddrPort("10.0.0.1:80"), Dest: netip.MustParseAddrPort("172.16.0.2:80"), LastSeen: seen}
		must(t, dp.InstallConn(c))
		return c
	}
	install(2000, now)
	if _, err := tb.Expire(context.Background()); err != nil { // the first walks
		t.Fatal(err)
	}
	install(1000, now-time.Hour)
	n, err := tb.Expire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if dp.calls != 1 {
		t.Fatalf("%d sweeps, want 1", dp.calls)
	}
	if n != 3+1 || len(dp.Conns) != 1 {
		t.Errorf("Expire = %d with %d conns left; want the sweep's 3 and the walk's 1, 1 left", n, len(dp.Conns))
	}
	if tb.population != 1 {
		t.Errorf("population %d, want the walk's 1", tb.population)
	}
}

// TestSweepVisits: twice the limit, saturated rather than overflowing to
// a negative bound (which the sweep takes for none).
func TestSweepVisits(t *testing.T) {
	for _, tt := range []struct{ max, want int }{
		{16384, 32768},
		{math.MaxInt / 2, math.MaxInt / 2 * 2},
		{math.MaxInt/2 + 1, math.MaxInt},
		{math.MaxInt, math.MaxInt},
	} {
		if got := sweepVisits(tt.max); got != tt.want {
			t.Errorf("sweepVisits(%d) = %d, want %d", tt.max, got, tt.want)
		}
	}
}
