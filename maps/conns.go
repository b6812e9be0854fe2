package maps

// Connections live in two pairs of tables (bpf/maps.h, docs/datapath.md):
//
//   - the new pair, xvs_conns_new/xvs_rconns_new: a plain hash that
//     InstallConn fills, and the datapath for services it schedules itself
//     (bpf/lib/sched.h). A conn starts here (state NONE, or any state
//     reached without ESTABLISHED) and nothing evicts it behind our back,
//     so the real servers' counters stay exact. When it is full,
//     InstallConn makes room by removing the oldest half-open conn itself,
//     counters included (makeRoom).
//   - the main pair, xvs_conns/xvs_rconns: the LRU tables of established
//     conns. The datapath moves a conn here when it is established (TCP
//     ESTABLISHED, UDP: the real server's first reply); a flood of first
//     packets never reaches it.
//
// A conn is in exactly one pair, except for the instant of its move (the
// datapath inserts into the main pair, then deletes from the new one).
// Every reader here looks at the main pair first, then the new one.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"xvs/bpf"
)

// maxRoomTries bounds how often one InstallConn makes room in a full new
// pair when other installers keep taking the freed slot.
const maxRoomTries = 4

// established reports whether a conn in state belongs in the main pair
// from the start (a conn taken over from a sync master, say): TCP states
// only reached through ESTABLISHED. Everything else, UDP included, starts
// in the new pair.
func established(proto, state uint8) bool {
	if proto != unix.IPPROTO_TCP {
		return false
	}
	switch bpf.XvsTcpState(state) {
	case bpf.XvsTcpStateSTATE_ESTABLISHED, bpf.XvsTcpStateSTATE_FIN_WAIT,
		bpf.XvsTcpStateSTATE_CLOSE_WAIT, bpf.XvsTcpStateSTATE_LAST_ACK:
		return true
	}
	return false
}

// InstallConn installs a conn under both keys and counts it in its real
// server's class (InActConn for a new conn in state NONE). A conn that is
// not established (see the file comment) goes into the new pair, an
// established one (sync) into the main pair.
//
// The server-side key goes first, so that a reply can never miss a conn
// the datapath already forwards; the client-side key is added only if
// absent from both pairs. When it is present someone else won:
// ErrConnExists, and the winner's entries stay.
//
// A server-side key already used by another conn (same real server and
// client port reached through two virtual services) is overwritten, in
// both pairs, the way a newer conn shadows an older one in IPVS's
// out-lookup.
//
// When the new pair is full, the oldest half-open conn this process
// installed (after a restart: the one idle longest) is removed to make
// room, with its counter; ErrConnTableFull if no room could be made
// (the pair is empty of candidates, or other installers took the freed
// slots maxRoomTries times in a row).
//
// A zero LastSeen is stamped with Now(), so that a conn is not idle
// before its first packet has been forwarded.
func (m *Maps) InstallConn(c Conn) error {
	if c.LastSeen == 0 {
		c.LastSeen = Now()
	}
	ck, sk, v, err := m.connToBPF(c)
	if err != nil {
		return fmt.Errorf("install conn: %w", err)
	}
	if established(c.Proto, c.State) {
		err = m.installMain(ck, sk, v)
	} else {
		err = m.installNew(ck, sk, v)
	}
	if err != nil {
		return fmt.Errorf("install conn %s -> %s: %w", c.Client, c.VIP, err)
	}
	m.addDestConns(c.DestID, c.State, 1)
	return nil
}

// installMain installs into the main pair unless the new pair has ck.
func (m *Maps) installMain(ck, sk bpf.XvsConnKey, v bpf.XvsConn) error {
	var cur bpf.XvsConn
	if err := m.nconns.Lookup(&ck, &cur); err == nil {
		return ErrConnExists
	}
	return m.installIn(m.conns, m.rconns, ck, sk, v)
}

// installNew installs into the new pair unless the main pair has ck,
// making room when it is full.
func (m *Maps) installNew(ck, sk bpf.XvsConnKey, v bpf.XvsConn) error {
	var cur bpf.XvsConn
	if err := m.conns.Lookup(&ck, &cur); err == nil {
		return ErrConnExists
	}
	// A conn that will shadow an older one's server-side key says so,
	// so that its removal drops that key (CONN_F_SHADOW).
	var shadowed bpf.XvsRconn
	if m.rconns.Lookup(&sk, &shadowed) == nil {
		v.Flags |= uint8(bpf.XvsConnFlagsCONN_F_SHADOW)
	}
	for try := 0; ; try++ {
		err := m.installIn(m.nconns, m.nrconns, ck, sk, v)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.E2BIG) {
			return err
		}
		if try == maxRoomTries || !m.makeRoom() {
			return ErrConnTableFull
		}
	}
	m.halfOpen.push(ck)
	// xvs_rconns is looked up first: a key there of an older conn would
	// shadow ours. Point it at ours; the datapath then misses in the main
	// pair and finds ours in the new one.
	// Only if it is there: an update of an LRU map takes a free node
	// first, even one it refuses, and with none left that evicts an
	// established conn's key (xvs_install writes in place instead).
	// A copy in the flow cache may answer for the older conn's replies:
	// void it.
	if m.rconns.Lookup(&sk, &shadowed) == nil {
		rv := rconnOf(ck, v)
		_ = m.rconns.Update(&sk, &rv, ebpf.UpdateExist)
		m.voidFlows()
	}
	return nil
}

// installIn is the two-key install into one pair.
func (m *Maps) installIn(conns, rconns *ebpf.Map, ck, sk bpf.XvsConnKey, v bpf.XvsConn) error {
	rv := rconnOf(ck, v)
	if err := rconns.Update(&sk, &rv, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("server side: %w", err)
	}
	err := conns.Update(&ck, &v, ebpf.UpdateNoExist)
	if errors.Is(err, ebpf.ErrKeyExist) {
		// Give the server-side entry back to the winner if it uses the
		// same one.
		var cur bpf.XvsConn
		if conns.Lookup(&ck, &cur) == nil {
			if csk, ok := m.serverKeyOf(ck, cur); ok && csk == sk {
				if wv := rconnOf(ck, cur); wv != rv {
					_ = rconns.Update(&sk, &wv, ebpf.UpdateExist)
				}
				return ErrConnExists
			}
		}
		deleteServerKey(rconns, sk, rv)
		return ErrConnExists
	}
	if err != nil {
		deleteServerKey(rconns, sk, rv)
		return err
	}
	return nil
}

// deleteServerKey removes sk from rconns if it still names the conn rv
// names (another conn may have taken the key over). Errors are not
// interesting: a missing key is what we want.
func deleteServerKey(rconns *ebpf.Map, sk bpf.XvsConnKey, rv bpf.XvsRconn) {
	var cur bpf.XvsRconn
	if err := rconns.Lookup(&sk, &cur); err != nil || cur != rv {
		return
	}
	_ = rconns.Delete(&sk)
}

// dropServerKey removes the server-side key of the stored conn (ck, v)
// from rconns if it still names that conn.
func (m *Maps) dropServerKey(rconns *ebpf.Map, ck bpf.XvsConnKey, v bpf.XvsConn) {
	if sk, ok := m.serverKeyOf(ck, v); ok {
		deleteServerKey(rconns, sk, rconnOf(ck, v))
	}
}

// sameConn reports whether two stored values are the same conn (the
// datapath's copy of it in the other pair): same service and real server
// (the dest id names its address).
func sameConn(a, b bpf.XvsConn) bool {
	return a.SvcId == b.SvcId && a.DestId == b.DestId && a.Dport == b.Dport
}

// LookupConn finds a conn by its client-side tuple in either pair;
// ErrNotFound if absent.
func (m *Maps) LookupConn(proto uint8, client, vip netip.AddrPort) (Conn, error) {
	ck, err := connKeyToBPF(proto, client, vip)
	if err != nil {
		return Conn{}, fmt.Errorf("lookup conn: %w", err)
	}
	var v bpf.XvsConn
	err = m.conns.Lookup(&ck, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		err = m.nconns.Lookup(&ck, &v)
	}
	if err != nil {
		return Conn{}, fmt.Errorf("lookup conn %s -> %s: %w", client, vip, notFound(err))
	}
	return m.connFromBPF(ck, v)
}

// walkBatch is the number of conns read per BPF_MAP_LOOKUP_BATCH call.
const walkBatch = 256

// WalkConns calls fn for every conn until fn returns false or ctx is done:
// the main pair, then the new pair. It reads the maps in batches; a map
// that changes meanwhile may show a conn twice or not at all, as any hash
// map walk. A conn the datapath moves from the new pair to the main one
// during the walk is seen once or not at all (never twice): it was in the
// new pair while the main one was read and left it before its turn. Not
// seeing it is harmless to expiry: it has just seen a packet.
func (m *Maps) WalkConns(ctx context.Context, fn func(Conn) bool) error {
	for _, mp := range []*ebpf.Map{m.conns, m.nconns} {
		more, err := m.walkMap(ctx, mp, fn)
		if err != nil {
			return fmt.Errorf("walk conns: %w", err)
		}
		if !more {
			return nil
		}
	}
	return nil
}

// walkMap walks one client-side table; it reports false when fn stopped
// the walk.
func (m *Maps) walkMap(ctx context.Context, mp *ebpf.Map, fn func(Conn) bool) (bool, error) {
	n := walkBatch
	keys := make([]bpf.XvsConnKey, n)
	vals := make([]bpf.XvsConn, n)
	var cursor ebpf.MapBatchCursor
	first := true
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		got, err := mp.BatchLookup(&cursor, keys, vals, nil)
		done := errors.Is(err, ebpf.ErrKeyNotExist)
		switch {
		case err == nil || done:
		case first && errors.Is(err, ebpf.ErrNotSupported):
			return m.iterateMap(ctx, mp, fn)
		case errors.Is(err, unix.ENOSPC) && n < 1<<16:
			// A hash bucket holds more entries than a batch: grow and
			// retry from the same cursor.
			n *= 4
			keys = make([]bpf.XvsConnKey, n)
			vals = make([]bpf.XvsConn, n)
			continue
		default:
			return false, err
		}
		first = false
		for i := range got {
			c, err := m.connFromBPF(keys[i], vals[i])
			if err != nil {
				continue // a corrupt key is not the walker's problem
			}
			if !fn(c) {
				return false, nil
			}
		}
		if done {
			return true, nil
		}
	}
}

// iterateConns is WalkConns for kernels without batch lookups.
func (m *Maps) iterateConns(ctx context.Context, fn func(Conn) bool) error {
	for _, mp := range []*ebpf.Map{m.conns, m.nconns} {
		more, err := m.iterateMap(ctx, mp, fn)
		if err != nil {
			return fmt.Errorf("walk conns: %w", err)
		}
		if !more {
			return nil
		}
	}
	return nil
}

// iterateMap is walkMap one key at a time.
func (m *Maps) iterateMap(ctx context.Context, mp *ebpf.Map, fn func(Conn) bool) (bool, error) {
	var (
		k bpf.XvsConnKey
		v bpf.XvsConn
	)
	it := mp.Iterate()
	for it.Next(&k, &v) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		c, err := m.connFromBPF(k, v)
		if err != nil {
			continue
		}
		if !fn(c) {
			return false, nil
		}
	}
	if err := it.Err(); err != nil {
		return false, err
	}
	return true, nil
}

// DeleteConn removes a conn under both keys, from whichever pair holds
// it, and takes it out of its real server's counters, by the class of the
// state that was actually removed (the lookup and the delete are one
// atomic operation). It returns the removed conn, or ErrNotFound. A conn
// that the datapath moves to the main pair while it is being removed from
// the new one is removed from the main pair too, and counted out once.
func (m *Maps) DeleteConn(proto uint8, client, vip netip.AddrPort) (Conn, error) {
	ck, err := connKeyToBPF(proto, client, vip)
	if err != nil {
		return Conn{}, fmt.Errorf("delete conn: %w", err)
	}
	v, err := m.removeMain(ck)
	if errors.Is(err, ErrNotFound) {
		var moved bool
		v, moved, err = m.removeNew(ck)
		if err == nil && moved {
			v, err = m.removeMain(ck)
		}
	}
	if err != nil {
		return Conn{}, fmt.Errorf("delete conn %s -> %s: %w", client, vip, err)
	}
	return m.connFromBPF(ck, v)
}

// removeMain removes ck from the main pair and counts it out. A copy of
// the same conn still in the new pair (a move in progress, or one that
// failed half-way) goes too, uncounted: it is the same conn. A copy of
// the conn in the datapath's flow cache is voided.
func (m *Maps) removeMain(ck bpf.XvsConnKey) (bpf.XvsConn, error) {
	var v bpf.XvsConn
	if err := m.conns.LookupAndDelete(&ck, &v); err != nil {
		return v, notFound(err)
	}
	m.voidFlowsOf(v)
	m.dropServerKey(m.rconns, ck, v)
	var cur bpf.XvsConn
	if m.nconns.Lookup(&ck, &cur) == nil && sameConn(cur, v) {
		_ = m.nconns.Delete(&ck)
	}
	m.dropServerKey(m.nrconns, ck, v)
	m.addDestConns(v.DestId, v.State, -1)
	return v, nil
}

// removeNew removes ck from the new pair. If the main pair now holds the
// same conn, the datapath moved it there after we read it: it lives on,
// still counted, and removeNew reports moved (the caller decides). Else
// the conn is counted out.
func (m *Maps) removeNew(ck bpf.XvsConnKey) (v bpf.XvsConn, moved bool, err error) {
	if err := m.nconns.LookupAndDelete(&ck, &v); err != nil {
		return v, false, notFound(err)
	}
	m.voidFlowsOf(v) // a UDP conn the real server never answered has copies too
	m.dropServerKey(m.nrconns, ck, v)
	var cur bpf.XvsConn
	if m.conns.Lookup(&ck, &cur) == nil && sameConn(cur, v) {
		return v, true, nil
	}
	m.dropServerKey(m.rconns, ck, v) // the shadowing entry installNew made
	m.addDestConns(v.DestId, v.State, -1)
	return v, false, nil
}

// DeleteConnIf is the expiry helper: it removes c only if its stored
// last_seen still equals lastSeen, i.e. no packet refreshed it since the
// caller decided it was idle. It reports whether it removed the conn; a
// conn that is gone already is (false, nil), and so is one the datapath
// moved to the main pair meanwhile (a packet established it).
//
// The check and the delete are two syscalls. A packet that refreshes the
// conn between them (a window of about a microsecond, at the very moment
// the conn has been idle for its whole timeout) still sees it removed; it
// is not reinstalled, and the flow's next packet is treated as a new one,
// just as IPVS's expiry timer races with a late packet.
func (m *Maps) DeleteConnIf(c Conn, lastSeen time.Duration) (bool, error) {
	ck, err := connKeyToBPF(c.Proto, c.Client, c.VIP)
	if err != nil {
		return false, fmt.Errorf("expire conn: %w", err)
	}
	fresh := false
	var cur bpf.XvsConn
	err = m.conns.Lookup(&ck, &cur)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		fresh = true
		err = m.nconns.Lookup(&ck, &cur)
	}
	if err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("expire conn %s -> %s: %w", c.Client, c.VIP, err)
	}
	if cur.LastSeen != uint64(lastSeen) {
		return false, nil
	}
	moved := false
	if fresh {
		_, moved, err = m.removeNew(ck)
	} else {
		_, err = m.removeMain(ck)
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("expire conn %s -> %s: %w", c.Client, c.VIP, err)
	}
	return !moved, nil
}

// HalfOpenEvicted returns how many half-open conns InstallConn removed to
// make room in a full new pair since New.
func (m *Maps) HalfOpenEvicted() uint64 {
	return m.evicted.Load()
}

// makeRoom removes one half-open conn from the full new pair: the oldest
// this process installed that is still there, or after a restart (the
// list is empty) the one idle longest. Conns that left meanwhile
// (expired, deleted) are skipped; one the datapath is moving to the main
// pair right now leaves the new pair without being counted out (it lives
// on). Each listed key is tried once, so the cost per install is
// amortised O(1). It reports whether it made room.
func (m *Maps) makeRoom() bool {
	refilled := false
	for {
		k, ok := m.halfOpen.pop()
		if !ok {
			if refilled || !m.refillHalfOpen() {
				return false
			}
			refilled = true
			continue
		}
		_, moved, err := m.removeNew(k)
		if err != nil {
			continue // gone already
		}
		if !moved {
			m.evicted.Add(1)
		}
		// A moved conn left the new pair too: room either way.
		return true
	}
}

// refillHalfOpen lists the new pair's keys, longest idle first, as
// makeRoom's victims; it reports whether it found any.
func (m *Maps) refillHalfOpen() bool {
	type entry struct {
		k    bpf.XvsConnKey
		seen uint64
	}
	var all []entry
	_, err := m.walkMap(context.Background(), m.nconns, func(c Conn) bool {
		ck, err := connKeyToBPF(c.Proto, c.Client, c.VIP)
		if err == nil {
			all = append(all, entry{ck, uint64(c.LastSeen)})
		}
		return true
	})
	if err != nil || len(all) == 0 {
		return false
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(a.seen, b.seen) })
	for _, e := range all {
		m.halfOpen.push(e.k)
	}
	return true
}

// keyRing is a bounded FIFO of client-side keys; pushing onto a full ring
// drops the oldest key.
type keyRing struct {
	mu         sync.Mutex
	keys       []bpf.XvsConnKey
	head, size int
}

func (r *keyRing) push(k bpf.XvsConnKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 {
		return
	}
	if r.size == len(r.keys) {
		r.keys[r.head] = k
		r.head = (r.head + 1) % len(r.keys)
		return
	}
	r.keys[(r.head+r.size)%len(r.keys)] = k
	r.size++
}

func (r *keyRing) pop() (bpf.XvsConnKey, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.size == 0 {
		return bpf.XvsConnKey{}, false
	}
	k := r.keys[r.head]
	r.head = (r.head + 1) % len(r.keys)
	r.size--
	return k, true
}
