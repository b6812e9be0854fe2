package maps

import (
	"testing"

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
	if err := m.PutRing(3, ents); err != nil {
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
	if err := m.PutRing(3, ents[:1]); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := m.RingTaken(3); err != nil || !ok || n != 0 {
		t.Errorf("RingTaken after PutRing %d %v %v, want 0", n, ok, err)
	}
	for _, bad := range [][]RingEnt{nil, make([]RingEnt, RingMax+1), {{DestID: 1 << 30}}} {
		if err := m.PutRing(4, bad); err == nil {
			t.Errorf("PutRing of %d picks (first dest %v) succeeded", len(bad), bad)
		}
	}
	if _, ok, _ := m.RingTaken(4); ok {
		t.Error("a refused ring was written")
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
	if EventName(bpf.XvsEventEVENT_SCHED_NEW) != "sched_new" || EventName(bpf.XvsEventEVENT_MAX) != "event_3" {
		t.Errorf("names %q %q", EventName(bpf.XvsEventEVENT_SCHED_NEW), EventName(bpf.XvsEventEVENT_MAX))
	}
}
