package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// EstablishedResult is one repetition of the established-flow rate.
type EstablishedResult struct {
	Flows    int
	Duration time.Duration
	Sent     uint64 // frames the generator put on the wire
	Received uint64 // frames counted at the real servers
}

// PPS is the forwarding rate at the real servers.
func (r EstablishedResult) PPS() float64 { return rate(r.Received, r.Duration) }

// SentPPS is the offered rate.
func (r EstablishedResult) SentPPS() float64 { return rate(r.Sent, r.Duration) }

func rate(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// udpEnv is what the UDP metrics share: a generator and the sink.
type udpEnv struct {
	tp   *Topo
	lb   Balancer
	sink *Sink
	pps  uint64 // the established generators' pace (GenConfig.PPS)
}

// warmFlows sends every flow once per round, paced, until one whole round
// arrives at the sink (every flow has its connection), at most rounds
// times. It returns the number of rounds used.
func (e *udpEnv) warmFlows(ctx context.Context, g *Generator, flows, rounds int) (int, error) {
	for r := 1; r <= rounds; r++ {
		before, err := e.sink.Count()
		if err != nil {
			return r, err
		}
		for sent := 0; sent < flows; sent += 64 {
			if err := g.Burst(64); err != nil {
				return r, err
			}
			time.Sleep(200 * time.Microsecond)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		after, err := e.sink.Count()
		if err != nil {
			return r, err
		}
		if int(after-before) >= flows {
			return r, nil
		}
	}
	return rounds, fmt.Errorf("flows not established after %d warm-up rounds", rounds)
}

// answerFlows warms flows up as warmFlows does with the real servers
// answering each frame (an echo socket behind the sink), as a real server
// answers a UDP flow: a conntrack entry or an xvs conn is then
// established in both directions (xvs moves it from its half-open pair to
// the main one). The answers go back through the balancer to the
// generator's interface, where nothing listens. (Answered by XDP_TX from
// the real servers' veth instead, most answers were dropped at the
// director's veth and the next XDP balancer's redirects to the real
// servers were dropped too.)
func (e *udpEnv) answerFlows(ctx context.Context, g *Generator, flows int) (err error) {
	// One socket per address: a wildcard socket would answer from the
	// first address, which is not the conn's real server.
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, a := range e.tp.Addrs.RS {
		var pc net.PacketConn
		if err := e.tp.RS.Do(func() (err error) {
			pc, err = net.ListenPacket("udp4", netip.AddrPortFrom(a, udpPort).String())
			return err
		}); err != nil {
			return fmt.Errorf("echo socket on real server %s: %w", a, err)
		}
		defer pc.Close()
		wg.Go(func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return // closed
				}
				_, _ = pc.WriteTo(buf[:n], from)
			}
		})
	}
	if err := e.sink.Answer(true); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, e.sink.Answer(false)) }()
	_, err = e.warmFlows(ctx, g, flows, 10)
	return err
}

// Established measures small-UDP forwarding over flows established flows:
// one generator thread per CPU for d, frames counted at the sink. With
// answered, the real servers answer every flow once during the warm-up;
// without, the flows only ever go one way (for xvs, conns that stay in
// the half-open pair).
func (e *udpEnv) Established(ctx context.Context, flows int, d time.Duration, reps int, cpus []int, answered bool) ([]EstablishedResult, error) {
	g, err := NewGenerator(e.tp, GenConfig{Flows: uint32(flows), Sport: 20000, PPS: e.pps}, e.tp.Addrs.Gen, e.lb.Target(udpPort))
	if err != nil {
		return nil, err
	}
	defer g.Close()
	warm := func() error { _, err := e.warmFlows(ctx, g, flows, 10); return err }
	if answered {
		warm = func() error { return e.answerFlows(ctx, g, flows) }
	}
	if err := warm(); err != nil {
		return nil, err
	}
	var out []EstablishedResult
	for range reps {
		r, err := e.measure(ctx, g, cpus, d)
		if err != nil {
			return out, err
		}
		r.Flows = flows
		out = append(out, r)
	}
	return out, nil
}

func (e *udpEnv) measure(ctx context.Context, g *Generator, cpus []int, d time.Duration) (EstablishedResult, error) {
	s0, err := g.Sent()
	if err != nil {
		return EstablishedResult{}, err
	}
	c0, err := e.sink.Count()
	if err != nil {
		return EstablishedResult{}, err
	}
	el, err := g.Flood(ctx, cpus, d)
	if err != nil {
		return EstablishedResult{}, err
	}
	time.Sleep(20 * time.Millisecond) // frames still in the veth rings
	s1, err := g.Sent()
	if err != nil {
		return EstablishedResult{}, err
	}
	c1, err := e.sink.Count()
	if err != nil {
		return EstablishedResult{}, err
	}
	return EstablishedResult{Duration: el, Sent: s1 - s0, Received: c1 - c0}, nil
}

// NewFlowResult is one repetition of the first-packet path: packets that
// each start a new flow, offered at a fixed rate or as fast as the
// generator goes.
type NewFlowResult struct {
	Duration  time.Duration
	Sent      uint64 // first packets generated
	Offered   uint64 // of those, accepted by the director's veth (the rest overflowed its ring)
	Received  uint64 // first packets that reached a real server
	Scheduled uint64 // connections created, when the balancer tells
	HasSched  bool
	PuntDrops uint64 // first packets dropped at the punt queue
	HasPunt   bool
	Events    map[string]float64 // xvsd's datapath events during the run, when it has them
	CPU       time.Duration      // CPU time the balancer's own process used during the run
	HasCPU    bool
	// RxCPU is the CPU time of the director's receive threads (the
	// threaded NAPI poll of its outside veth, where an XDP balancer runs):
	// with CPU, all the director spends on the run, apart from the
	// generator that shares the machine. Only XDP does its work there.
	RxCPU time.Duration
}

// DirectorCPUPerConn is the CPU time of the balancer's process and of the
// director's receive threads per connection created.
func (r NewFlowResult) DirectorCPUPerConn() time.Duration {
	if r.Scheduled == 0 {
		return 0
	}
	return (r.CPU + r.RxCPU) / time.Duration(r.Scheduled)
}

// CPUPerConn is the balancer process's CPU time per connection created.
func (r NewFlowResult) CPUPerConn() time.Duration {
	if r.Scheduled == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Scheduled)
}

// FlowsPerSec is the rate of new flows forwarded to a real server.
func (r NewFlowResult) FlowsPerSec() float64 { return rate(r.Received, r.Duration) }

// SchedPerSec is the rate of connections created.
func (r NewFlowResult) SchedPerSec() float64 { return rate(r.Scheduled, r.Duration) }

// DropsPerSec is the rate of punt-queue drops (the tap's tx_dropped).
func (r NewFlowResult) DropsPerSec() float64 { return rate(r.PuntDrops, r.Duration) }

// LostPerSec is the rate of first packets that reached the director but
// no real server, wherever they were lost (punt queue, scheduler, ring).
func (r NewFlowResult) LostPerSec() float64 {
	if r.Received >= r.Offered {
		return 0
	}
	return rate(r.Offered-r.Received, r.Duration)
}

// OfferedPerSec is the rate of first packets that reached the director.
func (r NewFlowResult) OfferedPerSec() float64 { return rate(r.Offered, r.Duration) }

// NewFlows sends packets that each start a new flow from one thread on
// cpu for d, from the live-frame generator: paced at pps per second or,
// with pps 0, as fast as it goes (a flood). The other CPU is left to the
// director and its slow path (xvsd's punt workers). (A packet socket
// could pace too, but its frames reach a veth with an XDP program as
// skbs that the veth converts at microseconds each: session 5's paced
// runs measured that conversion at 134k-145k/s.)
func (e *udpEnv) NewFlows(ctx context.Context, d time.Duration, reps int, cpu int, salt uint32, pps float64) ([]NewFlowResult, error) {
	gc := GenConfig{NewFlows: true, Salt: salt}
	if pps > 0 {
		gc.Salt, gc.PPS = salt+1<<25, uint64(pps) // other flows than the flood's
	}
	g, err := NewGenerator(e.tp, gc, e.tp.Addrs.Gen, e.lb.Target(udpPort))
	if err != nil {
		return nil, err
	}
	defer g.Close()
	var out []NewFlowResult
	for range reps {
		cpu0, hasCPU := balancerCPU(e.lb)
		sch0, hasSched := e.lb.Scheduled()
		pd0, hasPunt := e.lb.PuntDrops()
		ev0 := e.events()
		c0, err := e.sink.Count()
		if err != nil {
			return out, err
		}
		rx0, err := threadsCPU(e.tp.ExtNAPI)
		if err != nil {
			return out, err
		}
		o0, err := linkStat(e.tp.Gen, genIf, "TX", "packets")
		if err != nil {
			return out, err
		}
		g0, err := g.Sent()
		if err != nil {
			return out, err
		}
		el, err := g.Flood(ctx, []int{cpu}, d)
		if err != nil {
			return out, err
		}
		g1, err := g.Sent()
		if err != nil {
			return out, err
		}
		sent := g1 - g0
		// The slow path drains what it queued before the counters are
		// read; the queue is bounded, so this adds little to the count.
		time.Sleep(200 * time.Millisecond)
		c1, err := e.sink.Count()
		if err != nil {
			return out, err
		}
		o1, err := linkStat(e.tp.Gen, genIf, "TX", "packets")
		if err != nil {
			return out, err
		}
		rx1, err := threadsCPU(e.tp.ExtNAPI)
		if err != nil {
			return out, err
		}
		sch1, _ := e.lb.Scheduled()
		cpu1, _ := balancerCPU(e.lb)
		pd1, _ := e.lb.PuntDrops()
		out = append(out, NewFlowResult{
			Duration: el, Sent: sent, Offered: o1 - o0, Received: c1 - c0,
			Scheduled: sch1 - sch0, HasSched: hasSched,
			PuntDrops: pd1 - pd0, HasPunt: hasPunt,
			Events: diffEvents(ev0, e.events()),
			CPU:    cpu1 - cpu0, HasCPU: hasCPU,
			RxCPU: rx1 - rx0,
		})
	}
	return out, nil
}

// balancerCPU is the CPU time of the balancer's own process, if it has one.
func balancerCPU(lb Balancer) (time.Duration, bool) {
	x, ok := lb.(interface{ CPU() (time.Duration, bool) })
	if !ok {
		return 0, false
	}
	return x.CPU()
}

// events reads the balancer's datapath events, if it has any.
func (e *udpEnv) events() map[string]float64 {
	x, ok := e.lb.(interface {
		Events() (map[string]float64, error)
	})
	if !ok {
		return nil
	}
	ev, err := x.Events()
	if err != nil {
		return nil
	}
	return ev
}

// diffEvents is after - before, without the reasons that did not move.
func diffEvents(before, after map[string]float64) map[string]float64 {
	if before == nil || after == nil {
		return nil
	}
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// FirstPacketBudget is the global first-packet budget (per second) xvsd
// gets for the flood run: a small share of the first packets its punt
// workers could take on this 2-CPU machine. The flood that reaches the
// director (floodEvery) is about ten times it. The capacity runs of the
// first-packet path lift the budget (runNewFlows).
const FirstPacketBudget = 2000

// FloodResult is one repetition of established flows under a flood of
// first packets.
type FloodResult struct {
	EstablishedResult
	Base      EstablishedResult  // the same traffic without the flood, just before
	FloodSent uint64             // new-flow frames the generator mixed in
	FloodFwd  uint64             // of those, forwarded (one per conn created)
	Events    map[string]float64 // the balancer's datapath events during the run, when it has them
}

// Kept is the established rate under the flood over the rate just before
// without it.
func (r FloodResult) Kept() float64 {
	if r.Base.PPS() == 0 {
		return 0
	}
	return r.PPS() / r.Base.PPS()
}

// FloodPPS is the rate of the flood.
func (r FloodResult) FloodPPS() float64 { return rate(r.FloodSent, r.Duration) }

// EstablishedUnderFlood measures established flows as Established does
// while a paced sender floods new flows at floodPPS from the same CPU
// (the other one is the director's). The sink counts both kinds of
// packets, so the flood's forwarded first packets (one per connection the
// balancer created) are taken off. The two generators share a CPU, so the
// established rate falls with the flood whatever the director does; the
// delivery ratio (received / sent) is what shows the director's part.
func (e *udpEnv) EstablishedUnderFlood(ctx context.Context, flows int, d time.Duration, reps int, cpu int, salt uint32, floodEvery uint32) ([]FloodResult, error) {
	g, err := NewGenerator(e.tp, GenConfig{Flows: uint32(flows), Sport: 20000, PPS: e.pps}, e.tp.Addrs.Gen, e.lb.Target(udpPort))
	if err != nil {
		return nil, err
	}
	defer g.Close()
	if err := e.answerFlows(ctx, g, flows); err != nil {
		return nil, err
	}
	// The flood is mixed into the established traffic by the same
	// generator: every floodEvery-th frame a new flow. It reaches the
	// director the way a NIC delivers a flood (XDP frames, in among the
	// rest) and costs the generator nothing extra, so the established
	// rate with and without it is offered alike. (A second generator
	// thread on the same CPU took a fifth of the established generator's
	// rate; a packet socket's frames reach a veth with an XDP program as
	// skbs, at several microseconds each to convert.)
	fg, err := NewGenerator(e.tp, GenConfig{Flows: uint32(flows), Sport: 20000, FloodEvery: floodEvery, Salt: salt + 2<<25, PPS: e.pps},
		e.tp.Addrs.Gen, e.lb.Target(udpPort))
	if err != nil {
		return nil, err
	}
	defer fg.Close()
	var out []FloodResult
	for range reps {
		// The same traffic without the flood just before, as the
		// baseline: runs minutes apart differ more than a flood does.
		base, err := e.measure(ctx, g, []int{cpu}, d)
		if err != nil {
			return out, err
		}
		sch0, hasSched := e.lb.Scheduled()
		ev0 := e.events()
		f0, err := fg.FloodSent()
		if err != nil {
			return out, err
		}
		r, err := e.measure(ctx, fg, []int{cpu}, d)
		if err != nil {
			return out, err
		}
		f1, err := fg.FloodSent()
		if err != nil {
			return out, err
		}
		res := FloodResult{EstablishedResult: r, Base: base, FloodSent: f1 - f0, Events: diffEvents(ev0, e.events())}
		res.Flows = flows
		res.Sent -= min(res.Sent, res.FloodSent)
		if sch1, _ := e.lb.Scheduled(); hasSched {
			res.FloodFwd = sch1 - sch0
			res.Received -= min(res.Received, res.FloodFwd)
		}
		out = append(out, res)
	}
	return out, nil
}
