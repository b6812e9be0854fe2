package sched

// stateOnly is a scheduler whose picks depend on nothing but its own state
// and the dests' weights: not on the flow, the clock, a random source or
// the live counters (as long as no dest has a threshold, which would make
// OVERLOAD depend on them). Its picks repeat with a fixed period, so one
// cycle of them can be handed to the datapath and taken there in order.
type stateOnly interface {
	scheduler
	// clone returns an independent copy of the scheduler's state.
	clone() stateOnly
	// period is the length of one cycle of picks over ds (0: no pick).
	period(ds []*Dest) int
}

func (s *roundRobin) clone() stateOnly { c := *s; return &c }

// period: every usable dest once.
func (s *roundRobin) period(ds []*Dest) int {
	n := 0
	for _, d := range ds {
		if d.Weight > 0 {
			n++
		}
	}
	return n
}

func (s *weightedRR) clone() stateOnly { c := *s; return &c }

// period: in each round of current weight cw (mw, mw-di, ..., > 0) every
// dest whose weight is at least cw once.
func (s *weightedRR) period(ds []*Dest) int {
	if s.mw <= 0 || s.di <= 0 {
		return 0
	}
	n := 0
	for cw := s.mw; cw > 0; cw -= s.di {
		for _, d := range ds {
			if int(d.Weight) >= cw {
				n++
			}
		}
	}
	return n
}

// fixed says whether the pool's picks depend on its scheduler alone: no
// persistence templates, and no thresholds (OVERLOAD follows the live
// counters). Called with p.mu held.
func (p *Pool) fixed() bool { return p.cfg.Persistent <= 0 && p.nthr == 0 }

// Cycle returns the real servers of the pool's next picks, one full
// cycle: pick k (k = 0, 1, ...) from now on is cycle[k % len(cycle)], as
// long as the pool does not change. ok is false when the pool's picks are
// not a fixed cycle of at most max (another scheduler than rr or wrr,
// persistence, a dest with a threshold, no usable dest, or a longer
// cycle). The pool's own state is not advanced; see Advance.
func (p *Pool) Cycle(max int) (cycle []*Dest, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.s.(stateOnly)
	if !ok || !p.fixed() {
		return nil, false
	}
	n := s.period(p.dests)
	if n == 0 || n > max {
		return nil, false
	}
	c := s.clone()
	cycle = make([]*Dest, n)
	for k := range cycle {
		if cycle[k] = c.pick(&p.env, p.dests, Flow{}); cycle[k] == nil {
			return nil, false
		}
	}
	// The next cycle must repeat this one; anything else is a bug in
	// period, and the datapath must not get a wrong sequence.
	for k := range cycle {
		if c.pick(&p.env, p.dests, Flow{}) != cycle[k] {
			return nil, false
		}
	}
	return cycle, true
}

// Advance moves the pool's state on by n picks, as if it had scheduled n
// flows: the picks the datapath took from a Cycle. It does nothing for a
// pool that has no cycle.
func (p *Pool) Advance(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.s.(stateOnly)
	if !ok || !p.fixed() {
		return
	}
	// From the first pick on, the state itself repeats with the period
	// (the state before it may differ and still pick the same: rr's
	// cursor at the head or at the last dest), so keep at least one.
	if per := s.period(p.dests); per > 0 && n > per {
		n = (n-1)%per + 1
	}
	for range n {
		s.pick(&p.env, p.dests, Flow{})
	}
}
