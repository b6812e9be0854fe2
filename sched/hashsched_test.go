package sched

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestDestHash(t *testing.T) {
	vip := func(a string) Flow {
		f := flow0
		f.VIP = netip.AddrPortFrom(netip.MustParseAddr(a), 80)
		return f
	}
	tests := []struct {
		name string
		run  func(r *rig) string
		want string
	}{
		{
			// Kernel list C,B,A = xvs adding C,B,A: bucket 174 -> 174 mod 3 = 0.
			name: "reference 4.9 example",
			run: func(r *rig) string {
				r.add("C", 1)
				r.add("B", 1)
				r.add("A", 1)
				return r.pick(vip("207.175.44.110"))
			},
			want: "C",
		},
		{
			name: "weights ignored for filling",
			run: func(r *rig) string {
				r.add("C", 1)
				r.add("B", 100)
				r.add("A", 1)
				return r.pick(vip("207.175.44.110"))
			},
			want: "C",
		},
		{
			name: "keyed by destination, not client",
			run: func(r *rig) string {
				r.add("A", 1)
				r.add("B", 1)
				r.add("C", 1)
				f := vip("207.175.44.110") // bucket 174 -> 0 -> A
				g := f
				g.Client = netip.MustParseAddrPort("192.168.1.100:1")
				h := vip("10.0.0.2") // bucket 137 -> 137 mod 3 = 2 -> C
				return r.pick(f) + " " + r.pick(g) + " " + r.pick(h)
			},
			want: "A A C",
		},
		{
			name: "rebuilt on add",
			run: func(r *rig) string {
				r.add("A", 1)
				r.add("B", 1)
				s := r.pick(vip("10.0.0.2")) // 137 mod 2 = 1 -> B
				r.add("C", 1)
				return s + " " + r.pick(vip("10.0.0.2")) // 137 mod 3 = 2 -> C
			},
			want: "B C",
		},
		{
			name: "rebuilt on delete",
			run: func(r *rig) string {
				r.add("A", 1)
				r.add("B", 1)
				r.add("C", 1)
				r.del("A")
				return r.pick(vip("10.0.0.2")) // list B,C: 137 mod 2 = 1 -> C
			},
			want: "C",
		},
		{
			name: "edit to weight 0 keeps the table: no destination, no fallback",
			run: func(r *rig) string {
				r.add("A", 1)
				r.add("B", 1)
				r.add("C", 1)
				r.edit("C", 0, 0, 0)
				return r.pick(vip("10.0.0.2")) + " " + r.pick(vip("207.175.44.110"))
			},
			want: "- A",
		},
		{
			name: "overloaded bucket: no destination",
			run: func(r *rig) string {
				r.add("A", 1)
				r.addThr("B", 1, 1, 0)
				r.c["B"].set(0, 1)
				return r.pick(vip("10.0.0.3")) // 235 mod 2 = 1 -> B
			},
			want: "-",
		},
		{
			name: "empty",
			run:  func(r *rig) string { return r.pick(flow0) },
			want: "-",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: "dh"})
			if got := tt.run(r); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSourceHash(t *testing.T) {
	// Kernel list C,B,A with A w1, B w2, C w1 = xvs adding C1, B2, A1:
	// buckets repeat C B B A.
	ref := func(r *rig) {
		r.add("C", 1)
		r.add("B", 2)
		r.add("A", 1)
	}
	port := func(a string, p uint16) Flow {
		f := flow0
		f.Client = netip.AddrPortFrom(netip.MustParseAddr(a), p)
		return f
	}
	tests := []struct {
		name  string
		flags uint32
		run   func(r *rig) string
		want  string
	}{
		{
			name: "reference 4.10 example",
			run: func(r *rig) string {
				ref(r)
				return r.pick(clientFlow("10.0.0.2")) + " " + r.pick(clientFlow("10.0.0.3")) + " " + r.pick(clientFlow("192.168.1.100"))
			},
			want: "B A B",
		},
		{
			name:  "sh-port: 10.0.0.2 port 40000 -> 45 -> B",
			flags: FlagPort,
			run: func(r *rig) string {
				ref(r)
				// 45 mod 4 = 1 -> B
				return r.pick(port("10.0.0.2", 40000)) + " " + fmt.Sprint(hash32(0x0A000002+40000, 8))
			},
			want: "B 45",
		},
		{
			name: "without sh-port the port is ignored",
			run: func(r *rig) string {
				ref(r)
				return r.pick(port("10.0.0.3", 1)) + " " + r.pick(port("10.0.0.3", 2)) + " " + r.pick(port("10.0.0.3", 3))
			},
			want: "A A A",
		},
		{
			name: "rebuilt on edit",
			run: func(r *rig) string {
				ref(r)
				r.edit("B", 1, 0, 0) // buckets C B A: 137 mod 3 = 2 -> A
				return r.pick(clientFlow("10.0.0.2"))
			},
			want: "A",
		},
		{
			name: "unusable bucket without fallback: no destination",
			run: func(r *rig) string {
				ref(r)
				r.edit("B", 0, 0, 0) // a weight-0 dest keeps one bucket: C B A
				return r.pick(clientFlow("10.0.0.3")) + " " + r.pick(clientFlow("10.0.0.2"))
			},
			// 235 mod 3 = 1 -> B (weight 0) -> none; 137 mod 3 = 2 -> A
			want: "- A",
		},
		{
			name:  "sh-fallback probes (2*hash + k) mod 256",
			flags: FlagFallback,
			run: func(r *rig) string {
				r.add("C", 1)
				r.addThr("B", 2, 1, 0)
				r.add("A", 1)
				r.c["B"].set(0, 1)
				// 10.0.0.2: bucket 137 -> B overloaded; probe 18 -> B; 19 -> A.
				// 10.0.0.3: bucket 235 -> A usable.
				return r.pick(clientFlow("10.0.0.2")) + " " + r.pick(clientFlow("10.0.0.3"))
			},
			want: "A A",
		},
		{
			name:  "sh-fallback with nothing usable",
			flags: FlagFallback,
			run: func(r *rig) string {
				r.addThr("A", 1, 1, 0)
				r.c["A"].set(1, 0)
				return r.pick(clientFlow("10.0.0.2"))
			},
			want: "-",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: "sh", Flags: tt.flags})
			if got := tt.run(r); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSourceHashBuckets(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
		want    []string // repeating pattern of the 256 buckets
	}{
		{name: "reference C1 B2 A1", weights: []int32{1, 2, 1}, want: []string{"A", "B", "B", "C"}},
		{name: "weight 0 takes one bucket", weights: []int32{0, 3}, want: []string{"A", "B", "B", "B"}},
		{name: "weight over 256 fills all", weights: []int32{300, 1}, want: []string{"A"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: "sh"})
			for i, w := range tt.weights {
				r.add(string(rune('A'+i)), w)
			}
			s := r.p.s.(*sourceHash)
			for i, d := range s.buckets {
				if got := r.name[d.Addr]; got != tt.want[i%len(tt.want)] {
					t.Fatalf("bucket %d = %s, want %s", i, got, tt.want[i%len(tt.want)])
				}
			}
		})
	}
}
