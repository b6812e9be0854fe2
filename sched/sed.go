package sched

func init() { register("sed", func() scheduler { return shortestDelay{} }) }

// shortestDelay is ip_vs_sed.c: wlc with overhead active+1 (inactive
// connections ignored).
type shortestDelay struct{}

func (shortestDelay) pick(_ *env, ds []*Dest, _ Flow) *Dest {
	return pickWLC(ds, (*Dest).sedOverhead)
}

func (shortestDelay) update(*env, []*Dest, change) {}
