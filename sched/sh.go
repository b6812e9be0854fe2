package sched

func init() { register("sh", func() scheduler { return &sourceHash{} }) }

// sourceHash is ip_vs_sh.c: 256 buckets keyed by hash_32 of the client
// address (plus its port with sh-port); each dest fills weight consecutive
// buckets (at least one), cycling through the list. With sh-fallback an
// unusable bucket probes on.
type sourceHash struct {
	buckets [1 << hashTabBits]*Dest
}

// update is ip_vs_sh_reassign, on init, add, delete and edit.
func (s *sourceHash) update(_ *env, ds []*Dest, _ change) {
	j, count := 0, 0
	for i := range s.buckets {
		if len(ds) == 0 {
			s.buckets[i] = nil
			continue
		}
		d := ds[j]
		s.buckets[i] = d
		count++
		if count >= int(d.Weight) {
			j = (j + 1) % len(ds)
			count = 0
		}
	}
}

func shKey(v uint32, offset uint32) uint32 {
	return (offset + hash32(v, hashTabBits)) % (1 << hashTabBits)
}

func (s *sourceHash) pick(e *env, _ []*Dest, f Flow) *Dest {
	return s.pickBucket(e, shKey(clientKey(f, e.flags&FlagPort != 0), 0))
}

// pickBucket is the pick of a flow whose hash is ihash. The fallback's
// probe keys, shKey(v, (off+ihash) % 256), are (off + 2*ihash) % 256 (as
// in ip_vs_sh.c), so the pick depends on ihash alone.
func (s *sourceHash) pickBucket(e *env, ihash uint32) *Dest {
	d := s.buckets[ihash]
	if d == nil {
		return nil
	}
	if d.usable() {
		return d
	}
	if e.flags&FlagFallback == 0 {
		return nil
	}
	for off := uint32(0); off < 1<<hashTabBits; off++ {
		d := s.buckets[(off+ihash+ihash)%(1<<hashTabBits)]
		if d == nil {
			return nil
		}
		if d.usable() {
			return d
		}
	}
	return nil
}
