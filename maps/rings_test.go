package maps

import (
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"xvs/bpf"
)

func TestRings(t *testing.T) {
	m, raw := newTestMaps(t)
	if got := raw.XvsRings.ValueSize(); got != uint32(8+8*RingMax) {
		t.Fatalf("xvs_rings value size %d, want %d: RingMax is not XVS_RING_MAX", got, 8+8*RingMax)
	}
	if _, ok, err := m.RingTaken(3); err != nil || ok {
		t.Fatalf("RingTaken of a service without ring: ok %v err %v", ok, err)
	}
	ents := []RingEnt{{DestID: 5, Port: 8080}, {DestID: 6, Port: 80}}
	if err := m.PutRing(3, Ring{Ents: ents}); err != nil {
		t.Fatal(err)
	}
	var r bpf.XvsRing
	if err := raw.XvsRings.Lookup(uint32(3), &r); err != nil {
		t.Fatal(err)
	}
	// Ports in network order, as the datapath rewrites with them.
	if r.Len != 2 || r.Next != 0 || r.Ents[0] != (bpf.XvsRingEnt{DestId: 5, Port: 0x901f}) || r.Ents[1] != (bpf.XvsRingEnt{DestId: 6, Port: 0x5000}) {
		t.Errorf("ring %d %d %+v %+v", r.Len, r.Next, r.Ents[0], r.Ents[1])
	}
	// The datapath took 7 picks.
	r.Next = 7
	if err := raw.XvsRings.Put(uint32(3), &r); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := m.RingTaken(3); err != nil || !ok || n != 7 {
		t.Errorf("RingTaken %d %v %v, want 7", n, ok, err)
	}
	// A new ring starts afresh.
	if err := m.PutRing(3, Ring{Ents: ents[:1]}); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := m.RingTaken(3); err != nil || !ok || n != 0 {
		t.Errorf("RingTaken after PutRing %d %v %v, want 0", n, ok, err)
	}
	for _, bad := range [][]RingEnt{nil, make([]RingEnt, RingMax+1), {{DestID: 1 << 30}}} {
		if err := m.PutRing(4, Ring{Ents: bad}); err == nil {
			t.Errorf("PutRing of %d picks (first dest %v) succeeded", len(bad), bad)
		}
	}
	if _, ok, _ := m.RingTaken(4); ok {
		t.Error("a refused ring was written")
	}
	// A hash ring: kind, sh-port flag, and buckets without a real server.
	if err := m.PutRing(5, Ring{Kind: RingSrcHash, Port: true, Ents: []RingEnt{RingNone, {DestID: 5, Port: 80}}}); err != nil {
		t.Fatal(err)
	}
	if err := raw.XvsRings.Lookup(uint32(5), &r); err != nil {
		t.Fatal(err)
	}
	if r.Kind != uint8(bpf.XvsRingKindRING_SRC_HASH) || r.Flags != uint8(bpf.XvsRingFlagsRING_F_PORT) || r.Len != 2 || r.Ents[0].DestId != 0xffffffff {
		t.Errorf("hash ring kind %d flags %d len %d first dest %#x", r.Kind, r.Flags, r.Len, r.Ents[0].DestId)
	}
	for range 2 { // deleting what is gone is no error
		if err := m.DeleteRing(3); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := m.RingTaken(3); ok {
		t.Error("ring still there after DeleteRing")
	}
}

func TestEvents(t *testing.T) {
	m, raw := newTestMaps(t)
	per := make([]uint64, m.ncpu)
	per[0], per[len(per)-1] = 2, 3
	if err := raw.XvsEvents.Put(uint32(bpf.XvsEventEVENT_SCHED_FULL), per); err != nil {
		t.Fatal(err)
	}
	evs, err := m.Events()
	if err != nil {
		t.Fatal(err)
	}
	want := uint64(5)
	if len(per) == 1 {
		want = 3
	}
	if evs[bpf.XvsEventEVENT_SCHED_FULL] != want || evs[bpf.XvsEventEVENT_SCHED_NEW] != 0 {
		t.Errorf("events %v", evs)
	}
	if EventName(bpf.XvsEventEVENT_SCHED_NEW) != "sched_new" || EventName(bpf.XvsEventEVENT_SCHED_REUSED) != "sched_reused" || EventName(bpf.XvsEventEVENT_MAX) != "event_4" {
		t.Errorf("names %q %q", EventName(bpf.XvsEventEVENT_SCHED_NEW), EventName(bpf.XvsEventEVENT_MAX))
	}
}

// fillLRU fills an LRU map of conn keys to its capacity with keys no
// conn uses, and returns how many entries it holds.
func fillLRU(t *testing.T, mp *ebpf.Map) int {
	t.Helper()
	for i := range mp.MaxEntries() {
		k := bpf.XvsConnKey{Proto: 6, Family: 2, Sport: uint16(i), Dport: uint16(i >> 16)}
		k.Saddr[0], k.Daddr[0] = 192, 198
		if err := mp.Put(&k, &bpf.XvsRconn{SvcId: 9}); err != nil {
			t.Fatal(err)
		}
	}
	return countEntries(t, mp)
}

func countEntries(t *testing.T, mp *ebpf.Map) int {
	t.Helper()
	n := 0
	var k bpf.XvsConnKey
	var v bpf.XvsRconn
	it := mp.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestInstallIntoFullMainPair: installing half-open conns takes nothing
// from a full main pair. An LRU map evicts its least recently used entry
// for any update when it has no free node, even for an update it then
// refuses, so the shadowing step must not update a key that is not there.
func TestInstallIntoFullMainPair(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(map[bool]string{false: "InstallConn", true: "InstallConns"}[batch], func(t *testing.T) {
			// One CPU for the fill and the installs: the LRU keeps a
			// few free nodes per CPU, and another CPU's could hide
			// an eviction.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var one, all unix.CPUSet
			if err := unix.SchedGetaffinity(0, &all); err != nil {
				t.Fatal(err)
			}
			one.Set(0)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				t.Fatal(err)
			}
			defer unix.SchedSetaffinity(0, &all)
			m, raw := newTestMaps(t)
			full := fillLRU(t, raw.XvsRconns)
			cs := make([]Conn, 100)
			for i := range cs {
				cs[i] = tcpConn(i)
			}
			errs := make([]error, len(cs))
			if batch {
				m.InstallConns(cs, errs)
			} else {
				for i, c := range cs {
					errs[i] = m.InstallConn(c)
				}
			}
			for i, err := range errs {
				if err != nil {
					t.Fatalf("install %d: %v", i, err)
				}
			}
			if n := countEntries(t, raw.XvsRconns); n != full {
				t.Errorf("main pair's server-side table: %d entries after the installs, %d before", n, full)
			}
		})
	}
}
