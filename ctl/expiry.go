package ctl

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"time"

	"xvs/bpf"
	"xvs/ipvsadm"
	"xvs/maps"
)

// DefaultTimeouts are IPVS's: ESTABLISHED 900 s, FIN_WAIT 120 s, UDP 300 s.
var DefaultTimeouts = ipvsadm.Timeouts{TCP: 900, TCPFin: 120, UDP: 300}

// stateTimeouts are IPVS's default TCP state timeouts in seconds
// (ip_vs_proto_tcp.c), by state number.
var stateTimeouts = [bpf.XvsTcpStateSTATE_MAX]uint32{
	bpf.XvsTcpStateSTATE_NONE:        2,
	bpf.XvsTcpStateSTATE_ESTABLISHED: 900,
	bpf.XvsTcpStateSTATE_SYN_SENT:    120,
	bpf.XvsTcpStateSTATE_SYN_RECV:    60,
	bpf.XvsTcpStateSTATE_FIN_WAIT:    120,
	bpf.XvsTcpStateSTATE_TIME_WAIT:   120,
	bpf.XvsTcpStateSTATE_CLOSE:       10,
	bpf.XvsTcpStateSTATE_CLOSE_WAIT:  60,
	bpf.XvsTcpStateSTATE_LAST_ACK:    30,
	bpf.XvsTcpStateSTATE_LISTEN:      120,
	bpf.XvsTcpStateSTATE_SYNACK:      120,
}

// stateNames are the TCP state names of ipvsadm -L -c.
var stateNames = [bpf.XvsTcpStateSTATE_MAX]string{
	"NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT",
	"CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK",
}

// newConnTimeout is how long a conn that has not forwarded its first
// packet lives (IPVS gives a new conn 3 s until its first state change).
const newConnTimeout = 3 * time.Second

// connTimeout is how long c may stay idle, given the --set timeouts.
func connTimeout(c maps.Conn, to ipvsadm.Timeouts) time.Duration {
	if c.Flags&uint8(bpf.XvsConnFlagsCONN_F_NEW) != 0 {
		return newConnTimeout
	}
	if c.Proto == protoUDP {
		return time.Duration(to.UDP) * time.Second
	}
	var s uint32
	switch {
	case int(c.State) >= len(stateTimeouts):
		s = stateTimeouts[bpf.XvsTcpStateSTATE_NONE]
	case c.State == uint8(bpf.XvsTcpStateSTATE_ESTABLISHED):
		s = to.TCP
	case c.State == uint8(bpf.XvsTcpStateSTATE_FIN_WAIT):
		s = to.TCPFin
	default:
		s = stateTimeouts[c.State]
	}
	return time.Duration(s) * time.Second
}

func stateName(c maps.Conn) string {
	if c.Proto == protoUDP {
		return "UDP"
	}
	if int(c.State) < len(stateNames) {
		return stateNames[c.State]
	}
	return "NONE"
}

func (t *Table) setTimeouts(to ipvsadm.Timeouts) {
	// 0 keeps the current value, as ipvsadm --set.
	if to.TCP != 0 {
		t.timeouts.TCP = to.TCP
	}
	if to.TCPFin != 0 {
		t.timeouts.TCPFin = to.TCPFin
	}
	if to.UDP != 0 {
		t.timeouts.UDP = to.UDP
	}
}

// Timeouts returns the current --set timeouts.
func (t *Table) Timeouts() ipvsadm.Timeouts {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.timeouts
}

// expireChunk is how many expired conns Expire collects before it hands
// them to the datapath.
const expireChunk = 1024

// persistKey names a persistent service's client for template holding.
type persistKey struct {
	svc    svcKey
	client netip.Addr
}

// Expire removes every connection idle for longer than its state's
// timeout, keeps persistence templates alive while they still control
// connections (IPVS never expires such a template), expires the others, and
// frees deleted real servers that are no longer used. It returns how many
// connections it removed.
func (t *Table) Expire(ctx context.Context) (int, error) {
	t.mu.RLock()
	to := t.timeouts
	persistent := make(map[uint32]*service)
	for _, s := range t.svcs {
		if s.cfg.Persistent {
			persistent[s.id] = s
		}
	}
	t.mu.RUnlock()

	t.expireMu.Lock()
	defer t.expireMu.Unlock()
	now := t.mono()
	held := make(map[persistKey]bool)
	var n int
	var err error
	// The kernel sweeps with a third of the walk's CPU, but holds its CPU
	// for its whole run, and reports nothing of the conns it keeps: the
	// templates of persistent services need those. So it sweeps tables
	// that the last expiry found small enough, and the walk finds out
	// first. A run is bounded (maps.SweepConns): twice the limit in conns
	// looked at, in case the tables grew since. A cut run leaves the rest
	// to the walk, whose syscalls are short.
	sw, ok := t.dp.(sweeper)
	ok = ok && len(persistent) == 0 && t.population >= 0 && t.population <= t.sweepMax
	if ok {
		var res maps.SweepResult
		res, err = sw.SweepConns(now, sweepTimeouts(to), sweepVisits(t.sweepMax))
		n, t.population = res.Removed, res.Left
		switch {
		case errors.Is(err, maps.ErrNoSweep):
			n, ok, err = 0, false, nil
		case err == nil && res.Cut:
			ok = false
		}
	}
	if !ok {
		var walked, seen int
		walked, seen, err = t.walkExpire(ctx, now, to, persistent, held)
		n += walked
		t.population = -1
		if err == nil {
			t.population = seen - walked
		}
	}
	if err != nil {
		return n, err
	}

	wall := t.wall()
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range held {
		if s := t.svcs[k.svc]; s != nil {
			s.pool.HoldTemplate(k.client, wall)
		}
	}
	for _, s := range t.svcs {
		s.pool.Expire(wall)
	}
	t.reapTrash()
	return n, nil
}

// sweepVisits is the bound on conns a sweep run looks at for a table
// swept while it holds at most max: twice that, saturated (an overflow
// would be negative, which the sweep takes for no bound at all).
func sweepVisits(max int) int {
	if max > math.MaxInt/2 {
		return math.MaxInt
	}
	return 2 * max
}

// sweeper is the in-kernel sweep (maps.Maps; the tests' fake has none).
type sweeper interface {
	SweepConns(now time.Duration, to maps.SweepTimeouts, maxVisits int) (maps.SweepResult, error)
}

// sweepTimeouts are connTimeout's timeouts in the sweep's terms, taken
// from connTimeout itself so that the two cannot disagree.
func sweepTimeouts(to ipvsadm.Timeouts) maps.SweepTimeouts {
	st := maps.SweepTimeouts{
		New: connTimeout(maps.Conn{Proto: protoTCP, Flags: uint8(bpf.XvsConnFlagsCONN_F_NEW)}, to),
		UDP: connTimeout(maps.Conn{Proto: protoUDP}, to),
	}
	for s := range st.TCP {
		st.TCP[s] = connTimeout(maps.Conn{Proto: protoTCP, State: uint8(s)}, to)
	}
	return st
}

// walkExpire is Expire's walk: it removes the conns idle at now and
// records in held the clients of persistent services that still have
// conns. It returns how many it removed and how many it saw.
func (t *Table) walkExpire(ctx context.Context, now time.Duration, to ipvsadm.Timeouts, persistent map[uint32]*service, held map[persistKey]bool) (removed, seen int, err error) {
	// Expired conns are handed to the datapath in chunks during the walk,
	// not collected first: a million of them would be over 100 MB of
	// copies. Removing conns the walk has already passed does not disturb
	// it (it reads the tables bucket by bucket). Each goes only if its
	// last_seen is still the one the walk saw: a packet since then keeps
	// it.
	expired := make([]maps.Conn, 0, expireChunk)
	var xerr error
	flush := func() bool {
		got, err := t.dp.ExpireConns(expired)
		removed += got
		expired = expired[:0]
		xerr = err
		return err == nil
	}
	err = t.dp.WalkConns(ctx, func(c maps.Conn) bool {
		seen++
		if now-c.LastSeen > connTimeout(c, to) {
			expired = append(expired, c)
			if len(expired) == expireChunk && !flush() {
				return false
			}
		} else if s := persistent[c.SvcID]; s != nil {
			held[persistKey{svc: keyOf(&s.cfg), client: c.Client.Addr()}] = true
		}
		return ctx.Err() == nil
	})
	if err == nil && xerr == nil && len(expired) > 0 {
		flush()
	}
	if xerr != nil {
		return removed, seen, xerr
	}
	return removed, seen, err
}

// RunExpiry calls Expire every interval until ctx ends.
func (t *Table) RunExpiry(ctx context.Context, interval time.Duration, onErr func(error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := t.Expire(ctx); err != nil && ctx.Err() == nil && onErr != nil {
				onErr(err)
			}
		}
	}
}
