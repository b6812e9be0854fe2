package sched

import (
	"math/big"
	"testing"
)

// dspec is one dest of a table case: weight, counters and an optional
// upper threshold.
type dspec struct {
	name             string
	w                int32
	active, inactive int64
	u                uint32
}

func rigWith(t *testing.T, sched string, ds []dspec) *rig {
	t.Helper()
	r := newRig(t, Config{Scheduler: sched})
	for _, d := range ds {
		r.addThr(d.name, d.w, d.u, 0)
		r.c[d.name].set(d.active, d.inactive)
	}
	return r
}

// TestLeastFamily checks single picks of lc, wlc, sed, nq, fo and ovf
// against the kernel formulas.
func TestLeastFamily(t *testing.T) {
	tests := []struct {
		name  string
		sched string
		dests []dspec
		want  string
	}{
		// lc: overhead = active*256 + inactive, weight only 0 vs > 0.
		{name: "lc smallest overhead", sched: "lc", dests: []dspec{{"A", 1, 2, 0, 0}, {"B", 1, 1, 300, 0}, {"C", 1, 1, 255, 0}}, want: "C"},
		{name: "lc inactive counts 1/256", sched: "lc", dests: []dspec{{"A", 1, 1, 0, 0}, {"B", 1, 0, 256, 0}}, want: "A"},
		{name: "lc tie to the first", sched: "lc", dests: []dspec{{"A", 1, 1, 0, 0}, {"B", 9, 0, 256, 0}, {"C", 1, 1, 0, 0}}, want: "A"},
		{name: "lc ignores weight size", sched: "lc", dests: []dspec{{"A", 100, 2, 0, 0}, {"B", 1, 1, 0, 0}}, want: "B"},
		{name: "lc skips weight 0", sched: "lc", dests: []dspec{{"A", 0, 0, 0, 0}, {"B", 1, 5, 0, 0}}, want: "B"},
		{name: "lc skips overloaded", sched: "lc", dests: []dspec{{"A", 1, 0, 3, 3}, {"B", 1, 5, 0, 0}}, want: "B"},
		{name: "lc none usable", sched: "lc", dests: []dspec{{"A", 0, 0, 0, 0}}, want: "-"},

		// wlc: overhead/weight, first usable then strictly lighter.
		{name: "wlc ratio", sched: "wlc", dests: []dspec{{"A", 1, 1, 0, 0}, {"B", 3, 2, 0, 0}}, want: "B"}, // 256/1 > 512/3
		{name: "wlc tie to the first", sched: "wlc", dests: []dspec{{"A", 1, 1, 0, 0}, {"B", 2, 2, 0, 0}}, want: "A"},
		{name: "wlc weight 0 never wins", sched: "wlc", dests: []dspec{{"A", 1, 9, 0, 0}, {"B", 0, 0, 0, 0}}, want: "A"},
		{name: "wlc first usable starts even if loaded", sched: "wlc", dests: []dspec{{"A", 0, 0, 0, 0}, {"B", 1, 3, 0, 0}, {"C", 1, 3, 0, 0}}, want: "B"},
		{name: "wlc skips overloaded", sched: "wlc", dests: []dspec{{"A", 5, 0, 0, 0}, {"B", 5, 0, 0, 0}}, want: "A"},
		{name: "wlc skips overloaded later", sched: "wlc", dests: []dspec{{"A", 1, 4, 0, 0}, {"B", 5, 0, 1, 1}}, want: "A"},
		{name: "wlc inactive matters", sched: "wlc", dests: []dspec{{"A", 1, 1, 10, 0}, {"B", 1, 1, 9, 0}}, want: "B"},

		// sed: (active+1)/weight, inactive ignored.
		{name: "sed idle heavy beats idle light", sched: "sed", dests: []dspec{{"A", 1, 0, 0, 0}, {"B", 3, 0, 0, 0}}, want: "B"},
		{name: "sed tie to the first", sched: "sed", dests: []dspec{{"A", 1, 0, 0, 0}, {"B", 3, 2, 0, 0}}, want: "A"}, // 1/1 = 3/3
		{name: "sed ratio", sched: "sed", dests: []dspec{{"A", 1, 0, 0, 0}, {"B", 3, 1, 0, 0}}, want: "B"},            // 2/3 < 1
		{name: "sed ignores inactive", sched: "sed", dests: []dspec{{"A", 1, 1, 0, 0}, {"B", 1, 0, 1000, 0}}, want: "B"},
		{name: "wlc counts that inactive", sched: "wlc", dests: []dspec{{"A", 1, 1, 0, 0}, {"B", 1, 0, 1000, 0}}, want: "A"},

		// nq: first idle usable wins at once, else sed.
		{name: "nq first idle even if light", sched: "nq", dests: []dspec{{"A", 10, 1, 0, 0}, {"B", 1, 0, 50, 0}, {"C", 10, 0, 0, 0}}, want: "B"},
		{name: "nq idle but quiesced skipped", sched: "nq", dests: []dspec{{"A", 0, 0, 0, 0}, {"B", 2, 1, 0, 0}, {"C", 1, 1, 0, 0}}, want: "B"},
		{name: "nq no idle: sed rule", sched: "nq", dests: []dspec{{"A", 1, 1, 0, 0}, {"B", 4, 3, 0, 0}}, want: "B"},      // 2/1 > 4/4
		{name: "nq no idle: sed tie first", sched: "nq", dests: []dspec{{"A", 2, 1, 0, 0}, {"B", 4, 3, 0, 0}}, want: "A"}, // 2/2 = 4/4
		{name: "nq idle overloaded skipped", sched: "nq", dests: []dspec{{"A", 1, 0, 2, 2}, {"B", 1, 4, 0, 0}}, want: "B"},

		// fo: highest weight, ties first.
		{name: "fo highest weight", sched: "fo", dests: []dspec{{"A", 1, 0, 0, 0}, {"B", 5, 100, 0, 0}, {"C", 3, 0, 0, 0}}, want: "B"},
		{name: "fo tie first", sched: "fo", dests: []dspec{{"A", 5, 0, 0, 0}, {"B", 5, 0, 0, 0}}, want: "A"},
		{name: "fo skips overloaded", sched: "fo", dests: []dspec{{"A", 5, 0, 4, 4}, {"B", 2, 0, 0, 0}}, want: "B"},
		{name: "fo none", sched: "fo", dests: []dspec{{"A", 0, 0, 0, 0}}, want: "-"},

		// ovf: highest weight with active <= weight.
		{name: "ovf highest weight under its weight", sched: "ovf", dests: []dspec{{"A", 2, 0, 0, 0}, {"B", 3, 3, 0, 0}}, want: "B"},
		{name: "ovf overflows past weight", sched: "ovf", dests: []dspec{{"A", 2, 0, 0, 0}, {"B", 3, 4, 0, 0}}, want: "A"},
		{name: "ovf inactive never overflows", sched: "ovf", dests: []dspec{{"A", 2, 0, 0, 0}, {"B", 3, 0, 1000, 0}}, want: "B"},
		{name: "ovf tie first", sched: "ovf", dests: []dspec{{"A", 3, 1, 0, 0}, {"B", 3, 0, 0, 0}}, want: "A"},
		{name: "ovf all overflowing", sched: "ovf", dests: []dspec{{"A", 1, 2, 0, 0}, {"B", 1, 2, 0, 0}}, want: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rigWith(t, tt.sched, tt.dests)
			if got := r.pick(flow0); got != tt.want {
				t.Errorf("%s picked %s, want %s", tt.sched, got, tt.want)
			}
		})
	}
}

// TestLeastSequences replays connection sequences where every pick stays
// active, as in reference 4.4.
func TestLeastSequences(t *testing.T) {
	tests := []struct {
		name  string
		sched string
		dests []dspec
		n     int
		want  string
	}{
		// Kernel list B,A (A w1, B w2 added A then B) = xvs adding B then A.
		{name: "reference 4.4 wlc example", sched: "wlc", dests: []dspec{{"B", 2, 0, 0, 0}, {"A", 1, 0, 0, 0}}, n: 8, want: "B A B B A B B A"},
		{name: "wlc xvs order A w1, B w2", sched: "wlc", dests: []dspec{{"A", 1, 0, 0, 0}, {"B", 2, 0, 0, 0}}, n: 6, want: "A B B A B B"},
		{name: "lc equal spread", sched: "lc", dests: []dspec{{"A", 1, 0, 0, 0}, {"B", 5, 0, 0, 0}}, n: 4, want: "A B A B"},
		{name: "sed fills the heavy first", sched: "sed", dests: []dspec{{"A", 1, 0, 0, 0}, {"B", 3, 0, 0, 0}}, n: 7, want: "B B A B B B A"},
		{name: "nq idle first then sed", sched: "nq", dests: []dspec{{"A", 1, 0, 0, 0}, {"B", 3, 0, 0, 0}}, n: 7, want: "A B B B B B A"},
		{name: "ovf overflow order", sched: "ovf", dests: []dspec{{"A", 1, 0, 0, 0}, {"B", 2, 0, 0, 0}}, n: 6, want: "B B B A A -"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rigWith(t, tt.sched, tt.dests)
			if got := r.picks(tt.n, flow0, true); got != tt.want {
				t.Errorf("picks %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWeightedCompareLarge checks the cross-multiplied comparisons with
// counts whose products overflow 64 bits, against math/big.
func TestWeightedCompareLarge(t *testing.T) {
	const big50 = int64(1) << 50
	cases := []struct {
		name       string
		a, b       dspec
		scheds     []string
		overheadOf func(d dspec) *big.Int
	}{
		{
			name:   "wlc active*256 near 2^58 times weight 65535",
			a:      dspec{"A", 65535, big50, 7, 0},
			b:      dspec{"B", 65534, big50 - 1<<34, 0, 0},
			scheds: []string{"wlc", "lblc", "lblcr"},
			overheadOf: func(d dspec) *big.Int {
				x := new(big.Int).Lsh(big.NewInt(d.active), 8)
				return x.Add(x, big.NewInt(d.inactive))
			},
		},
		{
			name:   "wlc reversed",
			a:      dspec{"A", 65534, big50 - 1<<34, 0, 0},
			b:      dspec{"B", 65535, big50, 7, 0},
			scheds: []string{"wlc", "lblc", "lblcr"},
			overheadOf: func(d dspec) *big.Int {
				x := new(big.Int).Lsh(big.NewInt(d.active), 8)
				return x.Add(x, big.NewInt(d.inactive))
			},
		},
		{
			name:   "sed active near 2^62",
			a:      dspec{"A", 65535, 1<<62 + 5, 0, 0},
			b:      dspec{"B", 65533, 1<<62 - 1<<47, 0, 0},
			scheds: []string{"sed", "nq"},
			overheadOf: func(d dspec) *big.Int {
				return new(big.Int).Add(big.NewInt(d.active), big.NewInt(1))
			},
		},
		{
			name:   "sed reversed",
			a:      dspec{"A", 65533, 1<<62 - 1<<47, 0, 0},
			b:      dspec{"B", 65535, 1<<62 + 5, 0, 0},
			scheds: []string{"sed", "nq"},
			overheadOf: func(d dspec) *big.Int {
				return new(big.Int).Add(big.NewInt(d.active), big.NewInt(1))
			},
		},
	}
	for _, c := range cases {
		// b wins iff oh(a)*w(b) > oh(b)*w(a)
		l := new(big.Int).Mul(c.overheadOf(c.a), big.NewInt(int64(c.b.w)))
		r := new(big.Int).Mul(c.overheadOf(c.b), big.NewInt(int64(c.a.w)))
		want := "A"
		if l.Cmp(r) > 0 {
			want = "B"
		}
		if !l.IsInt64() && !r.IsInt64() {
			// good: the case really overflows 64 bits
		} else {
			t.Fatalf("%s: products fit in 64 bits; the case tests nothing", c.name)
		}
		for _, s := range c.scheds {
			t.Run(c.name+"/"+s, func(t *testing.T) {
				r := rigWith(t, s, []dspec{c.a, c.b})
				if got := r.pick(flow0); got != want {
					t.Errorf("picked %s, want %s", got, want)
				}
			})
		}
	}
}
