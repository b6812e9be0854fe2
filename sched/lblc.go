package sched

import (
	"net/netip"
	"time"
)

func init() {
	register("lblc", func() scheduler { return &localityLC{tab: map[netip.Addr]*lblcEntry{}} })
}

// Timer constants shared by lblc and lblcr (ip_vs_lblc.c, ip_vs_lblcr.c).
const (
	cacheCheckInterval = 60 * time.Second // CHECK_EXPIRE_INTERVAL
	cacheFullEvery     = 30               // COUNT_FOR_FULL_EXPIRATION
	cacheMaxEntries    = 1024 * 16        // TAB_SIZE * 16
	cacheEntryTimeout  = 6 * time.Minute  // ENTRY_TIMEOUT
)

// localityLC is ip_vs_lblc.c: a cache from the packet's destination
// address to a dest, refilled with the wlc rule when the cached dest is
// gone, quiesced or "overloaded" by lblc's own rule.
type localityLC struct {
	tab   map[netip.Addr]*lblcEntry
	timer cacheTimer
}

type lblcEntry struct {
	dest    *Dest
	lastuse time.Time
}

// lblcOverloaded is is_overloaded of lblc/lblcr: more active connections
// than weight while some dest of the service is below half its weight.
// The threshold OVERLOAD flag plays no part.
func lblcOverloaded(d *Dest, ds []*Dest) bool {
	if d.active() <= uint64(d.Weight) {
		return false
	}
	for _, o := range ds {
		if a := o.active(); a < uint64(o.Weight) && a*2 < uint64(o.Weight) {
			return true
		}
	}
	return false
}

func (s *localityLC) pick(e *env, ds []*Dest, f Flow) *Dest {
	now := e.now()
	key := f.VIP.Addr().Unmap()
	en := s.tab[key]
	if en != nil {
		en.lastuse = now
		if d := en.dest; d.Weight > 0 && !lblcOverloaded(d, ds) {
			return d
		}
	}
	d := pickWLC(ds, (*Dest).overhead)
	if d == nil {
		return nil
	}
	switch {
	case en == nil:
		s.tab[key] = &lblcEntry{dest: d, lastuse: now}
	case en.dest != d:
		// The kernel replaces the entry; reusing it is the same thing.
		en.dest, en.lastuse = d, now
	}
	return d
}

// update forgets entries of a deleted dest (the kernel keeps them pointing
// at the dest in its trash, where they can never be used again).
func (s *localityLC) update(e *env, _ []*Dest, c change) {
	switch c.op {
	case opInit:
		clear(s.tab)
		s.timer.start(e.now())
	case opDel:
		for k, en := range s.tab {
			if en.dest == c.d {
				delete(s.tab, k)
			}
		}
	}
}

func (s *localityLC) expire(e *env, now time.Time) {
	s.timer.run(now, len(s.tab), func(full bool, goal int) int {
		return expireEntries(s.tab, now, full, e.cacheExpire, goal, func(en *lblcEntry) time.Time { return en.lastuse })
	})
}

// cacheTimer emulates the lblc/lblcr periodic timer: every 60 s; every
// 30th run a full scan drops entries unused for *_expiration, other runs
// trim only a table over 16384 entries of entries unused for 6 minutes.
type cacheTimer struct {
	last    time.Time // time of the last run; zero = not started
	counter int
}

func (t *cacheTimer) start(now time.Time) { t.last, t.counter = now, 1 }

// run runs the timer for every 60 s elapsed since the last run (at most a
// few laps: only the latest state matters). check(full, goal) does one run.
func (t *cacheTimer) run(now time.Time, entries int, check func(full bool, goal int) int) {
	if t.last.IsZero() {
		t.last, t.counter = now, 1
		return
	}
	ticks := int(now.Sub(t.last) / cacheCheckInterval)
	if ticks <= 0 {
		return
	}
	t.last = t.last.Add(time.Duration(ticks) * cacheCheckInterval)
	if ticks > 2*cacheFullEvery {
		ticks = 2 * cacheFullEvery
	}
	for range ticks {
		if t.counter%cacheFullEvery == 0 {
			entries -= check(true, 0)
			t.counter = 1
			continue
		}
		if entries <= cacheMaxEntries {
			t.counter++
			continue
		}
		goal := (entries - cacheMaxEntries) * 4 / 3
		goal = min(goal, cacheMaxEntries/2)
		entries -= check(false, goal)
	}
}

// expireEntries drops from tab the entries whose last use is older than
// expire (full scan) or than 6 minutes (partial, at most goal entries),
// returning how many went. The partial scan's order is Go map order, not
// the kernel's bucket rover.
func expireEntries[E any](tab map[netip.Addr]E, now time.Time, full bool, expire time.Duration, goal int, lastuse func(E) time.Time) int {
	n := 0
	for k, en := range tab {
		if full {
			if now.Before(lastuse(en).Add(expire)) {
				continue
			}
		} else if goal <= 0 || now.Before(lastuse(en).Add(cacheEntryTimeout)) {
			continue
		}
		delete(tab, k)
		n++
		goal--
	}
	return n
}
