package maps

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"xvs/bpf"
)

// RingMax is the longest ring the datapath takes (XVS_RING_MAX in
// bpf/xvs.h; a test checks it against the object).
const RingMax = len(bpf.XvsRing{}.Ents)

// RingEnt is one pick of a datapath scheduling ring: a real server by its
// dest id and port, or RingNone.
type RingEnt struct {
	DestID uint32
	Port   uint16
}

// RingNone is a hash bucket without a usable real server: the datapath
// sends its first packets to the daemon, which answers them.
var RingNone = RingEnt{DestID: 0xffffffff}

// RingKind says how the datapath indexes a ring (enum ring_kind).
type RingKind uint8

const (
	// RingSeq: pick k is Ents[k % len] (rr, wrr).
	RingSeq = RingKind(bpf.XvsRingKindRING_SEQ)
	// RingSrcHash: Ents[sched.SourceHashBucket(client, Port)] (sh).
	RingSrcHash = RingKind(bpf.XvsRingKindRING_SRC_HASH)
	// RingDstHash: Ents[sched.DestHashBucket(VIP)] (dh).
	RingDstHash = RingKind(bpf.XvsRingKindRING_DST_HASH)
	// RingMhHash: Ents[sched.MaglevSlot(client, Port)] (mh).
	RingMhHash = RingKind(bpf.XvsRingKindRING_MH_HASH)
)

// Ring is what the datapath schedules a service's first packets from.
type Ring struct {
	Kind RingKind
	Port bool // RingSrcHash, RingMhHash: the client port joins the hash (sh-port, mh-port)
	Ents []RingEnt
}

// PutRing makes the datapath schedule service id's first packets itself
// (lib/sched.h): a RingSeq ring from Ents[0] on, over and over; a hash
// ring by the packet's bucket. It replaces the service's ring whole. Each
// dest id must have been given its address with SetDest.
func (m *Maps) PutRing(id uint32, ring Ring) error {
	ents := ring.Ents
	if len(ents) == 0 || len(ents) > RingMax {
		return fmt.Errorf("put ring of service %d: %d picks, want 1..%d", id, len(ents), RingMax)
	}
	r := new(bpf.XvsRing)
	r.Len = uint16(len(ents))
	r.Kind = uint8(ring.Kind)
	if ring.Port {
		r.Flags = uint8(bpf.XvsRingFlagsRING_F_PORT)
	}
	for i, e := range ents {
		if e != RingNone && e.DestID >= m.destMax {
			return fmt.Errorf("put ring of service %d: dest id %d out of range", id, e.DestID)
		}
		r.Ents[i] = bpf.XvsRingEnt{DestId: e.DestID, Port: portBE(e.Port)}
	}
	if err := m.rings.Put(id, r); err != nil {
		return fmt.Errorf("put ring of service %d: %w", id, err)
	}
	return nil
}

// DeleteRing sends service id's first packets to the daemon again. A
// service without a ring is no error.
func (m *Maps) DeleteRing(id uint32) error {
	if err := m.rings.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete ring of service %d: %w", id, err)
	}
	return nil
}

// RingTaken returns how many picks the datapath took from service id's
// ring since PutRing, and whether it has one.
func (m *Maps) RingTaken(id uint32) (uint32, bool, error) {
	r := new(bpf.XvsRing)
	if err := m.rings.Lookup(id, r); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("look up ring of service %d: %w", id, err)
	}
	return r.Next, true, nil
}

// Events returns the datapath's event counters (conns it scheduled
// itself, ring picks it handed to the daemon), summed over CPUs and
// indexed by bpf.XvsEvent.
func (m *Maps) Events() ([bpf.XvsEventEVENT_MAX]uint64, error) {
	var out [bpf.XvsEventEVENT_MAX]uint64
	err := m.sumPerCPU(m.events, out[:], func(i uint32) string { return "event " + EventName(bpf.XvsEvent(i)) })
	return out, err
}

var eventNames = [bpf.XvsEventEVENT_MAX]string{
	bpf.XvsEventEVENT_SCHED_NEW:      "sched_new",
	bpf.XvsEventEVENT_SCHED_FULL:     "sched_full",
	bpf.XvsEventEVENT_SCHED_UNUSABLE: "sched_unusable",
	bpf.XvsEventEVENT_SCHED_REUSED:   "sched_reused",
}

// EventName is the stable metric label of an event ("sched_new", ...);
// unknown events read "event_<n>".
func EventName(e bpf.XvsEvent) string { return counterName(eventNames[:], uint32(e), "event") }
