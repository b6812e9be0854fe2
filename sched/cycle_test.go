package sched

import (
	"strings"
	"testing"
	"time"
)

// cycle is Cycle's result as dest names.
func (r *rig) cycle(max int) (string, bool) {
	r.t.Helper()
	c, ok := r.p.Cycle(max)
	out := make([]string, len(c))
	for i, d := range c {
		out[i] = r.name[d.Addr]
	}
	return strings.Join(out, " "), ok
}

// TestCycleIsTheNextPicks: a cycle is what Schedule would return from now
// on, twice over, from any position of the scheduler; Cycle does not move
// the pool.
func TestCycleIsTheNextPicks(t *testing.T) {
	tests := []struct {
		name    string
		sched   string
		weights map[string]int32
		order   []string
		skip    int // picks before the cycle is taken
		want    string
	}{
		{"rr", "rr", map[string]int32{"A": 1, "B": 5, "C": 1}, []string{"A", "B", "C"}, 0, "A B C"},
		{"rr mid-cycle", "rr", map[string]int32{"A": 1, "B": 1, "C": 1}, []string{"A", "B", "C"}, 2, "C A B"},
		{"rr skips quiesced", "rr", map[string]int32{"A": 1, "B": 0, "C": 1}, []string{"A", "B", "C"}, 0, "A C"},
		{"wrr", "wrr", map[string]int32{"A": 4, "B": 3, "C": 2}, []string{"A", "B", "C"}, 0, "A B C A A B A B C"},
		{"wrr mid-cycle", "wrr", map[string]int32{"A": 4, "B": 3, "C": 2}, []string{"A", "B", "C"}, 4, "A B A B C A B C A"},
		{"wrr gcd", "wrr", map[string]int32{"A": 100, "B": 50}, []string{"A", "B"}, 0, "A B A"},
		{"wrr quiesced", "wrr", map[string]int32{"A": 2, "B": 0}, []string{"A", "B"}, 1, "A"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: tt.sched})
			for _, n := range tt.order {
				r.add(n, tt.weights[n])
			}
			r.picks(tt.skip, flow0, false)
			got, ok := r.cycle(64)
			if !ok || got != tt.want {
				t.Fatalf("cycle %q (ok %v), want %q", got, ok, tt.want)
			}
			n := len(strings.Fields(got))
			if picks := r.picks(2*n, flow0, false); picks != got+" "+got {
				t.Errorf("picks after Cycle %q, want the cycle twice", picks)
			}
		})
	}
}

// TestNoCycle: schedulers whose picks depend on more than their own
// state, persistence, thresholds, no usable dest and long cycles get none.
func TestNoCycle(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		setup func(r *rig)
		max   int
	}{
		{"lc", Config{Scheduler: "lc"}, func(r *rig) { r.add("A", 1); r.add("B", 1) }, 64},
		{"sh", Config{Scheduler: "sh"}, func(r *rig) { r.add("A", 1); r.add("B", 1) }, 64},
		{"persistent rr", Config{Scheduler: "rr", Persistent: time.Minute}, func(r *rig) { r.add("A", 1); r.add("B", 1) }, 64},
		{"threshold", Config{Scheduler: "rr"}, func(r *rig) { r.add("A", 1); r.addThr("B", 1, 10, 0) }, 64},
		{"no dests", Config{Scheduler: "rr"}, func(r *rig) {}, 64},
		{"all quiesced", Config{Scheduler: "wrr"}, func(r *rig) { r.add("A", 0) }, 64},
		{"too long", Config{Scheduler: "wrr"}, func(r *rig) { r.add("A", 40); r.add("B", 39) }, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.cfg)
			tt.setup(r)
			if got, ok := r.cycle(tt.max); ok {
				t.Errorf("cycle %q, want none", got)
			}
		})
	}
}

// TestAdvance: advancing by the picks a cycle gave out leaves the pool
// where scheduling them would have, so a change afterwards meets the
// sequence IPVS would have.
func TestAdvance(t *testing.T) {
	for _, sched := range []string{"rr", "wrr"} {
		for _, taken := range []int{0, 1, 2, 3, 5, 6, 7, 12, 1000001} {
			ref := newRig(t, Config{Scheduler: sched})
			got := newRig(t, Config{Scheduler: sched})
			for _, r := range []*rig{ref, got} {
				r.add("A", 3)
				r.add("B", 2)
				r.add("C", 1)
			}
			ref.picks(taken, flow0, false)
			got.p.Advance(taken)
			for _, r := range []*rig{ref, got} {
				r.edit("B", 1, 0, 0)
				r.add("D", 2)
			}
			if a, b := ref.picks(10, flow0, false), got.picks(10, flow0, false); a != b {
				t.Errorf("%s after %d: advanced pool picks %q, scheduling one %q", sched, taken, b, a)
			}
		}
	}
}
