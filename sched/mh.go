package sched

import "math/bits"

func init() { register("mh", func() scheduler { return &maglev{} }) }

const (
	mhSize = 4093 // IP_VS_MH_TAB_SIZE with the default IP_VS_MH_TAB_INDEX 12
	mhBits = 6    // IP_VS_MH_TAB_BITS: weights/gcd are shifted to this many bits
)

// The fixed hsiphash keys of ip_vs_mh.c generate_hash_secret.
const (
	mhKey1 = 2654435761
	mhKey2 = 2654446892
)

// maglev is ip_vs_mh.c: a Maglev lookup table of mhSize slots, filled from
// each dest's permutation (offset, skip from its address and port) in
// proportion to its last non-zero weight.
type maglev struct {
	table *[mhSize]*Dest
}

func mhHash(key uint64, v uint32) uint32 { return hsiphash32(key, key, v) }

// update is ip_vs_mh_dest_changed: rebuilt on init, add, delete and edit.
// Weights come from last_weight, so quiescing a dest (weight 0) leaves the
// table as it was.
func (s *maglev) update(_ *env, ds []*Dest, c change) {
	if s.table == nil {
		s.table = new([mhSize]*Dest)
	}
	if len(ds) > mhSize {
		// The kernel refuses (-EINVAL) and keeps the old table; unlike the
		// kernel, never leave a removed dest in it.
		if c.op == opDel {
			for i, d := range s.table {
				if d == c.d {
					s.table[i] = nil
				}
			}
		}
		return
	}
	g, mx := 0, 0
	for _, d := range ds {
		w := int(d.lastWeight)
		if w > 0 {
			if g > 0 {
				g = gcd(w, g)
			} else {
				g = w
			}
		}
		if w > mx {
			mx = w
		}
	}
	if g < 1 {
		clear(s.table[:])
		return
	}
	rshift := 0
	if n := bits.Len(uint(mx/g)) - mhBits; n > 0 {
		rshift = n
	}
	type setup struct{ perm, skip, turns int }
	st := make([]setup, len(ds))
	for i, d := range ds {
		v := uint32(d.Addr.Port()) + foldAddr(d.Addr.Addr())
		lw := int(d.lastWeight)
		turns := (lw / g) >> rshift
		if turns == 0 && lw != 0 {
			turns = 1
		}
		st[i] = setup{
			perm:  int(mhHash(mhKey1, v) % mhSize),
			skip:  int(mhHash(mhKey2, v)%(mhSize-1)) + 1,
			turns: turns,
		}
	}
	var taken [mhSize]bool
	n, count := 0, 0
	for n < mhSize {
		for i := 0; i < len(ds); {
			sp := &st[i]
			if sp.turns < 1 {
				i++
				continue
			}
			c := sp.perm
			for taken[c] {
				sp.perm += sp.skip
				if sp.perm >= mhSize {
					sp.perm -= mhSize
				}
				c = sp.perm
			}
			taken[c] = true
			s.table[c] = ds[i]
			if n++; n == mhSize {
				return
			}
			if count++; count >= sp.turns {
				count = 0
				i++
			}
		}
	}
}

// mhSlot is the lookup slot of a client value with a probe offset.
func mhSlot(v, offset uint32) uint32 { return mhHash(mhKey1, offset+v) % mhSize }

// pick is ip_vs_mh_get / ip_vs_mh_get_fallback: the slot of the client's
// address (plus port with mh-port); with mh-fallback an unusable dest makes
// it re-hash with offsets until a usable one turns up.
func (s *maglev) pick(e *env, _ []*Dest, f Flow) *Dest {
	if s.table == nil {
		return nil
	}
	v := clientKey(f, e.flags&FlagPort != 0)
	ihash := mhSlot(v, 0)
	d := s.table[ihash]
	if d == nil {
		return nil
	}
	if d.usable() {
		return d
	}
	if e.flags&FlagFallback == 0 {
		return nil
	}
	for off := uint32(0); off < mhSize; off++ {
		d := s.table[mhSlot(v, (off+ihash)%mhSize)]
		if d == nil {
			return nil
		}
		if d.usable() {
			return d
		}
	}
	return nil
}
