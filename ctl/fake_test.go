package ctl

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"xvs/maps"
)

// fakeDP is an in-memory datapath: what the BPF maps would hold.
type fakeDP struct {
	mu    sync.Mutex
	svcs  map[maps.SvcKey]uint32
	dests map[uint32]*fakeDest
	conns map[connID]maps.Conn
	svcSt map[uint32]maps.Stats
	dstSt map[uint32]maps.Stats
}

type fakeDest struct {
	active, inactive int64
	available        bool
}

type connID struct {
	proto       uint8
	client, vip netip.AddrPort
}

func newFakeDP() *fakeDP {
	return &fakeDP{
		svcs:  make(map[maps.SvcKey]uint32),
		dests: make(map[uint32]*fakeDest),
		conns: make(map[connID]maps.Conn),
		svcSt: make(map[uint32]maps.Stats),
		dstSt: make(map[uint32]maps.Stats),
	}
}

func (f *fakeDP) dest(id uint32) *fakeDest {
	d := f.dests[id]
	if d == nil {
		d = &fakeDest{}
		f.dests[id] = d
	}
	return d
}

func (f *fakeDP) PutService(k maps.SvcKey, id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.svcs[k] = id
	return nil
}

func (f *fakeDP) DeleteService(k maps.SvcKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.svcs, k)
	return nil
}

func (f *fakeDP) SetDest(id uint32, available bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dest(id).available = available
	return nil
}

func (f *fakeDP) ResetDest(id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dests[id] = &fakeDest{}
	delete(f.dstSt, id)
	return nil
}

func (f *fakeDP) DestConns(id uint32) (int64, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.dest(id)
	return d.active, d.inactive
}

func (f *fakeDP) InstallConn(c maps.Conn) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := connID{c.Proto, c.Client, c.VIP}
	if _, ok := f.conns[id]; ok {
		return maps.ErrConnExists
	}
	f.conns[id] = c
	f.dest(c.DestID).inactive++
	return nil
}

func (f *fakeDP) LookupConn(proto uint8, client, vip netip.AddrPort) (maps.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.conns[connID{proto, client, vip}]
	if !ok {
		return maps.Conn{}, maps.ErrNotFound
	}
	return c, nil
}

func (f *fakeDP) WalkConns(ctx context.Context, fn func(maps.Conn) bool) error {
	f.mu.Lock()
	cs := make([]maps.Conn, 0, len(f.conns))
	for _, c := range f.conns {
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

func (f *fakeDP) DeleteConnIf(c maps.Conn, lastSeen time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := connID{c.Proto, c.Client, c.VIP}
	cur, ok := f.conns[id]
	if !ok || cur.LastSeen != lastSeen {
		return false, nil
	}
	delete(f.conns, id)
	if active(cur) {
		f.dest(cur.DestID).active--
	} else {
		f.dest(cur.DestID).inactive--
	}
	return true, nil
}

func (f *fakeDP) ServiceStats(id uint32) (maps.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.svcSt[id], nil
}

func (f *fakeDP) DestStats(id uint32) (maps.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dstSt[id], nil
}

// establish plays the datapath's part for a conn: first packet counted,
// state ESTABLISHED (active).
func (f *fakeDP) establish(proto uint8, client, vip netip.AddrPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := connID{proto, client, vip}
	c := f.conns[id]
	c.Flags = 0
	if proto == protoTCP && !active(c) {
		c.State = 1
		f.dest(c.DestID).inactive--
		f.dest(c.DestID).active++
	}
	f.conns[id] = c
	st := f.svcSt[c.SvcID]
	st.Conns++
	f.svcSt[c.SvcID] = st
	dt := f.dstSt[c.DestID]
	dt.Conns++
	f.dstSt[c.DestID] = dt
}

func active(c maps.Conn) bool {
	return c.Proto == protoTCP && (c.State == 1 || c.State == 2 || c.State == 3 || c.State == 10)
}
