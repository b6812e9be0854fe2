package sched

import (
	"net/netip"
	"slices"
	"time"
)

func init() {
	register("lblcr", func() scheduler { return &localityLCR{tab: map[netip.Addr]*lblcrEntry{}} })
}

// localityLCR is ip_vs_lblcr.c: like lblc but each destination address
// maps to a set of dests; the set grows with a wlc pick when its best
// member is unusable and sheds its most loaded member when it has not
// changed for lblcr_expiration.
type localityLCR struct {
	tab   map[netip.Addr]*lblcrEntry
	timer cacheTimer
}

type lblcrEntry struct {
	set     []*Dest // in insertion order (xvs order: first added first)
	lastmod time.Time
	lastuse time.Time
}

// setMin is ip_vs_dest_set_min: the weighted least-connection member that
// is usable; nil if none.
func (en *lblcrEntry) setMin() *Dest {
	for i, d := range en.set {
		if !d.usable() {
			continue
		}
		least, loh := d, d.overhead()
		for _, d := range en.set[i+1:] {
			if d.overloaded {
				continue
			}
			if doh := d.overhead(); heavier(loh, least.Weight, doh, d.Weight) {
				least, loh = d, doh
			}
		}
		return least
	}
	return nil
}

// setMax is ip_vs_dest_set_max: the weighted most-loaded member with
// weight > 0; nil if none.
func (en *lblcrEntry) setMax() *Dest {
	for i, d := range en.set {
		if d.Weight <= 0 {
			continue
		}
		most, moh := d, d.overhead()
		for _, d := range en.set[i+1:] {
			if doh := d.overhead(); d.Weight > 0 && heavier(doh, d.Weight, moh, most.Weight) {
				most, moh = d, doh
			}
		}
		return most
	}
	return nil
}

func (s *localityLCR) pick(e *env, ds []*Dest, f Flow) *Dest {
	now := e.now()
	key := f.VIP.Addr().Unmap()
	en := s.tab[key]
	if en == nil {
		d := pickWLC(ds, (*Dest).overhead)
		if d == nil {
			return nil
		}
		s.tab[key] = &lblcrEntry{set: []*Dest{d}, lastmod: now, lastuse: now}
		return d
	}
	en.lastuse = now
	d := en.setMin()
	if len(en.set) > 1 && now.After(en.lastmod.Add(e.cacheExpire)) {
		if m := en.setMax(); m != nil {
			en.set = slices.DeleteFunc(en.set, func(x *Dest) bool { return x == m })
			en.lastmod = now
		}
	}
	if d != nil && !lblcOverloaded(d, ds) {
		return d
	}
	d = pickWLC(ds, (*Dest).overhead)
	if d == nil {
		return nil
	}
	if !slices.Contains(en.set, d) {
		en.set = append(en.set, d)
		en.lastmod = now
	}
	return d
}

// update takes a deleted dest out of every set (the kernel keeps it in its
// trash, unusable).
func (s *localityLCR) update(e *env, _ []*Dest, c change) {
	switch c.op {
	case opInit:
		clear(s.tab)
		s.timer.start(e.now())
	case opDel:
		for _, en := range s.tab {
			en.set = slices.DeleteFunc(en.set, func(x *Dest) bool { return x == c.d })
		}
	}
}

func (s *localityLCR) expire(e *env, now time.Time) {
	s.timer.run(now, len(s.tab), func(full bool, goal int) int {
		return expireEntries(s.tab, now, full, e.cacheExpire, goal, func(en *lblcrEntry) time.Time { return en.lastuse })
	})
}
