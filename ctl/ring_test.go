package ctl

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"xvs/ctl/ctltest"
	"xvs/maps"
)

// ringOfTable returns service vip's ring as "addr:port" picks, or "-" if
// it has none.
func ringOfTable(t *testing.T, tb *Table, dp *ctltest.Datapath, proto uint8, vip string) string {
	t.Helper()
	tb.mu.RLock()
	defer tb.mu.RUnlock()
	s := tb.svcs[svcKey{proto: proto, addr: netip.MustParseAddrPort(vip)}]
	if s == nil {
		t.Fatalf("no service %s", vip)
	}
	r := dp.Rings[s.id]
	if r == nil {
		if s.ring {
			t.Errorf("service %s marked as having a ring, but has none", vip)
		}
		return "-"
	}
	if !s.ring {
		t.Errorf("service %s has a ring, but is not marked as having one", vip)
	}
	out := make([]string, len(r.Ents))
	for i, e := range r.Ents {
		out[i] = pickAddr(s, e).String()
	}
	return strings.Join(out, " ")
}

// TestRings: which services the datapath schedules, and with what ring.
func TestRings(t *testing.T) {
	const a, b, c = "172.16.0.2:80", "172.16.0.3:80", "172.16.0.4:8080"
	tests := []struct {
		name  string
		opt   TableOptions
		lines []string
		want  string
	}{
		{"rr", TableOptions{}, []string{"-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2 -m", "-a -t 10.0.0.1:80 -r 172.16.0.3:80 -m", "-a -t 10.0.0.1:80 -r 172.16.0.4:8080 -m"},
			strings.Join([]string{a, b, c}, " ")},
		{"wrr", TableOptions{}, []string{"-A -t 10.0.0.1:80 -s wrr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m -w 2", "-a -t 10.0.0.1:80 -r 172.16.0.3:80 -m -w 1"},
			strings.Join([]string{a, b, a}, " ")},
		{"quiesced dest left out", TableOptions{}, []string{"-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m", "-a -t 10.0.0.1:80 -r 172.16.0.3:80 -m -w 0"},
			a},
		{"lc has none", TableOptions{}, []string{"-A -t 10.0.0.1:80 -s lc", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m"}, "-"},
		{"persistence has none", TableOptions{}, []string{"-A -t 10.0.0.1:80 -s rr -p 60", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m"}, "-"},
		{"threshold has none", TableOptions{}, []string{"-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m -x 100"}, "-"},
		{"no usable dest has none", TableOptions{}, []string{"-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m -w 0"}, "-"},
		{"edited to lc loses it", TableOptions{}, []string{"-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m", "-E -t 10.0.0.1:80 -s lc"}, "-"},
		{"rings off", TableOptions{NoRings: true}, []string{"-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m"}, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dp := ctltest.New()
			tb := NewTable(dp, tt.opt)
			for _, l := range tt.lines {
				must(t, tb.Apply(parseAll(t, l), nil))
			}
			if got := ringOfTable(t, tb, dp, protoTCP, "10.0.0.1:80"); got != tt.want {
				t.Errorf("ring %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRingGoesWithItsService: deleting a service (or flushing) deletes its
// ring, so that a reused id does not inherit it.
func TestRingGoesWithItsService(t *testing.T) {
	for _, del := range []string{"-D -t 10.0.0.1:80", "-C"} {
		t.Run(del, func(t *testing.T) {
			dp := ctltest.New()
			tb := NewTable(dp, TableOptions{})
			must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m"), nil))
			if len(dp.Rings) != 1 {
				t.Fatalf("%d rings, want 1", len(dp.Rings))
			}
			must(t, tb.Apply(parseAll(t, del), nil))
			if len(dp.Rings) != 0 {
				t.Errorf("%d rings after %s, want 0", len(dp.Rings), del)
			}
		})
	}
}

// TestRingCatchUp: the picks the datapath took from a ring count as the
// scheduler's: after a change, the new ring goes on where the daemon's
// own scheduling (no rings) would, which is IPVS's sequence.
func TestRingCatchUp(t *testing.T) {
	setup := []string{"-A -t 10.0.0.1:80 -s %s", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m -w 3",
		"-a -t 10.0.0.1:80 -r 172.16.0.3:80 -m -w 2", "-a -t 10.0.0.1:80 -r 172.16.0.4:80 -m -w 1"}
	change := []string{"-e -t 10.0.0.1:80 -r 172.16.0.3:80 -m -w 1", "-a -t 10.0.0.1:80 -r 172.16.0.5:80 -m -w 2"}
	vip := netip.MustParseAddrPort("10.0.0.1:80")
	for _, sched := range []string{"rr", "wrr"} {
		for _, taken := range []int{0, 1, 2, 5, 6, 7, 100} {
			t.Run(fmt.Sprintf("%s/%d", sched, taken), func(t *testing.T) {
				// The reference: the daemon schedules every first packet.
				refDP := ctltest.New()
				ref := NewTable(refDP, TableOptions{NoRings: true})
				dp := ctltest.New()
				tb := NewTable(dp, TableOptions{})
				for _, l := range setup {
					l = strings.Replace(l, "%s", sched, 1)
					must(t, ref.Apply(parseAll(t, l), nil))
					must(t, tb.Apply(parseAll(t, l), nil))
				}
				svc := tb.svcs[svcKey{proto: protoTCP, addr: vip}]
				id := svc.id
				var st PuntStats
				for i := range taken {
					client := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(1000+i))
					if v := ref.firstPacket(syn(client, vip), &st); v != verdictForward {
						t.Fatalf("reference verdict %d", v)
					}
					if _, ok := dp.TakeRing(id); !ok {
						t.Fatal("no ring")
					}
				}
				for _, l := range change {
					must(t, ref.Apply(parseAll(t, l), nil))
					must(t, tb.Apply(parseAll(t, l), nil))
				}
				var want, got []string
				for i := range 12 {
					client := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), uint16(1000+i))
					if v := ref.firstPacket(syn(client, vip), &st); v != verdictForward {
						t.Fatalf("reference verdict %d", v)
					}
					c, err := refDP.LookupConn(protoTCP, client, vip)
					must(t, err)
					want = append(want, c.Dest.String())
					e, ok := dp.TakeRing(id)
					if !ok {
						t.Fatal("no ring after the change")
					}
					got = append(got, pickAddr(svc, e).String())
				}
				if strings.Join(got, " ") != strings.Join(want, " ") {
					t.Errorf("ring picks after the change\n got %v\nwant %v", got, want)
				}
			})
		}
	}
}

// pickAddr names a ring pick of service s by its real server's address
// and the pick's port (invalid for a dest id s does not have).
func pickAddr(s *service, e maps.RingEnt) netip.AddrPort {
	for _, d := range s.dests {
		if d.id == e.DestID {
			return netip.AddrPortFrom(d.cfg.Addr.Addr(), e.Port)
		}
	}
	return netip.AddrPort{}
}

// TestHashRings: sh and dh services get the pick of each hash bucket, a
// bucket without a usable real server marked as such; mh gets none.
func TestHashRings(t *testing.T) {
	tests := []struct {
		name string
		sch  string
		kind maps.RingKind
		port bool
	}{
		{"sh", "-s sh", maps.RingSrcHash, false},
		{"sh-port", "-s sh -b sh-port", maps.RingSrcHash, true},
		{"sh-fallback", "-s sh -b sh-fallback", maps.RingSrcHash, false},
		{"dh", "-s dh", maps.RingDstHash, false},
		{"mh", "-s mh", maps.RingMhHash, false},
		{"mh-port", "-s mh -b mh-port", maps.RingMhHash, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dp := ctltest.New()
			tb := NewTable(dp, TableOptions{})
			must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 "+tt.sch, "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m",
				"-a -t 10.0.0.1:80 -r 172.16.0.3:80 -m", "-a -t 10.0.0.1:80 -r 172.16.0.4:8080 -m -w 2",
				"-e -t 10.0.0.1:80 -r 172.16.0.3:80 -m -w 0"), nil))
			s := tb.svcs[svcKey{proto: protoTCP, addr: netip.MustParseAddrPort("10.0.0.1:80")}]
			r := dp.Rings[s.id]
			if r == nil || !s.ring {
				t.Fatal("no ring")
			}
			tab, ok := s.pool.HashTable()
			if !ok {
				t.Fatal("pool has no hash table")
			}
			if r.Kind != tt.kind || r.Port != tt.port || len(r.Ents) != len(tab.Dests) {
				t.Fatalf("ring kind %d port %v with %d entries", r.Kind, r.Port, len(r.Ents))
			}
			none := 0
			for b, d := range tab.Dests {
				want := maps.RingNone
				if d != nil {
					want = maps.RingEnt{DestID: s.byAddr[d.Addr].id, Port: d.Addr.Port()}
				} else {
					none++
				}
				if r.Ents[b] != want {
					t.Fatalf("bucket %d: %+v, want %+v", b, r.Ents[b], want)
				}
			}
			if fallback := strings.Contains(tt.sch, "fallback"); fallback != (none == 0) {
				t.Errorf("%d buckets without a real server", none)
			}
		})
	}
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{})
	must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s mh -b mh-fallback", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m",
		"-a -t 10.0.0.1:80 -r 172.16.0.3:80 -m", "-e -t 10.0.0.1:80 -r 172.16.0.3:80 -m -w 0"), nil))
	if len(dp.Rings) != 0 {
		t.Errorf("mh-fallback with a quiesced real server: %d rings, want none", len(dp.Rings))
	}
}

// TestRingOutDuringCommands: a ring service's ring leaves the datapath
// before the commands change its real servers and comes back after, so
// that no stale ring names a dest id the commands free.
func TestRingOutDuringCommands(t *testing.T) {
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{})
	must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m", "-a -t 10.0.0.1:80 -r 172.16.0.3:80 -m"), nil))
	s := tb.svcs[svcKey{proto: protoTCP, addr: netip.MustParseAddrPort("10.0.0.1:80")}]
	gone := s.byAddr[netip.MustParseAddrPort("172.16.0.2:80")].id
	dp.Ops = nil
	must(t, tb.Apply(parseAll(t, "-d -t 10.0.0.1:80 -r 172.16.0.2:80"), nil))
	want := []string{fmt.Sprintf("delete-ring %d", s.id), fmt.Sprintf("set-dest %d false", gone), fmt.Sprintf("put-ring %d", s.id)}
	if strings.Join(dp.Ops, ", ") != strings.Join(want, ", ") {
		t.Errorf("ops %q, want %q", dp.Ops, want)
	}
	if got := ringOfTable(t, tb, dp, protoTCP, "10.0.0.1:80"); got != "172.16.0.3:80" {
		t.Errorf("ring after the delete %q", got)
	}
}
