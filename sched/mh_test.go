package sched

import (
	"fmt"
	"net/netip"
	"testing"
)

// mhCounts counts the table slots per dest name.
func mhCounts(r *rig) map[string]int {
	out := map[string]int{}
	for _, d := range r.p.s.(*maglev).table {
		if d == nil {
			out["-"]++
			continue
		}
		out[r.name[d.Addr]]++
	}
	return out
}

func TestMaglevReference(t *testing.T) {
	// Reference 4.11: list .3 then .2 (kernel) = xvs adding .3 then .2.
	r := newRig(t, Config{Scheduler: "mh"})
	r.add("172.16.0.3:80", 1)
	r.add("172.16.0.2:80", 1)
	got := mhCounts(r)
	if got["172.16.0.3:80"] != 2047 || got["172.16.0.2:80"] != 2046 {
		t.Errorf("table split %v, want .3: 2047, .2: 2046", got)
	}
	for _, c := range []struct{ client, want string }{
		{"10.0.0.2", "172.16.0.2:80"},
		{"10.0.0.3", "172.16.0.3:80"},
		{"192.168.1.100", "172.16.0.3:80"},
	} {
		if d := r.pick(clientFlow(c.client)); d != c.want {
			t.Errorf("%s -> %s, want %s", c.client, d, c.want)
		}
	}
}

func TestMaglevWeights(t *testing.T) {
	tests := []struct {
		name    string
		weights []int32
		want    map[string]int
	}{
		// Per lap A takes 2 slots, B 1: 1364 laps + A's first slot.
		{name: "2:1", weights: []int32{2, 1}, want: map[string]int{"A": 2729, "B": 1364}},
		// gcd 10 divides out: same as 2:1.
		{name: "gcd divides out", weights: []int32{20, 10}, want: map[string]int{"A": 2729, "B": 1364}},
		// A dest added with weight 0 has no last_weight: no slots.
		{name: "added at weight 0", weights: []int32{1, 0}, want: map[string]int{"A": 4093}},
		{name: "none positive", weights: []int32{0, 0}, want: map[string]int{"-": 4093}},
		// 65535/1 has 16 bits: shifted right by 10, A gets 63 turns a lap and
		// B 1; 63 laps of 64 slots, then A takes the last 61.
		{name: "rshift", weights: []int32{65535, 1}, want: map[string]int{"A": 63*63 + 61, "B": 63}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: "mh"})
			for i, w := range tt.weights {
				r.add(string(rune('A'+i)), w)
			}
			got := mhCounts(r)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("slots %v, want %v", got, tt.want)
			}
		})
	}
}

// mhAssign maps n client keys to dest names.
func mhAssign(r *rig, n int) []string {
	out := make([]string, n)
	for i := range out {
		f := flow0
		f.Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}), 1234)
		out[i] = r.pick(f)
	}
	return out
}

// TestMaglevDisruption: removing one of N servers moves all of its keys
// and only few others.
func TestMaglevDisruption(t *testing.T) {
	const n, keys = 10, 20000
	for _, victim := range []int{0, 4, n - 1} {
		t.Run(fmt.Sprintf("remove %d of %d", victim, n), func(t *testing.T) {
			r := newRig(t, Config{Scheduler: "mh"})
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("172.16.1.%d:8080", i+1)
				r.add(names[i], 1)
			}
			before := mhAssign(r, keys)
			r.del(names[victim])
			after := mhAssign(r, keys)
			var others, moved, onVictim int
			for i := range before {
				if before[i] == names[victim] {
					onVictim++
					if after[i] == names[victim] || after[i] == "-" {
						t.Fatalf("key %d still on the removed server (%s)", i, after[i])
					}
					continue
				}
				others++
				if after[i] != before[i] {
					moved++
				}
			}
			frac := float64(moved) / float64(others)
			t.Logf("keys on victim %d; moved %d of %d others (%.2f%%)", onVictim, moved, others, 100*frac)
			if onVictim == 0 {
				t.Fatal("no key was on the removed server; the test tests nothing")
			}
			if frac > 0.05 {
				t.Errorf("%.2f%% of the other keys moved, want <= 5%%", 100*frac)
			}
		})
	}
}

func TestMaglevQuiesceAndFallback(t *testing.T) {
	tests := []struct {
		name  string
		flags uint32
	}{
		{name: "no fallback"},
		{name: "mh-fallback", flags: FlagFallback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: "mh", Flags: tt.flags})
			for i := range 4 {
				r.add(string(rune('A'+i)), 1)
			}
			before := mhAssign(r, 2000)
			table := *r.p.s.(*maglev).table
			r.edit("B", 0, 0, 0)
			if *r.p.s.(*maglev).table != table {
				t.Fatal("weight 0 changed the table; last_weight should keep it")
			}
			after := mhAssign(r, 2000)
			for i := range before {
				switch {
				case before[i] != "B" && after[i] != before[i]:
					t.Fatalf("key %d moved %s -> %s", i, before[i], after[i])
				case before[i] == "B" && tt.flags == 0 && after[i] != "-":
					t.Fatalf("key %d of quiesced B went to %s without fallback", i, after[i])
				case before[i] == "B" && tt.flags != 0 && (after[i] == "-" || after[i] == "B"):
					t.Fatalf("key %d of quiesced B got %s with fallback", i, after[i])
				}
			}
		})
	}
}

func TestMaglevPort(t *testing.T) {
	tests := []struct {
		name      string
		flags     uint32
		wantMulti bool
	}{
		{name: "port ignored", flags: 0, wantMulti: false},
		{name: "mh-port", flags: FlagPort, wantMulti: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: "mh", Flags: tt.flags})
			for i := range 4 {
				r.add(string(rune('A'+i)), 1)
			}
			seen := map[string]bool{}
			for p := range 64 {
				f := flow0
				f.Client = netip.AddrPortFrom(f.Client.Addr(), uint16(1000+p))
				seen[r.pick(f)] = true
			}
			if (len(seen) > 1) != tt.wantMulti {
				t.Errorf("one client over 64 ports reached %v", seen)
			}
			// The port enters the hash as ntohs(port) + address.
			f := flow0
			v := foldAddr(f.Client.Addr())
			if tt.flags != 0 {
				v += uint32(f.Client.Port())
			}
			d := r.p.s.(*maglev).table[mhSlot(v, 0)]
			if got := r.pick(f); got != r.name[d.Addr] {
				t.Errorf("picked %s, table slot says %s", got, r.name[d.Addr])
			}
		})
	}
}

// TestMaglevTooManyDests: over M dests the kernel keeps the old table; xvs
// still takes a removed dest out of it.
func TestMaglevTooManyDests(t *testing.T) {
	ds := make([]*Dest, mhSize+2)
	for i := range ds {
		ds[i] = &Dest{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 8, byte(i >> 8), byte(i)}), 80), Weight: 1, lastWeight: 1, counters: noCounters{}}
	}
	s := &maglev{}
	s.update(&env{}, ds[:2], change{op: opInit})
	old := *s.table
	s.update(&env{}, ds, change{op: opAdd, at: len(ds) - 1, d: ds[len(ds)-1]})
	if *s.table != old {
		t.Fatal("table rebuilt with more than M dests")
	}
	s.update(&env{}, ds[1:], change{op: opDel, at: 0, d: ds[0]})
	for i, d := range s.table {
		if d == ds[0] {
			t.Fatalf("slot %d still holds the removed dest", i)
		}
		if d != nil && d != ds[1] {
			t.Fatalf("slot %d holds %v", i, d.Addr)
		}
	}
}
