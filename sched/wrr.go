package sched

func init() { register("wrr", func() scheduler { return &weightedRR{cl: -1} }) }

// weightedRR is ip_vs_wrr.c: rounds of decreasing current weight cw
// (mw, mw-di, ..., down to 1); a dest is picked in the rounds where its
// weight >= cw, in list order within a round.
type weightedRR struct {
	cl int // cursor: index of the last pick, -1 = the list head
	cw int // current weight
	mw int // max weight - (di - 1)
	di int // gcd of the positive weights (1 if none)
}

func (s *weightedRR) recompute(ds []*Dest) {
	g, mx := 0, 0
	for _, d := range ds {
		w := int(d.Weight)
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
	if g == 0 {
		g = 1
	}
	s.di = g
	s.mw = mx - (g - 1)
}

// update is ip_vs_wrr_init_svc on init, ip_vs_wrr_dest_changed on every
// add, delete and edit: the cursor goes back to the head and cw is kept
// when it still fits.
func (s *weightedRR) update(_ *env, ds []*Dest, c change) {
	s.cl = -1
	s.recompute(ds)
	if c.op == opInit || s.cw > s.mw || s.cw == 0 {
		s.cw = s.mw
	} else if s.di > 1 {
		s.cw = (s.cw/s.di)*s.di + 1
	}
}

// pick is ip_vs_wrr_schedule, including its give-up rules when every dest
// is overloaded.
func (s *weightedRR) pick(_ *env, ds []*Dest, _ Flow) *Dest {
	if s.mw == 0 {
		return nil
	}
	const none = -2
	last, stop := s.cl, none
	lastPass, restarted := false, false
	i := s.cl
	for {
		for i++; i < len(ds); i++ {
			d := ds[i]
			if !d.overloaded && int(d.Weight) >= s.cw {
				s.cl = i
				return d
			}
			if i == stop {
				return nil
			}
		}
		i = -1 // passed the head
		s.cw -= s.di
		if s.cw <= 0 {
			s.cw = s.mw
			if lastPass || last == -1 {
				return nil
			}
			restarted = true
		}
		lastPass = s.cw <= s.di
		if lastPass && restarted && last != -1 {
			restarted = false
			stop = last
		}
	}
}
