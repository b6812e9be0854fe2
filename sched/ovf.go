package sched

func init() { register("ovf", func() scheduler { return overflow{} }) }

// overflow is ip_vs_ovf.c: the highest-weight usable dest whose active
// connections do not exceed its weight; ties go to the first. Only active
// connections count, so UDP services never overflow.
type overflow struct{}

func (overflow) pick(_ *env, ds []*Dest, _ Flow) *Dest {
	var best *Dest
	for _, d := range ds {
		if !d.usable() || d.active() > uint64(d.Weight) {
			continue
		}
		if best == nil || d.Weight > best.Weight {
			best = d
		}
	}
	return best
}

func (overflow) update(*env, []*Dest, change) {}
