package ctl

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"xvs/ipvsadm"
	"xvs/maps"
	"xvs/sched"
)

// datapath is what the table needs of the BPF maps (maps.Maps in xvsd, a
// fake in tests).
type datapath interface {
	PutService(k maps.SvcKey, id uint32) error
	DeleteService(k maps.SvcKey) error
	SetDest(id uint32, addr netip.Addr, available bool) error
	ResetDest(id uint32) error
	DestConns(id uint32) (active, inactive int64)
	InstallConn(c maps.Conn) error
	InstallConns(cs []maps.Conn, errs []error)
	ConnsExist(cs []maps.Conn, exist []bool) error
	LookupConn(proto uint8, client, vip netip.AddrPort) (maps.Conn, error)
	WalkConns(ctx context.Context, fn func(maps.Conn) bool) error
	DeleteConnIf(c maps.Conn, lastSeen time.Duration) (bool, error)
	ExpireConns(cands []maps.Conn) (removed int, err error)
	ServiceStats(id uint32) (maps.Stats, error)
	DestStats(id uint32) (maps.Stats, error)
	SetBudget(id uint32, global bool, rate, burst uint64) error
	PutRing(id uint32, r maps.Ring) error
	DeleteRing(id uint32) error
	RingTaken(id uint32) (taken uint32, ok bool, err error)
}

// Sizes of xvs_svcs and xvs_dests (XVS_MAX_SVCS, XVS_MAX_DESTS in
// bpf/xvs.h; a test checks them against the object).
const (
	maxServices = 4096
	maxDests    = 65536
)

type svcKey struct {
	proto uint8
	addr  netip.AddrPort
}

type service struct {
	cfg    ipvsadm.Service
	id     uint32
	pool   *sched.Pool
	dests  []*dest // order of addition
	byAddr map[netip.AddrPort]*dest
	zero   maps.Stats
	est    estimator
	ring   bool // the datapath schedules its first packets (syncRing)
}

func (s *service) add(d *dest) {
	s.dests = append(s.dests, d)
	if s.byAddr == nil {
		s.byAddr = make(map[netip.AddrPort]*dest)
	}
	s.byAddr[d.cfg.Addr] = d
}

func (s *service) remove(i int) {
	delete(s.byAddr, s.dests[i].cfg.Addr)
	s.dests = append(s.dests[:i], s.dests[i+1:]...)
}

func (s *service) find(addr netip.AddrPort) (int, *dest) {
	for i, d := range s.dests {
		if d.cfg.Addr == addr {
			return i, d
		}
	}
	return -1, nil
}

type dest struct {
	cfg   ipvsadm.Dest
	id    uint32
	svcID uint32
	zero  maps.Stats
	est   estimator
}

// trashKey names a deleted real server that connections still use. As in
// IPVS, re-adding it to the same service revives it with its counters.
type trashKey struct {
	svc  svcKey
	addr netip.AddrPort
}

// Table is the service table: every virtual service and real server, their
// schedulers, the timeouts. It is the source of truth; the datapath's maps
// are its projection. Safe for concurrent use.
type Table struct {
	mu       sync.RWMutex
	dp       datapath
	svcs     map[svcKey]*service
	trash    map[trashKey]*dest
	deadSvcs map[uint32]bool // ids of deleted services still used by trashed dests
	svcIDs   idPool
	destIDs  idPool
	timeouts ipvsadm.Timeouts
	total    estimator
	zero     maps.Stats
	wall     func() time.Time
	mono     func() time.Duration
	onChange func(*Snapshot)
	budget   Budget
	noRings  bool

	// expireMu serialises Expire; population is how many conns the
	// last one left (-1: not known yet), which picks its walk.
	expireMu   sync.Mutex
	population int
	sweepMax   int
}

// TableOptions configures a Table. Zero values are the defaults.
type TableOptions struct {
	Wall     func() time.Time     // scheduler clock (persistence); default time.Now
	Mono     func() time.Duration // datapath clock; default maps.Now
	OnChange func(*Snapshot)      // called with the new state after every change, under the table lock
	// Budget bounds each service's first packets (SYN floods): the
	// datapath drops what exceeds it before it reaches the daemon.
	Budget Budget
	// NoRings keeps every first packet on the punt path: the datapath
	// schedules none itself (see syncRing).
	NoRings bool
	// SweepMaxConns: expiry sweeps the tables in the kernel while they
	// hold at most this many conns, and walks them from the daemon above
	// (default DefaultSweepMaxConns; negative: always walk). A kernel
	// sweep costs a third of the walk's CPU, but holds its CPU for its
	// whole run.
	SweepMaxConns int
}

// DefaultSweepMaxConns keeps one in-kernel sweep under some 3 ms of CPU on
// a small VM (0.15 us per conn looked at; at most 1024 removals, about
// 1.5 ms more). On a kernel without preemption nothing else runs on that
// CPU meanwhile, a threaded NAPI poll included, whose ring of 256 frames
// fills in a millisecond at 250,000 packets/s: larger tables are walked
// by the daemon, whose syscalls are short.
const DefaultSweepMaxConns = 1 << 14

// Budget is a first-packet token bucket: Rate per second, bursts of Burst
// (Rate 0 = unlimited; Burst 0 = one second's worth).
type Budget struct {
	Rate, Burst uint64
}

// NewTable returns an empty table projecting into dp.
func NewTable(dp datapath, opt TableOptions) *Table {
	t := &Table{
		dp:       dp,
		svcs:     make(map[svcKey]*service),
		trash:    make(map[trashKey]*dest),
		deadSvcs: make(map[uint32]bool),
		svcIDs:   newIDPool(maxServices),
		destIDs:  newIDPool(maxDests),
		timeouts: DefaultTimeouts,
		wall:     opt.Wall,
		mono:     opt.Mono,
		onChange: opt.OnChange,
		budget:   opt.Budget,
		noRings:  opt.NoRings,

		population: -1,
		sweepMax:   opt.SweepMaxConns,
	}
	if t.sweepMax == 0 {
		t.sweepMax = DefaultSweepMaxConns
	}
	if t.wall == nil {
		t.wall = time.Now
	}
	if t.mono == nil {
		t.mono = maps.Now
	}
	return t
}

// LineError is a failure of one command of a batch; nothing was applied.
type LineError struct {
	Line int // 1-based position (or the rules file's line when known)
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Apply validates cmds as a whole and then applies them in order; when any
// command would fail, nothing is applied and the error names the command.
// lines gives each command's line number for messages (nil: 1, 2, ...).
func (t *Table) Apply(cmds []ipvsadm.Command, lines []int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	line := func(i int) int {
		if i < len(lines) {
			return lines[i]
		}
		return i + 1
	}
	sh := t.shadow()
	for i := range cmds {
		if err := sh.check(&cmds[i]); err != nil {
			if len(cmds) == 1 {
				return err
			}
			return &LineError{Line: line(i), Err: err}
		}
	}
	touched, err := t.catchUp(cmds)
	if err != nil {
		return err
	}
	for i := range cmds {
		if err := t.apply(&cmds[i]); err != nil {
			// Validation passed, so this is the system failing (a map
			// update); say so rather than pretend it was the input.
			return fmt.Errorf("apply command %d after validation: %w", line(i), err)
		}
	}
	for k := range touched {
		if svc := t.svcs[k]; svc != nil {
			if err := t.syncRing(svc); err != nil {
				return fmt.Errorf("apply after validation: %w", err)
			}
		}
	}
	if t.onChange != nil {
		t.onChange(t.snapshotLocked())
	}
	return nil
}

// Rings (bpf/lib/sched.h): a service whose pool's picks are a fixed
// cycle (sched.Pool.Cycle: rr and wrr without persistence or thresholds)
// has that cycle in the datapath, which schedules the service's first
// packets itself, without the punt device's round trip; so does one whose
// picks depend on a hash bucket alone (sched.Pool.HashTable: sh, dh and
// mh, same conditions), with the pick of each bucket. The pool stays
// the source of the sequence: before commands change such a service, its
// pool catches up with the picks the datapath took (catchUp), so that the
// change meets the scheduler where IPVS's would be; after them the ring
// is written anew from the pool (syncRing). A first packet the datapath
// hands to the daemon after all (the new pair full, a ring being
// replaced) is scheduled by the pool, which then runs one pick ahead of
// the ring until the ring is next written.

// catchUp advances the pools of the services cmds name, or of all for a
// flush, by the picks their rings gave out, takes their rings out of the
// datapath, and returns the services touched. Until syncRing writes the
// new rings, those services' first packets go to the daemon, which waits
// for the commands: a stale ring could name a real server the commands
// delete, whose dest id they may free and hand to another service.
func (t *Table) catchUp(cmds []ipvsadm.Command) (map[svcKey]bool, error) {
	touched := make(map[svcKey]bool)
	for i := range cmds {
		switch {
		case cmds[i].Kind == ipvsadm.CmdFlush:
			for k := range t.svcs {
				touched[k] = true
			}
		case cmds[i].Service != nil:
			touched[keyOf(cmds[i].Service)] = true
		}
	}
	for k := range touched {
		svc := t.svcs[k]
		if svc == nil || !svc.ring {
			continue
		}
		// A failed read leaves the pool where it was: the sequence
		// restarts from the ring's start, nothing worse.
		if n, ok, err := t.dp.RingTaken(svc.id); err == nil && ok {
			svc.pool.Advance(int(n))
		}
		if err := t.dp.DeleteRing(svc.id); err != nil {
			// Nothing is applied; put back the rings taken out
			// (from the pools, which are where the datapath was).
			for k := range touched {
				if s := t.svcs[k]; s != nil {
					_ = t.syncRing(s)
				}
			}
			return nil, fmt.Errorf("service %v: %w", svc.cfg.Addr, err)
		}
		svc.ring = false
	}
	return touched, nil
}

// syncRing writes svc's ring from its pool, or removes it when the pool's
// picks are not a fixed cycle (or rings are off).
func (t *Table) syncRing(svc *service) error {
	if r, ok := t.ringOf(svc); ok {
		if err := t.dp.PutRing(svc.id, r); err != nil {
			return fmt.Errorf("service %v: %w", svc.cfg.Addr, err)
		}
		svc.ring = true
		return nil
	}
	svc.ring = false
	if err := t.dp.DeleteRing(svc.id); err != nil {
		return fmt.Errorf("service %v: %w", svc.cfg.Addr, err)
	}
	return nil
}

// ringOf is svc's pool's cycle (rr, wrr) or hash table (sh, dh, mh) as
// datapath picks.
func (t *Table) ringOf(svc *service) (maps.Ring, bool) {
	if t.noRings {
		return maps.Ring{}, false
	}
	ent := func(d *sched.Dest) (maps.RingEnt, bool) {
		if d == nil {
			return maps.RingNone, true
		}
		nd := svc.byAddr[d.Addr]
		if nd == nil {
			return maps.RingEnt{}, false
		}
		port := d.Addr.Port()
		if port == 0 {
			port = svc.cfg.Addr.Port()
		}
		return maps.RingEnt{DestID: nd.id, Port: port}, true
	}
	var r maps.Ring
	var picks []*sched.Dest
	if cycle, ok := svc.pool.Cycle(maps.RingMax); ok {
		r.Kind, picks = maps.RingSeq, cycle
	} else if tab, ok := svc.pool.HashTable(); ok {
		r.Port, picks = tab.Port, tab.Dests
		switch tab.Kind {
		case sched.HashSource:
			r.Kind = maps.RingSrcHash
		case sched.HashDest:
			r.Kind = maps.RingDstHash
		case sched.HashMaglev:
			r.Kind = maps.RingMhHash
		default:
			return maps.Ring{}, false
		}
	} else {
		return maps.Ring{}, false
	}
	r.Ents = make([]maps.RingEnt, len(picks))
	for i, d := range picks {
		e, ok := ent(d)
		if !ok {
			return maps.Ring{}, false
		}
		r.Ents[i] = e
	}
	return r, true
}

func (t *Table) apply(c *ipvsadm.Command) error {
	switch c.Kind {
	case ipvsadm.CmdAddService:
		return t.addService(*c.Service)
	case ipvsadm.CmdEditService:
		return t.editService(*c.Service)
	case ipvsadm.CmdDelService:
		return t.delService(keyOf(c.Service))
	case ipvsadm.CmdFlush:
		for k := range t.svcs {
			if err := t.delService(k); err != nil {
				return err
			}
		}
		return nil
	case ipvsadm.CmdAddDest:
		return t.addDest(keyOf(c.Service), *c.Dest)
	case ipvsadm.CmdEditDest:
		return t.editDest(keyOf(c.Service), *c.Dest)
	case ipvsadm.CmdDelDest:
		return t.delDest(keyOf(c.Service), c.Dest.Addr)
	case ipvsadm.CmdSet:
		t.setTimeouts(c.Timeouts)
		return nil
	case ipvsadm.CmdZero:
		return t.zeroStats(c.Service)
	}
	return fmt.Errorf("command %v: %w", c.Kind, ErrNotSupported)
}

func keyOf(s *ipvsadm.Service) svcKey { return svcKey{proto: s.Proto, addr: s.Addr} }

func mapKey(k svcKey) maps.SvcKey { return maps.SvcKey{Proto: k.proto, Addr: k.addr} }

func schedConfig(s ipvsadm.Service, wall func() time.Time) sched.Config {
	c := sched.Config{Scheduler: s.Scheduler, Flags: s.Flags, Now: wall}
	if s.Persistent {
		c.Persistent = time.Duration(s.Timeout) * time.Second
		c.Netmask = s.Netmask
		c.AllPorts = s.Addr.Port() == 0
	}
	return c
}

func (t *Table) addService(s ipvsadm.Service) error {
	k := keyOf(&s)
	pool, err := newPool(s, t.wall)
	if err != nil {
		return fmt.Errorf("add service %v: %w", s.Addr, err)
	}
	id, ok := t.svcIDs.get()
	if !ok {
		return fmt.Errorf("add service %v: %w", s.Addr, ErrFull)
	}
	svc := &service{cfg: s, id: id, pool: pool}
	// Counters of a reused id start from what the datapath holds now.
	if st, err := t.dp.ServiceStats(id); err == nil {
		svc.zero = st
	}
	if err := t.dp.SetBudget(id, false, t.budget.Rate, t.budget.Burst); err != nil {
		t.svcIDs.put(id)
		return fmt.Errorf("add service %v: %w", s.Addr, err)
	}
	if err := t.dp.PutService(mapKey(k), id); err != nil {
		t.svcIDs.put(id)
		return fmt.Errorf("add service %v: %w", s.Addr, err)
	}
	t.svcs[k] = svc
	return nil
}

func newPool(s ipvsadm.Service, wall func() time.Time) (*sched.Pool, error) {
	pool, err := sched.NewPool(schedConfig(s, wall))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoScheduler, err)
	}
	return pool, nil
}

func (t *Table) editService(s ipvsadm.Service) error {
	svc := t.svcs[keyOf(&s)]
	if svc == nil {
		return ErrNoService
	}
	if err := svc.pool.SetConfig(schedConfig(s, t.wall)); err != nil {
		return fmt.Errorf("edit service %v: %w", s.Addr, ErrNoScheduler)
	}
	svc.cfg = s
	return nil
}

func (t *Table) delService(k svcKey) error {
	svc := t.svcs[k]
	if svc == nil {
		return ErrNoService
	}
	if err := t.dp.DeleteService(mapKey(k)); err != nil {
		return fmt.Errorf("delete service %v: %w", k.addr, err)
	}
	if err := t.dp.DeleteRing(svc.id); err != nil {
		return fmt.Errorf("delete service %v: %w", k.addr, err)
	}
	for _, d := range svc.dests {
		if err := t.trashDest(k, d); err != nil {
			return err
		}
	}
	delete(t.svcs, k)
	t.deadSvcs[svc.id] = true
	t.reapServiceIDs()
	return nil
}

func (t *Table) addDest(k svcKey, d ipvsadm.Dest) error {
	svc := t.svcs[k]
	if svc == nil {
		return ErrServiceNotDefined
	}
	if d.Method == ipvsadm.MethodUnset {
		d.Method = ipvsadm.MethodMasq
	}
	nd := t.trash[trashKey{svc: k, addr: d.Addr}]
	if nd != nil && nd.svcID == svc.id {
		delete(t.trash, trashKey{svc: k, addr: d.Addr})
		nd.cfg = d
	} else {
		id, ok := t.destIDs.get()
		if !ok {
			return fmt.Errorf("add destination %v: %w", d.Addr, ErrFull)
		}
		if err := t.dp.ResetDest(id); err != nil {
			t.destIDs.put(id)
			return fmt.Errorf("add destination %v: %w", d.Addr, err)
		}
		nd = &dest{cfg: d, id: id, svcID: svc.id}
	}
	if _, err := svc.pool.AddDest(destConfig(d), counters{dp: t.dp, id: nd.id}); err != nil {
		return fmt.Errorf("add destination %v: %w", d.Addr, err)
	}
	if err := t.dp.SetDest(nd.id, d.Addr.Addr(), true); err != nil {
		return fmt.Errorf("add destination %v: %w", d.Addr, err)
	}
	svc.add(nd)
	return nil
}

func (t *Table) editDest(k svcKey, d ipvsadm.Dest) error {
	svc := t.svcs[k]
	if svc == nil {
		return ErrServiceNotDefined
	}
	_, cur := svc.find(d.Addr)
	if cur == nil {
		return ErrNoDest
	}
	if d.Method == ipvsadm.MethodUnset {
		d.Method = cur.cfg.Method
	}
	if err := svc.pool.EditDest(destConfig(d)); err != nil {
		return fmt.Errorf("edit destination %v: %w", d.Addr, err)
	}
	cur.cfg = d
	return nil
}

func (t *Table) delDest(k svcKey, addr netip.AddrPort) error {
	svc := t.svcs[k]
	if svc == nil {
		return ErrServiceNotDefined
	}
	i, d := svc.find(addr)
	if d == nil {
		return ErrNoDest
	}
	if err := svc.pool.DelDest(addr); err != nil {
		return fmt.Errorf("delete destination %v: %w", addr, err)
	}
	svc.remove(i)
	return t.trashDest(k, d)
}

// trashDest parks a deleted real server until its last connection is gone:
// its remaining connections' packets are dropped (IPVS's default
// expire_nodest_conn=0) and its id stays taken.
func (t *Table) trashDest(k svcKey, d *dest) error {
	if err := t.dp.SetDest(d.id, d.cfg.Addr.Addr(), false); err != nil {
		return fmt.Errorf("delete destination %v: %w", d.cfg.Addr, err)
	}
	t.trash[trashKey{svc: k, addr: d.cfg.Addr}] = d
	t.reapTrash()
	return nil
}

// reapTrash frees deleted real servers that no connection uses any more.
func (t *Table) reapTrash() {
	for k, d := range t.trash {
		if a, i := t.dp.DestConns(d.id); a == 0 && i == 0 {
			delete(t.trash, k)
			t.destIDs.put(d.id)
		}
	}
	t.reapServiceIDs()
}

func (t *Table) reapServiceIDs() {
	for id := range t.deadSvcs {
		used := false
		for _, d := range t.trash {
			if d.svcID == id {
				used = true
				break
			}
		}
		if !used {
			delete(t.deadSvcs, id)
			t.svcIDs.put(id)
		}
	}
}

func destConfig(d ipvsadm.Dest) sched.DestConfig {
	return sched.DestConfig{Addr: d.Addr, Weight: d.Weight, UThreshold: d.UThreshold, LThreshold: d.LThreshold}
}

// counters reads a real server's ActiveConn/InActConn from the datapath for
// the schedulers.
type counters struct {
	dp datapath
	id uint32
}

func (c counters) Active() int64   { a, _ := c.dp.DestConns(c.id); return a }
func (c counters) Inactive() int64 { _, i := c.dp.DestConns(c.id); return i }

// idPool hands out the smallest free id below max.
type idPool struct {
	used []bool
	n    int // ids in use
}

func newIDPool(max int) idPool { return idPool{used: make([]bool, max)} }

func (p *idPool) get() (uint32, bool) {
	for i, u := range p.used {
		if !u {
			p.used[i] = true
			p.n++
			return uint32(i), true
		}
	}
	return 0, false
}

func (p *idPool) take(id uint32) bool {
	if int(id) >= len(p.used) || p.used[id] {
		return false
	}
	p.used[id] = true
	p.n++
	return true
}

func (p *idPool) put(id uint32) {
	if int(id) < len(p.used) && p.used[id] {
		p.used[id] = false
		p.n--
	}
}

func (p *idPool) count() int { return p.n }
