// Package ctltest provides an in-memory datapath for tests of the control
// plane and its clients: what the BPF maps would hold, without root.
package ctltest

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"xvs/maps"
)

// Datapath is an in-memory stand-in for the BPF maps. Safe for concurrent use.
type Datapath struct {
	mu    sync.Mutex
	Svcs  map[maps.SvcKey]uint32
	Dests map[uint32]*DestState
	Conns map[connID]maps.Conn
	svcSt map[uint32]maps.Stats
	dstSt map[uint32]maps.Stats
	// Budgets holds the first-packet budgets by service id; Global the
	// global one.
	Budgets map[uint32][2]uint64
	Global  [2]uint64
	// Rings holds the datapath scheduling rings by service id.
	Rings map[uint32]*Ring
	// Ops logs the ring and real-server writes in order ("put-ring 1",
	// "delete-ring 1", "set-dest 3 false"), for tests of their order.
	Ops []string
}

// Ring is a service's datapath scheduling ring and how many picks the
// datapath took from it (TakeRing).
type Ring struct {
	maps.Ring
	Taken uint32
}

// DestState is a real server's entry of xvs_dests.
type DestState struct {
	Active, Inactive int64
	Available        bool
	Addr             netip.Addr // the address conns to it are rewritten to
}

type connID struct {
	proto       uint8
	client, vip netip.AddrPort
}

// New returns an empty datapath.
func New() *Datapath {
	return &Datapath{
		Svcs:    make(map[maps.SvcKey]uint32),
		Dests:   make(map[uint32]*DestState),
		Conns:   make(map[connID]maps.Conn),
		svcSt:   make(map[uint32]maps.Stats),
		dstSt:   make(map[uint32]maps.Stats),
		Budgets: make(map[uint32][2]uint64),
		Rings:   make(map[uint32]*Ring),
	}
}

func (f *Datapath) dest(id uint32) *DestState {
	d := f.Dests[id]
	if d == nil {
		d = &DestState{}
		f.Dests[id] = d
	}
	return d
}

func (f *Datapath) PutService(k maps.SvcKey, id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Svcs[k] = id
	return nil
}

func (f *Datapath) DeleteService(k maps.SvcKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.Svcs, k)
	return nil
}

func (f *Datapath) SetDest(id uint32, addr netip.Addr, available bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dest(id)
	d.Available = available
	d.Addr = addr.Unmap()
	f.Ops = append(f.Ops, fmt.Sprintf("set-dest %d %v", id, available))
	return nil
}

func (f *Datapath) ResetDest(id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Dests[id] = &DestState{}
	delete(f.dstSt, id)
	return nil
}

func (f *Datapath) DestConns(id uint32) (int64, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dest(id)
	return d.Active, d.Inactive
}

func (f *Datapath) InstallConn(c maps.Conn) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := connID{c.Proto, c.Client, c.VIP}
	// As maps.Maps: the conn's real server must be the address its dest
	// id has (SetDest), which is what the datapath rewrites to.
	if have := f.dest(c.DestID).Addr; have != c.Dest.Addr().Unmap() {
		return fmt.Errorf("install conn: real server %s: dest id %d is %s", c.Dest.Addr(), c.DestID, have)
	}
	if _, ok := f.Conns[id]; ok {
		return maps.ErrConnExists
	}
	f.Conns[id] = c
	// Counted by its state, as maps.Maps.InstallConn does.
	if active(c) {
		f.dest(c.DestID).Active++
	} else {
		f.dest(c.DestID).Inactive++
	}
	return nil
}

func (f *Datapath) LookupConn(proto uint8, client, vip netip.AddrPort) (maps.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.Conns[connID{proto, client, vip}]
	if !ok {
		return maps.Conn{}, maps.ErrNotFound
	}
	return c, nil
}

func (f *Datapath) WalkConns(ctx context.Context, fn func(maps.Conn) bool) error {
	f.mu.Lock()
	cs := make([]maps.Conn, 0, len(f.Conns))
	for _, c := range f.Conns {
		cs = append(cs, c)
	}
	f.mu.Unlock()
	for _, c := range cs {
		if !fn(c) {
			break
		}
	}
	return nil
}

func (f *Datapath) DeleteConnIf(c maps.Conn, lastSeen time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := connID{c.Proto, c.Client, c.VIP}
	cur, ok := f.Conns[id]
	if !ok || cur.LastSeen != lastSeen {
		return false, nil
	}
	delete(f.Conns, id)
	if active(cur) {
		f.dest(cur.DestID).Active--
	} else {
		f.dest(cur.DestID).Inactive--
	}
	return true, nil
}

// ExpireConns removes each conn of cands whose LastSeen is still the
// stored one, as DeleteConnIf, and reports how many it removed.
func (f *Datapath) ExpireConns(cands []maps.Conn) (int, error) {
	n := 0
	for _, c := range cands {
		ok, err := f.DeleteConnIf(c, c.LastSeen)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

func (f *Datapath) ServiceStats(id uint32) (maps.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.svcSt[id], nil
}

func (f *Datapath) DestStats(id uint32) (maps.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dstSt[id], nil
}

// Establish plays the datapath's part for a conn: its first packet
// counted, a TCP conn moved to ESTABLISHED (active).
func (f *Datapath) Establish(proto uint8, client, vip netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := connID{proto, client, vip}
	c := f.Conns[id]
	c.Flags = 0
	if proto == protoTCP && !active(c) {
		c.State = 1
		f.dest(c.DestID).Inactive--
		f.dest(c.DestID).Active++
	}
	f.Conns[id] = c
	st := f.svcSt[c.SvcID]
	st.Conns++
	f.svcSt[c.SvcID] = st
	dt := f.dstSt[c.DestID]
	dt.Conns++
	f.dstSt[c.DestID] = dt
}

func active(c maps.Conn) bool { return c.Proto == protoTCP && maps.Active(c.State) }

const protoTCP = 6

// SetState sets a conn's TCP state as the datapath would, moving its real
// server's counts between active and inactive.
func (f *Datapath) SetState(proto uint8, client, vip netip.AddrPort, state uint8) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := connID{proto, client, vip}
	c := f.Conns[id]
	was := active(c)
	c.State = state
	c.Flags = 0
	if now := active(c); now != was {
		d := f.dest(c.DestID)
		if now {
			d.Active++
			d.Inactive--
		} else {
			d.Active--
			d.Inactive++
		}
	}
	f.Conns[id] = c
}

// SetBudget records a first-packet budget.
func (f *Datapath) SetBudget(id uint32, global bool, rate, burst uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if global {
		f.Global = [2]uint64{rate, burst}
	} else {
		f.Budgets[id] = [2]uint64{rate, burst}
	}
	return nil
}

// PutRing records a service's ring, with no pick taken.
func (f *Datapath) PutRing(id uint32, r maps.Ring) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(r.Ents) == 0 || len(r.Ents) > maps.RingMax {
		return fmt.Errorf("put ring of service %d: %d picks", id, len(r.Ents))
	}
	r.Ents = append([]maps.RingEnt(nil), r.Ents...)
	f.Rings[id] = &Ring{Ring: r}
	f.Ops = append(f.Ops, fmt.Sprintf("put-ring %d", id))
	return nil
}

// DeleteRing drops a service's ring.
func (f *Datapath) DeleteRing(id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.Rings, id)
	f.Ops = append(f.Ops, fmt.Sprintf("delete-ring %d", id))
	return nil
}

// RingTaken reports the picks taken from a service's ring.
func (f *Datapath) RingTaken(id uint32) (uint32, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.Rings[id]
	if r == nil {
		return 0, false, nil
	}
	return r.Taken, true, nil
}

// TakeRing takes the next pick of a service's sequence ring, as the
// datapath does for a first packet.
func (f *Datapath) TakeRing(id uint32) (maps.RingEnt, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.Rings[id]
	if r == nil || r.Kind != maps.RingSeq {
		return maps.RingEnt{}, false
	}
	e := r.Ents[int(r.Taken)%len(r.Ents)]
	r.Taken++
	return e, true
}

// InstallConns installs each conn as InstallConn does.
func (f *Datapath) InstallConns(cs []maps.Conn, errs []error) {
	for i, c := range cs {
		errs[i] = f.InstallConn(c)
	}
}

// ConnsExist says for each conn whether its client-side key is installed.
func (f *Datapath) ConnsExist(cs []maps.Conn, exist []bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range cs {
		_, exist[i] = f.Conns[connID{c.Proto, c.Client, c.VIP}]
	}
	return nil
}
