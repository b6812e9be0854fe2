package ctl

import (
	"context"
	"time"

	"xvs/ipvsadm"
	"xvs/maps"
)

// EstimatorPeriod is IPVS's rate estimation period.
const EstimatorPeriod = 2 * time.Second

// estimator is IPVS's rate estimator (ip_vs_est.c): every 2 s an EWMA with
// weight 1/4 of each counter's change, packets and conns scaled by 2^10 and
// bytes by 2^5 (the "<<9" and "<<4" fold in the division by the period).
type estimator struct {
	last               maps.Stats
	cps, inpps, outpps int64
	inbps, outbps      int64
}

func (e *estimator) sample(cur maps.Stats) {
	d := func(now, last uint64) int64 { return int64(now - last) }
	e.cps += (d(cur.Conns, e.last.Conns)<<9 - e.cps) >> 2
	e.inpps += (d(cur.InPkts, e.last.InPkts)<<9 - e.inpps) >> 2
	e.outpps += (d(cur.OutPkts, e.last.OutPkts)<<9 - e.outpps) >> 2
	e.inbps += (d(cur.InBytes, e.last.InBytes)<<4 - e.inbps) >> 2
	e.outbps += (d(cur.OutBytes, e.last.OutBytes)<<4 - e.outbps) >> 2
	e.last = cur
}

// reset zeroes the rates and takes cur as the new base, as ipvsadm -Z.
func (e *estimator) reset(cur maps.Stats) { *e = estimator{last: cur} }

func (e *estimator) rate() ipvsadm.Stats {
	pps := func(v int64) uint64 { return uint64(max(0, (v+0x1FF)>>10)) }
	bps := func(v int64) uint64 { return uint64(max(0, (v+0xF)>>5)) }
	return ipvsadm.Stats{
		Conns: pps(e.cps), InPkts: pps(e.inpps), OutPkts: pps(e.outpps),
		InBytes: bps(e.inbps), OutBytes: bps(e.outbps),
	}
}

func sub(a, b maps.Stats) ipvsadm.Stats {
	return ipvsadm.Stats{
		Conns: a.Conns - b.Conns, InPkts: a.InPkts - b.InPkts, OutPkts: a.OutPkts - b.OutPkts,
		InBytes: a.InBytes - b.InBytes, OutBytes: a.OutBytes - b.OutBytes,
	}
}

func add(a, b maps.Stats) maps.Stats {
	return maps.Stats{
		Conns: a.Conns + b.Conns, InPkts: a.InPkts + b.InPkts, OutPkts: a.OutPkts + b.OutPkts,
		InBytes: a.InBytes + b.InBytes, OutBytes: a.OutBytes + b.OutBytes,
	}
}

// Estimate takes one rate sample of every service and real server.
func (t *Table) Estimate() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var total maps.Stats
	for _, s := range t.svcs {
		st, err := t.dp.ServiceStats(s.id)
		if err != nil {
			return err
		}
		s.est.sample(st)
		total = add(total, st)
		for _, d := range s.dests {
			st, err := t.dp.DestStats(d.id)
			if err != nil {
				return err
			}
			d.est.sample(st)
		}
	}
	t.total.sample(total)
	return nil
}

// RunEstimator samples rates every EstimatorPeriod until ctx ends.
func (t *Table) RunEstimator(ctx context.Context, onErr func(error)) {
	tick := time.NewTicker(EstimatorPeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := t.Estimate(); err != nil && onErr != nil {
				onErr(err)
			}
		}
	}
}

// zeroStats records the current counters as the zero point of one service
// (with its real servers) or of everything, as ipvsadm -Z: the datapath's
// counters keep counting, listings show the difference.
func (t *Table) zeroStats(only *ipvsadm.Service) error {
	for k, s := range t.svcs {
		if only != nil && k != keyOf(only) {
			continue
		}
		st, err := t.dp.ServiceStats(s.id)
		if err != nil {
			return err
		}
		s.zero = st
		s.est.reset(st)
		for _, d := range s.dests {
			st, err := t.dp.DestStats(d.id)
			if err != nil {
				return err
			}
			d.zero = st
			d.est.reset(st)
		}
	}
	return nil
}
