package ctl

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"xvs/ipvsadm"
	"xvs/maps"
)

// Services lists the virtual services with their real servers, counters
// (since the last -Z) and rates; only the one service when only is set
// (ErrNoService when it does not exist).
func (t *Table) Services(only *ipvsadm.Service) ([]ipvsadm.ServiceEntry, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []ipvsadm.ServiceEntry
	for k, s := range t.svcs {
		if only != nil && k != keyOf(only) {
			continue
		}
		e, err := t.serviceEntry(s)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if only != nil && len(out) == 0 {
		return nil, ErrNoService
	}
	return out, nil
}

func (t *Table) serviceEntry(s *service) (ipvsadm.ServiceEntry, error) {
	st, err := t.dp.ServiceStats(s.id)
	if err != nil {
		return ipvsadm.ServiceEntry{}, fmt.Errorf("service %v stats: %w", s.cfg.Addr, err)
	}
	e := ipvsadm.ServiceEntry{Service: s.cfg, Stats: sub(st, s.zero), Rate: s.est.rate()}
	persist := make(map[netip.AddrPort]int)
	for _, di := range s.pool.Dests() {
		persist[di.Addr] = di.PersistConns
	}
	for _, d := range s.dests {
		st, err := t.dp.DestStats(d.id)
		if err != nil {
			return ipvsadm.ServiceEntry{}, fmt.Errorf("destination %v stats: %w", d.cfg.Addr, err)
		}
		a, i := t.dp.DestConns(d.id)
		e.Dests = append(e.Dests, ipvsadm.DestEntry{
			Dest:         d.cfg,
			ActiveConns:  max(a, 0),
			InactConns:   max(i, 0),
			PersistConns: int64(persist[d.cfg.Addr]),
			Stats:        sub(st, d.zero),
			Rate:         d.est.rate(),
		})
	}
	return e, nil
}

// Conns lists the connection table and the persistence templates, as
// ipvsadm -L -c.
func (t *Table) Conns(ctx context.Context) ([]ipvsadm.ConnEntry, error) {
	to := t.Timeouts()
	now := t.mono()
	var out []ipvsadm.ConnEntry
	err := t.dp.WalkConns(ctx, func(c maps.Conn) bool {
		left := connTimeout(c, to) - (now - c.LastSeen)
		out = append(out, ipvsadm.ConnEntry{
			Proto:   c.Proto,
			Client:  c.Client,
			Virtual: c.VIP,
			Dest:    c.Dest,
			State:   stateName(c),
			Expires: max(left, 0),
		})
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("walk connections: %w", err)
	}
	wall := t.wall()
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, s := range t.svcs {
		for _, tp := range s.pool.Templates() {
			out = append(out, ipvsadm.ConnEntry{
				Proto:    s.cfg.Proto,
				Template: true,
				Client:   netip.AddrPortFrom(tp.Client, 0),
				Virtual:  tp.VIP,
				Dest:     tp.Dest,
				State:    "NONE",
				Expires:  max(tp.Expires.Sub(wall), 0).Truncate(time.Second),
			})
		}
	}
	return out, nil
}
