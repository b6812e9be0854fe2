package sched

func init() { register("lc", func() scheduler { return leastConn{} }) }

// leastConn is ip_vs_lc.c: the usable dest with the smallest
// active*256+inactive; ties go to the first.
type leastConn struct{}

func (leastConn) pick(_ *env, ds []*Dest, _ Flow) *Dest {
	var least *Dest
	var loh uint64
	for _, d := range ds {
		if !d.usable() {
			continue
		}
		if doh := d.overhead(); least == nil || doh < loh {
			least, loh = d, doh
		}
	}
	return least
}

func (leastConn) update(*env, []*Dest, change) {}
