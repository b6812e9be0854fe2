package sched

import (
	"net/netip"
	"testing"
	"time"
)

func vipFlow(a string) Flow {
	f := flow0
	f.VIP = netip.AddrPortFrom(netip.MustParseAddr(a), 80)
	return f
}

func TestLBLC(t *testing.T) {
	tests := []struct {
		name string
		run  func(r *rig, clk *fakeClock) string
		want string
	}{
		{
			name: "cached dest sticks although wlc would move",
			run: func(r *rig, _ *fakeClock) string {
				r.add("A", 1)
				r.add("B", 1)
				s := r.pick(flow0) // wlc tie: A
				r.c["A"].set(1, 50)
				return s + " " + r.pick(flow0) + " " + r.pick(clientFlow("10.0.0.99"))
			},
			want: "A A A",
		},
		{
			name: "keyed by destination address",
			run: func(r *rig, _ *fakeClock) string {
				r.add("A", 1)
				r.add("B", 1)
				s := r.pick(vipFlow("192.0.2.1"))
				r.c["A"].set(1, 0)
				return s + " " + r.pick(vipFlow("192.0.2.2")) + " " + r.pick(vipFlow("192.0.2.1"))
			},
			want: "A B A",
		},
		{
			name: "lblc overload rule: active > weight while another is under half",
			run: func(r *rig, _ *fakeClock) string {
				r.add("A", 1)
				r.add("B", 4)
				s := r.pick(flow0) // A
				r.c["A"].set(2, 0)
				r.c["B"].set(2, 0)       // B: 2*2 < 4 false: A stays
				s += " " + r.pick(flow0) // A
				r.c["B"].set(1, 0)       // 1*2 < 4: A overloaded -> wlc -> B
				return s + " " + r.pick(flow0) + " " + r.pick(flow0)
			},
			want: "A A B B",
		},
		{
			name: "threshold OVERLOAD not checked for the cached dest",
			run: func(r *rig, _ *fakeClock) string {
				r.addThr("A", 1, 3, 0)
				r.add("B", 1)
				s := r.pick(flow0)
				r.c["A"].set(0, 10)
				return s + " " + r.pick(flow0)
			},
			want: "A A",
		},
		{
			name: "quiesced cached dest is replaced",
			run: func(r *rig, _ *fakeClock) string {
				r.add("A", 1)
				r.add("B", 1)
				s := r.pick(flow0)
				r.edit("A", 0, 0, 0)
				s += " " + r.pick(flow0)
				r.edit("A", 1, 0, 0)
				return s + " " + r.pick(flow0)
			},
			want: "A B B",
		},
		{
			name: "deleted cached dest is replaced",
			run: func(r *rig, _ *fakeClock) string {
				r.add("A", 1)
				r.add("B", 1)
				s := r.pick(flow0)
				r.del("A")
				return s + " " + r.pick(flow0)
			},
			want: "A B",
		},
		{
			name: "entry survives a day minus a minute",
			run: func(r *rig, clk *fakeClock) string {
				r.add("A", 1)
				r.add("B", 1)
				s := r.pick(flow0)
				r.c["A"].set(1, 0)
				for range 24*60 - 1 {
					r.p.Expire(clk.Advance(time.Minute))
				}
				return s + " " + r.pick(flow0)
			},
			want: "A A",
		},
		{
			name: "entry unused for lblc_expiration goes at the next full check",
			run: func(r *rig, clk *fakeClock) string {
				r.add("A", 1)
				r.add("B", 1)
				s := r.pick(flow0)
				r.c["A"].set(1, 0)
				for range 24*60 + 30 {
					r.p.Expire(clk.Advance(time.Minute))
				}
				return s + " " + r.pick(flow0)
			},
			want: "A B",
		},
		{
			name: "use refreshes the entry",
			run: func(r *rig, clk *fakeClock) string {
				r.add("A", 1)
				r.add("B", 1)
				s := r.pick(flow0)
				r.c["A"].set(1, 0)
				for i := range 24*60 + 30 {
					if i == 600 {
						r.pick(flow0)
					}
					r.p.Expire(clk.Advance(time.Minute))
				}
				return s + " " + r.pick(flow0)
			},
			want: "A A",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			r := newRig(t, Config{Scheduler: "lblc", Now: clk.Now})
			if got := tt.run(r, clk); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLBLCTrimOverMax(t *testing.T) {
	clk := newClock()
	r := newRig(t, Config{Scheduler: "lblc", Now: clk.Now})
	r.add("A", 1)
	const extra = 300
	for i := range cacheMaxEntries + extra {
		r.pick(vipFlow(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String()))
	}
	s := r.p.s.(*localityLC)
	if len(s.tab) != cacheMaxEntries+extra {
		t.Fatalf("%d entries, want %d", len(s.tab), cacheMaxEntries+extra)
	}
	r.p.Expire(clk.Advance(5 * time.Minute)) // nothing unused for 6 min yet
	if len(s.tab) != cacheMaxEntries+extra {
		t.Fatalf("after 5 min: %d entries, want %d", len(s.tab), cacheMaxEntries+extra)
	}
	r.p.Expire(clk.Advance(2 * time.Minute))
	// goal = extra*4/3 entries unused for 6 minutes.
	if want := cacheMaxEntries + extra - extra*4/3; len(s.tab) != want {
		t.Fatalf("after 7 min: %d entries, want %d", len(s.tab), want)
	}
}

func TestLBLCR(t *testing.T) {
	clk := newClock()
	r := newRig(t, Config{Scheduler: "lblcr", Now: clk.Now, CacheExpire: time.Hour})
	r.add("A", 1)
	r.add("B", 1)
	r.add("C", 1)
	set := func() string {
		en := r.p.s.(*localityLCR).tab[flow0.VIP.Addr()]
		if en == nil {
			return "<nil>"
		}
		s := ""
		for _, d := range en.set {
			s += r.name[d.Addr]
		}
		return s
	}
	step := func(name, want, wantSet string) {
		t.Helper()
		if got := r.pick(flow0); got != want || set() != wantSet {
			t.Fatalf("%s: picked %s with set %s, want %s with set %s", name, got, set(), want, wantSet)
		}
	}
	step("miss: wlc pick", "A", "A")
	r.c["A"].set(1, 0)
	step("hit: A not overloaded by the lblc rule", "A", "A")
	r.c["A"].set(2, 0)
	step("A overloaded: wlc over the service joins the set", "B", "AB")
	r.c["B"].set(1, 9)
	step("hit: weighted least member of the set", "B", "AB")
	r.c["B"].set(3, 0)
	step("both loaded: B overloaded, C joins", "C", "ABC")
	r.c["C"].set(1, 0)
	step("set min: C", "C", "ABC")
	clk.Advance(30 * time.Minute)
	step("set changed recently: kept", "C", "ABC")
	clk.Advance(31 * time.Minute)
	step("unchanged for lblcr_expiration: most loaded (B) shed", "C", "AC")
	step("one shed per lastmod period", "C", "AC")
	r.c["B"].set(0, 0) // now A (2 > 1) is overloaded by the lblc rule
	r.del("C")
	step("deleted member leaves the set; wlc adds B", "B", "AB")
	r.edit("A", 0, 0, 0)
	r.edit("B", 0, 0, 0)
	step("no usable dest", "-", "AB")
}

func TestTwos(t *testing.T) {
	tests := []struct {
		name   string
		draws  []uint32
		loadA  int64
		loadB  int64
		want   string
		dests2 bool
	}{
		// A w1, B w3: draws are taken mod 5; r <= 1 -> A, 2..4 -> B.
		{name: "same choice", draws: []uint32{0, 1}, want: "A"},
		{name: "choice2 lighter", draws: []uint32{0, 4}, loadA: 1, want: "B"},
		{name: "choice1 lighter", draws: []uint32{0, 4}, loadB: 1, want: "A"},
		{name: "tie keeps choice1", draws: []uint32{4, 0}, want: "B"},
		{name: "ratio: A 1/1 vs B 3/3 tie keeps choice1", draws: []uint32{5, 7}, loadA: 1, loadB: 3, want: "A"},
		{name: "ratio: B 2/3 lighter than A 1/1", draws: []uint32{5, 7}, loadA: 1, loadB: 2, want: "B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := 0
			rnd := func() uint32 { v := tt.draws[i%len(tt.draws)]; i++; return v }
			r := newRig(t, Config{Scheduler: "twos", Rand: rnd})
			r.add("A", 1)
			r.add("Q", 0) // never drawn
			r.add("B", 3)
			r.c["A"].set(tt.loadA, 0)
			r.c["B"].set(tt.loadB, 0)
			if got := r.pick(flow0); got != tt.want {
				t.Errorf("picked %s, want %s", got, tt.want)
			}
			if i != 2 {
				t.Errorf("%d random draws, want 2", i)
			}
		})
	}
}

func TestTwosDistribution(t *testing.T) {
	var seed uint64 = 0x9e3779b97f4a7c15
	rnd := func() uint32 { // xorshift64*: deterministic
		seed ^= seed >> 12
		seed ^= seed << 25
		seed ^= seed >> 27
		return uint32((seed * 2685821657736338717) >> 32)
	}
	r := newRig(t, Config{Scheduler: "twos", Rand: rnd})
	r.add("A", 1)
	r.add("B", 3)
	r.addThr("C", 5, 1, 0)
	r.c["C"].set(0, 1) // overloaded: never chosen
	const n = 20000
	count := map[string]int{}
	for range n {
		count[r.pick(flow0)]++
	}
	// No load: choice1 always wins; P(A) = 2/5 (r1 in {0, 1} of 0..4).
	if a := float64(count["A"]) / n; a < 0.37 || a > 0.43 || count["C"] != 0 || count["-"] != 0 {
		t.Errorf("distribution %v, want A about 40%%, B the rest", count)
	}
	r.edit("A", 0, 0, 0)
	r.edit("B", 0, 0, 0)
	if got := r.pick(flow0); got != "-" {
		t.Errorf("no usable dest: picked %s", got)
	}
}

func TestLBLCRExpiry(t *testing.T) {
	clk := newClock()
	r := newRig(t, Config{Scheduler: "lblcr", Now: clk.Now, CacheExpire: 2 * time.Hour})
	r.add("A", 1)
	r.add("B", 1)
	tab := r.p.s.(*localityLCR).tab
	r.pick(vipFlow("192.0.2.1"))
	r.pick(vipFlow("192.0.2.2"))
	for i := range 3 * 60 {
		if i == 100 {
			r.pick(vipFlow("192.0.2.2")) // keeps .2 in use
		}
		r.p.Expire(clk.Advance(time.Minute))
	}
	// Full checks ran at 30-minute steps: .1 unused for 2 h is gone.
	if _, ok := tab[netip.MustParseAddr("192.0.2.1")]; ok {
		t.Error("entry unused for lblcr_expiration kept")
	}
	if _, ok := tab[netip.MustParseAddr("192.0.2.2")]; !ok {
		t.Error("entry used 80 minutes ago dropped")
	}
}
