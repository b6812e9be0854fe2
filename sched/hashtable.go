package sched

import "net/netip"

// HashKind says which address picks a HashTable's bucket.
type HashKind uint8

const (
	HashSource HashKind = iota + 1 // sh: SourceHashBucket
	HashDest                       // dh: DestHashBucket
	HashMaglev                     // mh: MaglevSlot
)

// HashBuckets is the number of buckets of sh and dh; MaglevSlots mh's.
const (
	HashBuckets = 1 << hashTabBits
	MaglevSlots = mhSize
)

// HashTable is the pick of every hash bucket of an sh, dh or mh pool: a
// flow in bucket b goes to Dests[b], or finds no real server if it is nil.
type HashTable struct {
	Kind  HashKind
	Port  bool    // HashSource, HashMaglev with sh-port/mh-port: the client port joins the hash
	Dests []*Dest // HashBuckets or MaglevSlots of them
}

// SourceHashBucket is sh's bucket of a TCP or UDP client: hash_32 of its
// address folded to 32 bits, plus its port with sh-port.
func SourceHashBucket(client netip.AddrPort, port bool) int {
	return int(shKey(clientKey(Flow{Proto: 6, Client: client}, port), 0))
}

// MaglevSlot is mh's lookup slot of a TCP or UDP client: hsiphash of its
// address folded to 32 bits, plus its port with mh-port.
func MaglevSlot(client netip.AddrPort, port bool) int {
	return int(mhSlot(clientKey(Flow{Proto: 6, Client: client}, port), 0))
}

// DestHashBucket is dh's bucket of a virtual address.
func DestHashBucket(vip netip.Addr) int {
	return int(hash32(foldAddr(vip), hashTabBits))
}

// HashTable returns the pool's picks by bucket, when they depend on the
// bucket alone: sh, dh and mh without persistence and without thresholds
// (which would make OVERLOAD follow the live counters); mh with
// mh-fallback only while every dest in its table is usable, since its
// fallback re-hashes the client. The flows of protocols without ports
// hash without one; xvs serves only TCP and UDP.
func (p *Pool) HashTable() (HashTable, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var t HashTable
	if !p.fixed() {
		return t, false
	}
	switch s := p.s.(type) {
	case *sourceHash:
		t.Kind, t.Port = HashSource, p.env.flags&FlagPort != 0
		t.Dests = make([]*Dest, HashBuckets)
		for b := range t.Dests {
			t.Dests[b] = s.pickBucket(&p.env, uint32(b))
		}
	case *destHash:
		t.Kind = HashDest
		t.Dests = make([]*Dest, HashBuckets)
		for b, d := range s.buckets {
			if d != nil && d.usable() {
				t.Dests[b] = d
			}
		}
	case *maglev:
		if s.table == nil {
			return t, false
		}
		t.Kind, t.Port = HashMaglev, p.env.flags&FlagPort != 0
		t.Dests = make([]*Dest, MaglevSlots)
		for b, d := range s.table {
			if d == nil || d.usable() {
				t.Dests[b] = d
				continue
			}
			if p.env.flags&FlagFallback != 0 {
				return HashTable{}, false
			}
		}
	default:
		return t, false
	}
	return t, true
}
