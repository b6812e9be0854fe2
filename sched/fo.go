package sched

func init() { register("fo", func() scheduler { return failover{} }) }

// failover is ip_vs_fo.c: the usable dest with the highest weight; ties go
// to the first.
type failover struct{}

func (failover) pick(_ *env, ds []*Dest, _ Flow) *Dest {
	var best *Dest
	var hw int32
	for _, d := range ds {
		if !d.overloaded && d.Weight > hw {
			best, hw = d, d.Weight
		}
	}
	return best
}

func (failover) update(*env, []*Dest, change) {}
