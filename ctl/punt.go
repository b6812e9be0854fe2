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
	// ReadBatch blocks until queue q holds a frame, then reads what it
	// holds, up to len(bufs) frames: frame i is bufs[i][:lens[i]].
	ReadBatch(q int, bufs [][]byte, lens []int) (int, error)
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

// puntBatchMax is how many frames a worker takes from its queue at once:
// their conns are looked up and installed with one syscall each per batch
// (maps.ConnsExist, maps.InstallConns), which is most of what a first
// packet costs the daemon. A worker never waits to fill a batch.
const puntBatchMax = 32

// puntFrameMax is a punt buffer's size: frames are at most one MTU (the
// tap has no GSO), which this covers for any MTU.
const puntFrameMax = 65536

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
			b := newPuntBatch(puntBatchMax)
			for ctx.Err() == nil {
				n, err := dev.ReadBatch(q, b.bufs, b.lens)
				if n > 0 {
					t.firstPackets(b, n, st)
					for i := range n {
						frame := b.bufs[i][:b.lens[i]]
						switch b.verdicts[i] {
						case verdictForward:
							loader.SetDstMAC(frame, dev.MAC())
							if err := dev.Write(q, frame); err != nil {
								st.Errors.Add(1)
							}
						case verdictNoDest:
							if icmp == nil {
								break
							}
							if !lim.allow(time.Now()) {
								st.ICMPLimit.Add(1)
							} else if icmp.Send(frame) == nil {
								st.ICMPSent.Add(1)
							}
						}
					}
				}
				if err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("read punt queue %d: %w", q, err)
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

// puntBatch is one worker's frames and the state of their conns, reused
// from batch to batch.
type puntBatch struct {
	bufs     [][]byte
	lens     []int
	verdicts []verdict
	frames   []loader.Frame
	keys     []maps.Conn // the frames' flows (Proto, Client, VIP)
	exist    []bool
	first    []int // frame i's flow was first seen in frame first[i] of the batch
	conns    []maps.Conn
	owner    []int // conns[j] is the conn of frame owner[j]
	errs     []error
}

func newPuntBatch(n int) *puntBatch {
	b := &puntBatch{
		bufs: make([][]byte, n), lens: make([]int, n), verdicts: make([]verdict, n),
		frames: make([]loader.Frame, n), keys: make([]maps.Conn, n), exist: make([]bool, n),
		first: make([]int, n), conns: make([]maps.Conn, 0, n), owner: make([]int, 0, n),
		errs: make([]error, n),
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, puntFrameMax)
	}
	return b
}

// firstPackets schedules the connections of the batch's first n frames
// and sets their verdicts. Conns that exist already (a flow punted twice,
// a SYN on a closed conn's port) are found before scheduling, so that
// they cost no scheduling decision; the rest are scheduled in frame order
// and installed together. The table lock is held only to find a service,
// never across a syscall.
func (t *Table) firstPackets(b *puntBatch, n int, st *PuntStats) {
	keys := b.keys[:0]
	for i := range n {
		b.verdicts[i] = verdictDrop
		b.first[i] = -1
		f, err := loader.ParseFrame(b.bufs[i][:b.lens[i]])
		if err != nil {
			st.Malformed.Add(1)
			continue
		}
		b.frames[i] = f
		b.first[i] = i
		for j := range i {
			if b.first[j] == j && b.frames[j].Proto == f.Proto && b.frames[j].Src == f.Src && b.frames[j].Dst == f.Dst {
				b.first[i] = j
				break
			}
		}
		if b.first[i] == i {
			keys = append(keys, maps.Conn{Proto: f.Proto, Client: f.Src, VIP: f.Dst})
		}
	}
	exist := b.exist[:len(keys)]
	if err := t.dp.ConnsExist(keys, exist); err != nil {
		// Look each up again on the slow path below.
		for k := range exist {
			exist[k] = true
		}
	}
	conns, owner := b.conns[:0], b.owner[:0]
	k := 0
	for i := range n {
		if b.first[i] != i {
			continue
		}
		f := b.frames[i]
		if exist[k] {
			k++
			b.verdicts[i] = t.existing(f, st)
			continue
		}
		k++
		c, v := t.schedule(f, st)
		if v != verdictForward {
			b.verdicts[i] = v
			continue
		}
		conns, owner = append(conns, c), append(owner, i)
	}
	errs := b.errs[:len(conns)]
	t.dp.InstallConns(conns, errs)
	for j, err := range errs {
		b.verdicts[owner[j]] = installed(err, st)
	}
	// Later frames of a flow in the batch follow its first frame.
	for i := range n {
		if j := b.first[i]; j >= 0 && j != i {
			b.verdicts[i] = b.verdicts[j]
			if b.verdicts[i] == verdictForward {
				st.Existing.Add(1)
			}
		}
	}
}

// existing handles a frame whose flow has a conn: written back, unless it
// is a SYN on the port of a closed conn, which IPVS (conn_reuse_mode 1)
// schedules afresh after expiring the old conn (here, or in the datapath
// for a service with a ring). If a packet refreshed the old conn
// meanwhile it stays.
func (t *Table) existing(f loader.Frame, st *PuntStats) verdict {
	c, err := t.dp.LookupConn(f.Proto, f.Src, f.Dst)
	if err == nil && !reusable(f, c) {
		st.Existing.Add(1)
		return verdictForward
	}
	if err == nil {
		if ok, err := t.dp.DeleteConnIf(c, c.LastSeen); err != nil || !ok {
			st.Existing.Add(1)
			return verdictForward
		}
		st.Reused.Add(1)
		if t.hasRing(f.Proto, f.Dst) {
			// The frame written back misses, and the datapath
			// schedules it from the ring: one sequence.
			return verdictForward
		}
	}
	// Gone since the check (expired), or expired for reuse: a new conn.
	nc, v := t.schedule(f, st)
	if v != verdictForward {
		return v
	}
	return installed(t.dp.InstallConn(nc), st)
}

// installed counts the outcome of a new conn's install and says what to
// do with its frame.
func installed(err error, st *PuntStats) verdict {
	switch {
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

// schedule picks the real server of a new flow and returns its conn, with
// verdictForward; or the verdict for a frame that gets none.
func (t *Table) schedule(f loader.Frame, st *PuntStats) (maps.Conn, verdict) {
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
		return maps.Conn{}, verdictDrop
	}
	d, err := pool.Schedule(sched.Flow{Proto: f.Proto, Client: f.Src, VIP: f.Dst})
	if err != nil {
		if errors.Is(err, sched.ErrNoDest) {
			st.NoDest.Add(1)
			return maps.Conn{}, verdictNoDest
		}
		st.Errors.Add(1)
		return maps.Conn{}, verdictDrop
	}
	destID, ok := t.destID(f.Proto, f.Dst, d.Addr)
	if !ok {
		st.NoService.Add(1)
		return maps.Conn{}, verdictDrop
	}
	rs := d.Addr
	if rs.Port() == 0 {
		rs = netip.AddrPortFrom(rs.Addr(), f.Dst.Port())
	}
	return maps.Conn{
		Proto:    f.Proto,
		Client:   f.Src,
		VIP:      f.Dst,
		Dest:     rs,
		Flags:    uint8(bpf.XvsConnFlagsCONN_F_NEW),
		SvcID:    svcID,
		DestID:   destID,
		LastSeen: t.mono(),
	}, verdictForward
}

// hasRing says whether the datapath schedules a service's first packets.
func (t *Table) hasRing(proto uint8, vip netip.AddrPort) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := t.svcs[svcKey{proto: proto, addr: vip}]
	return s != nil && s.ring
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
