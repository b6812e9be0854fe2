package ctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"xvs/bpf"
	"xvs/loader"
	"xvs/maps"
	"xvs/sched"
)

// puntDevice is the tap the datapath sends first packets to.
type puntDevice interface {
	Queues() int
	Read(q int, buf []byte) (int, error)
	Write(q int, frame []byte) error
	MAC() net.HardwareAddr
}

// unreachable answers a first packet that found no real server.
type unreachable interface {
	Send(frame []byte) error
}

// icmpPerSecond bounds the ICMP errors the punt loop sends, like the
// kernel's icmp_msgs_per_sec.
const icmpPerSecond = 1000

// PuntStats counts what the first-packet loop did with punted frames.
type PuntStats struct {
	ICMPSent  atomic.Uint64 // port unreachable sent for NoDest
	ICMPLimit atomic.Uint64 // port unreachable not sent: rate limit
	Scheduled atomic.Uint64 // new conn installed, frame written back
	Existing  atomic.Uint64 // conn already there (punted twice), written back
	NoDest    atomic.Uint64 // no usable real server: dropped
	NoService atomic.Uint64 // service gone meanwhile: dropped
	Malformed atomic.Uint64 // could not be parsed: dropped
	Errors    atomic.Uint64 // install or write failed: dropped
	Reused    atomic.Uint64 // SYN on a TIME_WAIT/CLOSE conn: old conn expired, rescheduled
}

// RunPunt serves the punt device with one worker per queue until ctx ends
// or a read fails. With icmp set, first packets that find no usable real
// server are answered with port unreachable, as IPVS does.
func (t *Table) RunPunt(ctx context.Context, dev puntDevice, st *PuntStats, icmp unreachable) error {
	g, ctx := errgroup.WithContext(ctx)
	lim := &limiter{perSecond: icmpPerSecond}
	// Reads block in the netpoller; a deadline in the past wakes them
	// when ctx ends, so the daemon stops promptly.
	if d, ok := dev.(interface{ SetReadDeadline(time.Time) error }); ok {
		stop := context.AfterFunc(ctx, func() { d.SetReadDeadline(time.Now()) })
		defer stop()
	}
	for q := range dev.Queues() {
		g.Go(func() error {
			buf := make([]byte, 65536)
			for ctx.Err() == nil {
				n, err := dev.Read(q, buf)
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("read punt queue %d: %w", q, err)
				}
				switch t.firstPacket(buf[:n], st) {
				case verdictForward:
					loader.SetDstMAC(buf[:n], dev.MAC())
					if err := dev.Write(q, buf[:n]); err != nil {
						st.Errors.Add(1)
					}
				case verdictNoDest:
					if icmp == nil {
						break
					}
					if !lim.allow(time.Now()) {
						st.ICMPLimit.Add(1)
					} else if icmp.Send(buf[:n]) == nil {
						st.ICMPSent.Add(1)
					}
				}
			}
			return nil
		})
	}
	return g.Wait()
}

type verdict int

const (
	verdictDrop    verdict = iota
	verdictForward         // the conn exists: write the frame back
	verdictNoDest          // no usable real server: drop, answer ICMP
)

// firstPacket schedules the connection of a punted frame and says what to
// do with the frame. The table lock is held only to find the service,
// never across a syscall.
func (t *Table) firstPacket(frame []byte, st *PuntStats) verdict {
	f, err := loader.ParseFrame(frame)
	if err != nil {
		st.Malformed.Add(1)
		return verdictDrop
	}
	if c, err := t.dp.LookupConn(f.Proto, f.Src, f.Dst); err == nil {
		if !reusable(f, c) {
			st.Existing.Add(1)
			return verdictForward
		}
		// A new connection on the port of a closed one: IPVS
		// (conn_reuse_mode 1) expires the old conn and schedules the SYN
		// afresh. If a packet refreshed the old conn meanwhile it stays.
		if ok, err := t.dp.DeleteConnIf(c, c.LastSeen); err != nil || !ok {
			st.Existing.Add(1)
			return verdictForward
		}
		st.Reused.Add(1)
	}
	t.mu.RLock()
	s := t.svcs[svcKey{proto: f.Proto, addr: f.Dst}]
	var pool *sched.Pool
	var svcID uint32
	if s != nil {
		pool, svcID = s.pool, s.id
	}
	t.mu.RUnlock()
	if pool == nil {
		st.NoService.Add(1)
		return verdictDrop
	}
	d, err := pool.Schedule(sched.Flow{Proto: f.Proto, Client: f.Src, VIP: f.Dst})
	if err != nil {
		if errors.Is(err, sched.ErrNoDest) {
			st.NoDest.Add(1)
			return verdictNoDest
		} else {
			st.Errors.Add(1)
		}
		return verdictDrop
	}
	destID, ok := t.destID(f.Proto, f.Dst, d.Addr)
	if !ok {
		st.NoService.Add(1)
		return verdictDrop
	}
	rs := d.Addr
	if rs.Port() == 0 {
		rs = netip.AddrPortFrom(rs.Addr(), f.Dst.Port())
	}
	c := maps.Conn{
		Proto:    f.Proto,
		Client:   f.Src,
		VIP:      f.Dst,
		Dest:     rs,
		Flags:    uint8(bpf.XvsConnFlagsCONN_F_NEW),
		SvcID:    svcID,
		DestID:   destID,
		LastSeen: t.mono(),
	}
	switch err := t.dp.InstallConn(c); {
	case err == nil:
		st.Scheduled.Add(1)
	case errors.Is(err, maps.ErrConnExists):
		// Another worker won the race for this flow: its conn stands.
		st.Existing.Add(1)
	default:
		st.Errors.Add(1)
		return verdictDrop
	}
	return verdictForward
}

// destID returns the datapath id of a service's real server.
func (t *Table) destID(proto uint8, vip, rs netip.AddrPort) (uint32, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := t.svcs[svcKey{proto: proto, addr: vip}]
	if s == nil {
		return 0, false
	}
	d := s.byAddr[rs]
	if d == nil {
		return 0, false
	}
	return d.id, true
}

// limiter allows perSecond events in each wall-clock second.
type limiter struct {
	mu        sync.Mutex
	perSecond int
	second    int64
	n         int
}

func (l *limiter) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := now.Unix(); s != l.second {
		l.second, l.n = s, 0
	}
	if l.n >= l.perSecond {
		return false
	}
	l.n++
	return true
}

// reusable says whether a SYN may replace conn c (IPVS ip_vs_in_hook with
// conn_reuse_mode 1): c is TCP in TIME_WAIT or CLOSE and the frame is a
// SYN without ACK.
func reusable(f loader.Frame, c maps.Conn) bool {
	const syn, ack = 0x02, 0x10
	return f.Proto == protoTCP && f.TCPFlags&(syn|ack) == syn &&
		(c.State == uint8(bpf.XvsTcpStateSTATE_TIME_WAIT) || c.State == uint8(bpf.XvsTcpStateSTATE_CLOSE))
}
