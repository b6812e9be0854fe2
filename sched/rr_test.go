package sched

import "testing"

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name string
		run  func(r *rig) string
		want string
	}{
		{
			name: "seed: .2 then .3 alternate first-added first",
			run: func(r *rig) string {
				r.add("172.16.0.2:80", 1)
				r.add("172.16.0.3:80", 1)
				return r.picks(4, flow0, false)
			},
			want: "172.16.0.2:80 172.16.0.3:80 172.16.0.2:80 172.16.0.3:80",
		},
		{
			name: "reference 4.1: kernel list C,B,A is xvs adding C,B,A",
			run: func(r *rig) string {
				r.add("C", 1)
				r.add("B", 1)
				r.add("A", 1)
				return r.picks(6, flow0, false)
			},
			want: "C B A C B A",
		},
		{
			name: "weights other than 0 vs >0 are ignored",
			run: func(r *rig) string {
				r.add("A", 5)
				r.add("B", 1)
				r.add("C", 100)
				return r.picks(6, flow0, false)
			},
			want: "A B C A B C",
		},
		{
			name: "weight 0 skipped from the cursor on",
			run: func(r *rig) string {
				r.add("C", 1)
				r.add("B", 1)
				r.add("A", 1)
				s := r.picks(2, flow0, false) // C B; cursor on B
				r.edit("B", 0, 0, 0)
				return s + " | " + r.picks(4, flow0, false)
			},
			want: "C B | A C A C",
		},
		{
			name: "edit keeps the cursor",
			run: func(r *rig) string {
				r.add("A", 1)
				r.add("B", 1)
				r.add("C", 1)
				s := r.picks(1, flow0, false) // A
				r.edit("A", 7, 0, 0)
				return s + " | " + r.picks(3, flow0, false)
			},
			want: "A | B C A",
		},
		{
			name: "deleting the dest under the cursor moves it back one",
			run: func(r *rig) string {
				r.add("A", 1)
				r.add("B", 1)
				r.add("C", 1)
				s := r.picks(2, flow0, false) // A B; cursor on B
				r.del("B")
				return s + " | " + r.picks(3, flow0, false)
			},
			want: "A B | C A C",
		},
		{
			name: "deleting the first dest under the cursor goes back to the head",
			run: func(r *rig) string {
				r.add("A", 1)
				r.add("B", 1)
				r.add("C", 1)
				s := r.picks(1, flow0, false) // A
				r.del("A")
				return s + " | " + r.picks(3, flow0, false)
			},
			want: "A | B C B",
		},
		{
			name: "deleting before the cursor keeps it on its dest",
			run: func(r *rig) string {
				r.add("A", 1)
				r.add("B", 1)
				r.add("C", 1)
				s := r.picks(2, flow0, false) // cursor on B
				r.del("A")
				return s + " | " + r.picks(3, flow0, false)
			},
			want: "A B | C B C",
		},
		{
			name: "an added dest joins the current lap at the end",
			run: func(r *rig) string {
				r.add("A", 1)
				r.add("B", 1)
				s := r.picks(1, flow0, false)
				r.add("C", 1)
				return s + " | " + r.picks(4, flow0, false)
			},
			want: "A | B C A B",
		},
		{
			name: "overloaded skipped",
			run: func(r *rig) string {
				r.add("A", 1)
				r.addThr("B", 1, 2, 0)
				r.add("C", 1)
				r.c["B"].set(1, 1)
				return r.picks(4, flow0, false)
			},
			want: "A C A C",
		},
		{
			name: "all quiesced: no destination",
			run: func(r *rig) string {
				r.add("A", 0)
				r.add("B", 0)
				return r.picks(2, flow0, false)
			},
			want: "- -",
		},
		{
			name: "empty pool",
			run:  func(r *rig) string { return r.picks(1, flow0, false) },
			want: "-",
		},
		{
			name: "switching to rr with -E starts at the head",
			run: func(r *rig) string {
				r.add("A", 1)
				r.add("B", 1)
				r.add("C", 1)
				s := r.picks(2, flow0, false)
				if err := r.p.SetConfig(Config{Scheduler: "wlc"}); err != nil {
					r.t.Fatal(err)
				}
				if err := r.p.SetConfig(Config{Scheduler: "rr"}); err != nil {
					r.t.Fatal(err)
				}
				return s + " | " + r.picks(2, flow0, false)
			},
			want: "A B | A B",
		},
		{
			name: "-E with the same scheduler keeps the cursor",
			run: func(r *rig) string {
				r.add("A", 1)
				r.add("B", 1)
				r.add("C", 1)
				s := r.picks(2, flow0, false)
				if err := r.p.SetConfig(Config{Scheduler: "rr", Flags: FlagSched3}); err != nil {
					r.t.Fatal(err)
				}
				return s + " | " + r.picks(2, flow0, false)
			},
			want: "A B | C A",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: "rr"})
			if got := tt.run(r); got != tt.want {
				t.Errorf("picks = %q, want %q", got, tt.want)
			}
		})
	}
}
