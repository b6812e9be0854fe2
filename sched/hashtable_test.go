package sched

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestHashTableIsSchedule: for sh and dh, the table's pick of a flow's
// bucket is what Schedule returns for it, for v4 and v6 clients and
// every sh flag, with a quiesced dest in the pool.
func TestHashTableIsSchedule(t *testing.T) {
	tests := []struct {
		name  string
		sched string
		flags uint32
	}{
		{"sh", "sh", 0},
		{"sh-port", "sh", FlagPort},
		{"sh-fallback", "sh", FlagFallback},
		{"sh-port sh-fallback", "sh", FlagPort | FlagFallback},
		{"dh", "dh", 0},
		{"mh", "mh", 0},
		{"mh-port", "mh", FlagPort},
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: tt.sched, Flags: tt.flags})
			r.add("A", 1)
			r.add("B", 2)
			r.add("C", 3)
			r.edit("B", 0, 0, 0) // quiesced: mh keeps it in its table
			tab, ok := r.p.HashTable()
			if !ok {
				t.Fatal("no hash table")
			}
			if want := map[string]HashKind{"sh": HashSource, "dh": HashDest, "mh": HashMaglev}[tt.sched]; tab.Kind != want || tab.Port != (tt.flags&FlagPort != 0) {
				t.Fatalf("kind %d port %v", tab.Kind, tab.Port)
			}
			nils := 0
			for i := range 4000 {
				var client netip.Addr
				if i%2 == 0 {
					client = netip.AddrFrom4([4]byte{byte(rnd.Uint32()), byte(rnd.Uint32()), byte(rnd.Uint32()), byte(rnd.Uint32())})
				} else {
					var b [16]byte
					for j := range b {
						b[j] = byte(rnd.Uint32())
					}
					client = netip.AddrFrom16(b)
				}
				vip := netip.MustParseAddrPort("192.0.2.1:80")
				if i%4 == 1 {
					vip = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 80)
				}
				f := Flow{Proto: 6, Client: netip.AddrPortFrom(client, uint16(rnd.Uint32())), VIP: vip}
				var b int
				switch tab.Kind {
				case HashSource:
					b = SourceHashBucket(f.Client, tab.Port)
				case HashDest:
					b = DestHashBucket(f.VIP.Addr())
				case HashMaglev:
					b = MaglevSlot(f.Client, tab.Port)
				}
				d, err := r.p.Schedule(f)
				if err != nil {
					d = nil
				}
				if tab.Dests[b] != d {
					t.Fatalf("flow %v -> %v: table has %v in bucket %d, Schedule %v (%v)", f.Client, f.VIP, tab.Dests[b], b, d, err)
				}
				if d == nil {
					nils++
				}
			}
			// The quiesced dest's buckets find no dest without fallback.
			if tt.flags&FlagFallback == 0 && nils == 0 {
				t.Error("no flow met the quiesced dest's buckets")
			}
			if tt.flags&FlagFallback != 0 && nils != 0 {
				t.Errorf("%d flows found no dest with sh-fallback", nils)
			}
		})
	}
}

func TestNoHashTable(t *testing.T) {
	for _, cfg := range []Config{
		{Scheduler: "rr"},
		{Scheduler: "sh", Persistent: time.Minute},
	} {
		r := newRig(t, cfg)
		r.add("A", 1)
		if _, ok := r.p.HashTable(); ok {
			t.Errorf("%+v: hash table, want none", cfg)
		}
	}
	r := newRig(t, Config{Scheduler: "sh"})
	r.addThr("A", 1, 10, 0)
	if _, ok := r.p.HashTable(); ok {
		t.Error("sh with a threshold: hash table, want none")
	}
	// mh-fallback re-hashes the client past an unusable dest: no table
	// while one is in it, a table again once it is usable.
	r = newRig(t, Config{Scheduler: "mh", Flags: FlagFallback})
	r.add("A", 1)
	r.add("B", 1)
	r.edit("B", 0, 0, 0)
	if _, ok := r.p.HashTable(); ok {
		t.Error("mh-fallback with a quiesced dest: hash table, want none")
	}
	r.edit("B", 1, 0, 0)
	if _, ok := r.p.HashTable(); !ok {
		t.Error("mh-fallback, all usable: no hash table")
	}
}
