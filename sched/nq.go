package sched

func init() { register("nq", func() scheduler { return neverQueue{} }) }

// neverQueue is ip_vs_nq.c: the first usable idle dest (no active
// connections), else the sed rule.
type neverQueue struct{}

func (neverQueue) pick(_ *env, ds []*Dest, _ Flow) *Dest {
	var least *Dest
	var loh uint64
	for _, d := range ds {
		if !d.usable() {
			continue
		}
		if d.active() == 0 {
			return d
		}
		if doh := d.sedOverhead(); least == nil || heavier(loh, least.Weight, doh, d.Weight) {
			least, loh = d, doh
		}
	}
	return least
}

func (neverQueue) update(*env, []*Dest, change) {}
