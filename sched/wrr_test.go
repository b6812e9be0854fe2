package sched

import (
	"strings"
	"testing"
)

func TestWeightedRoundRobin(t *testing.T) {
	tests := []struct {
		name string
		run  func(r *rig) string
		want string
	}{
		{
			// Kernel list C,B,A (added A4,B3,C2) = xvs adding C2,B3,A4.
			name: "reference 4.2 worked example: leftover cw=1 round then cycles",
			run: func(r *rig) string {
				r.add("C", 2)
				r.add("B", 3)
				r.add("A", 4)
				return r.picks(3+18, flow0, false)
			},
			want: "C B A " + rep("A B A C B A C B A", 2),
		},
		{
			name: "xvs order A4,B3,C2: cw=1 round then interleaved cycles",
			run: func(r *rig) string {
				r.add("A", 4)
				r.add("B", 3)
				r.add("C", 2)
				return r.picks(3+18, flow0, false)
			},
			want: "A B C " + rep("A A B A B C A B C", 2),
		},
		{
			name: "reference 4.2: switched to wrr with -E starts with full cycles",
			run: func(r *rig) string {
				r.add("C", 2)
				r.add("B", 3)
				r.add("A", 4)
				if err := r.p.SetConfig(Config{Scheduler: "rr"}); err != nil {
					r.t.Fatal(err)
				}
				if err := r.p.SetConfig(Config{Scheduler: "wrr"}); err != nil {
					r.t.Fatal(err)
				}
				return r.picks(18, flow0, false)
			},
			want: rep("A B A C B A C B A", 2),
		},
		{
			name: "reference 4.2: weights 4,2 with gcd 2 (kernel list B,A)",
			run: func(r *rig) string {
				r.add("B", 2)
				r.add("A", 4)
				return r.picks(2+9, flow0, false)
			},
			want: "B A " + rep("A B A", 3),
		},
		{
			name: "weight change mid-cycle resets the cursor and keeps cw",
			run: func(r *rig) string {
				r.add("A", 4)
				r.add("B", 3)
				r.add("C", 2)
				s := r.picks(5, flow0, false) // A B C A A: cw=3, cursor on A
				r.edit("C", 4, 0, 0)          // di 1, mw 4, cw stays 3
				return s + " | " + r.picks(14, flow0, false)
			},
			want: "A B C A A | A B C A B C A B C A C A B C",
		},
		{
			name: "weight 0 and overloaded dests are skipped",
			run: func(r *rig) string {
				r.add("A", 2)
				r.add("B", 0)
				r.addThr("C", 1, 1, 0)
				r.c["C"].set(0, 1)
				return r.picks(6, flow0, false)
			},
			want: "A A A A A A",
		},
		{
			name: "all overloaded gives up",
			run: func(r *rig) string {
				r.addThr("A", 3, 1, 0)
				r.addThr("B", 2, 1, 0)
				r.c["A"].set(1, 0)
				r.c["B"].set(1, 0)
				s := r.picks(2, flow0, false)
				r.c["B"].set(0, 0) // 0*4 < 1*3: cleared
				return s + " | " + r.picks(2, flow0, false)
			},
			want: "- - | B B",
		},
		{
			name: "all weights 0: no destination",
			run: func(r *rig) string {
				r.add("A", 0)
				return r.picks(2, flow0, false)
			},
			want: "- -",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: "wrr"})
			if got := tt.run(r); got != tt.want {
				t.Errorf("picks\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestWeightedRoundRobinShares checks that over whole cycles every dest gets
// exactly its weight's share, for weights with and without a common divisor.
func TestWeightedRoundRobinShares(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
	}{
		{name: "5 3 1", weights: []int32{5, 3, 1}},
		{name: "gcd 3", weights: []int32{6, 3, 9}},
		{name: "equal", weights: []int32{7, 7}},
		{name: "one heavy", weights: []int32{1, 1, 1, 20}},
		{name: "large", weights: []int32{65535, 1000, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: "wrr"})
			names := make([]string, len(tt.weights))
			g, total := int32(0), int32(0)
			for i, w := range tt.weights {
				names[i] = string(rune('A' + i))
				r.add(names[i], w)
				g = int32(gcd(int(g), int(w)))
				total += w
			}
			// -E to wrr: cw starts at mw, so picks come in whole cycles.
			if err := r.p.SetConfig(Config{Scheduler: "rr"}); err != nil {
				t.Fatal(err)
			}
			if err := r.p.SetConfig(Config{Scheduler: "wrr"}); err != nil {
				t.Fatal(err)
			}
			cycle := int(total / g)
			for c := range 2 {
				count := map[string]int{}
				for _, n := range strings.Fields(r.picks(cycle, flow0, false)) {
					count[n]++
				}
				for i, w := range tt.weights {
					if count[names[i]] != int(w/g) {
						t.Errorf("cycle %d: %s (weight %d) picked %d times, want %d", c, names[i], w, count[names[i]], w/g)
					}
				}
			}
		})
	}
}
