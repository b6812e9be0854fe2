package sched

func init() { register("wlc", func() scheduler { return weightedLC{} }) }

// weightedLC is ip_vs_wlc.c, the default: minimum overhead/weight.
type weightedLC struct{}

func (weightedLC) pick(_ *env, ds []*Dest, _ Flow) *Dest {
	return pickWLC(ds, (*Dest).overhead)
}

func (weightedLC) update(*env, []*Dest, change) {}

// pickWLC is the loop wlc, sed and lblc/lblcr share: the first usable dest,
// then every later non-OVERLOAD dest that is strictly lighter per weight
// (a weight-0 dest can never win the comparison); ties keep the earlier.
func pickWLC(ds []*Dest, load func(*Dest) uint64) *Dest {
	for i, d := range ds {
		if !d.usable() {
			continue
		}
		least, loh := d, load(d)
		for _, d := range ds[i+1:] {
			if d.overloaded {
				continue
			}
			if doh := load(d); heavier(loh, least.Weight, doh, d.Weight) {
				least, loh = d, doh
			}
		}
		return least
	}
	return nil
}
