package sched

import "net/netip"

// HashKind says which address picks a HashTable's bucket.
type HashKind uint8

const (
	HashSource HashKind = iota + 1 // sh: SourceHashBucket
	HashDest                       // dh: DestHashBucket
)

// HashBuckets is the number of buckets of sh and dh.
const HashBuckets = 1 << hashTabBits

// HashTable is the pick of every hash bucket of an sh or dh pool: a flow
// in bucket b goes to Dests[b], or finds no real server if it is nil.
type HashTable struct {
	Kind  HashKind
	Port  bool // HashSource with sh-port: the client port joins the hash
	Dests [HashBuckets]*Dest
}

// SourceHashBucket is sh's bucket of a client: hash_32 of its address
// folded to 32 bits, plus its port with sh-port.
func SourceHashBucket(client netip.AddrPort, port bool) int {
	v := foldAddr(client.Addr())
	if port {
		v += uint32(client.Port())
	}
	return int(shKey(v, 0))
}

// DestHashBucket is dh's bucket of a virtual address.
func DestHashBucket(vip netip.Addr) int {
	return int(hash32(foldAddr(vip), hashTabBits))
}

// HashTable returns the pool's picks by bucket, when they depend on the
// bucket alone: sh and dh without persistence and without thresholds
// (which would make OVERLOAD follow the live counters). The flows of
// protocols without ports hash without one; xvs serves only TCP and UDP.
func (p *Pool) HashTable() (HashTable, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var t HashTable
	if p.cfg.Persistent > 0 || p.nthr > 0 {
		return t, false
	}
	switch s := p.s.(type) {
	case *sourceHash:
		t.Kind, t.Port = HashSource, p.env.flags&FlagPort != 0
		for b := range t.Dests {
			t.Dests[b] = s.pickBucket(&p.env, uint32(b))
		}
	case *destHash:
		t.Kind = HashDest
		for b, d := range s.buckets {
			if d != nil && d.usable() {
				t.Dests[b] = d
			}
		}
	default:
		return t, false
	}
	return t, true
}
