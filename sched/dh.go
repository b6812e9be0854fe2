package sched

func init() { register("dh", func() scheduler { return &destHash{} }) }

const hashTabBits = 8 // dh and sh: 256 buckets

// destHash is ip_vs_dh.c: 256 buckets keyed by hash_32 of the packet's
// destination address; bucket i holds list element i mod n, weights are
// ignored. No fallback.
type destHash struct {
	buckets [1 << hashTabBits]*Dest
}

// update rebuilds on init, add and delete, not on edit (ip_vs_dh_reassign).
func (s *destHash) update(_ *env, ds []*Dest, c change) {
	if c.op == opEdit {
		return
	}
	for i := range s.buckets {
		if len(ds) == 0 {
			s.buckets[i] = nil
		} else {
			s.buckets[i] = ds[i%len(ds)]
		}
	}
}

func (s *destHash) pick(_ *env, _ []*Dest, f Flow) *Dest {
	d := s.buckets[hash32(foldAddr(f.VIP.Addr()), hashTabBits)]
	if d == nil || !d.usable() {
		return nil
	}
	return d
}
