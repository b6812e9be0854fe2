package ctl

import (
	"context"
	"fmt"
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
// its calls and removes nothing.
type sweepingDP struct {
	*ctltest.Datapath
	calls   int
	now     time.Duration
	to      maps.SweepTimeouts
	removed int
	err     error
}

func (d *sweepingDP) SweepConns(now time.Duration, to maps.SweepTimeouts) (int, error) {
	d.calls++
	d.now, d.to = now, to
	return d.removed, d.err
}

// TestExpireSweeps: Expire leaves the walk to the kernel's sweep when it
// can; the walk still runs for persistent services (their templates are
// held by the conns the sweep keeps) and when the kernel has no sweep.
func TestExpireSweeps(t *testing.T) {
	tests := []struct {
		name       string
		persistent bool
		err        error
		wantSweep  bool
	}{
		{name: "sweep", wantSweep: true},
		{name: "persistent service: walk", persistent: true},
		{name: "no sweep in the kernel: walk", err: fmt.Errorf("%w: old kernel", maps.ErrNoSweep)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dp := &sweepingDP{Datapath: ctltest.New(), removed: 42, err: tt.err}
			now := time.Hour
			tb := NewTable(dp, TableOptions{Mono: func() time.Duration { return now }})
			svc := "-A -t 10.0.0.1:80 -s rr"
			if tt.persistent {
				svc += " -p 60"
			}
			must(t, tb.Apply(parseAll(t, svc, "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m", "--set 5 6 7"), nil))
			idle := maps.Conn{Proto: 6, Client: netip.MustParseAddrPort("192.0.2.1:1000"), VIP: netip.MustParseAddrPort("10.0.0.1:80"),
				Dest: netip.MustParseAddrPort("172.16.0.2:80"), LastSeen: now - time.Hour}
			must(t, dp.InstallConn(idle))
			n, err := tb.Expire(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantSweep {
				if dp.calls != 1 || n != 42 || dp.now != now || dp.to != sweepTimeouts(tb.Timeouts()) {
					t.Errorf("sweep calls %d at %v with %+v, Expire = %d; want 1 at %v with the table's timeouts, 42", dp.calls, dp.now, dp.to, n, now)
				}
				if len(dp.Conns) != 1 {
					t.Errorf("%d conns left, want the sweep's to remove (none here)", len(dp.Conns))
				}
				return
			}
			if n != 1 || len(dp.Conns) != 0 {
				t.Errorf("Expire = %d with %d conns left, want the walk to remove the idle conn", n, len(dp.Conns))
			}
			if tt.persistent && dp.calls != 0 {
				t.Errorf("sweep called %d times for a persistent service", dp.calls)
			}
		})
	}
}
