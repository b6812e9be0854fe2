package sched

func init() { register("rr", func() scheduler { return &roundRobin{cur: -1} }) }

// roundRobin is ip_vs_rr.c: a cursor walks the list and takes the next
// usable dest. Weights matter only as 0 vs > 0.
type roundRobin struct {
	cur int // index of the last pick; -1 = the list head
}

func (s *roundRobin) pick(_ *env, ds []*Dest, _ Flow) *Dest {
	n := len(ds)
	// Start after the cursor and wrap; the cursor's own dest comes last.
	for k := 1; k <= n; k++ {
		i := (s.cur + k) % n
		if ds[i].usable() {
			s.cur = i
			return ds[i]
		}
	}
	return nil
}

// update keeps the cursor on the same dest across adds and edits. Deleting
// the dest under the cursor moves it back one, as ip_vs_rr_del_dest does.
func (s *roundRobin) update(_ *env, _ []*Dest, c change) {
	switch c.op {
	case opInit:
		s.cur = -1
	case opDel:
		if c.at <= s.cur {
			s.cur--
		}
	}
}
