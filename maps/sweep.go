package maps

// The in-kernel sweep. Expiring by walking the tables from user space
// copies every conn out (about half a microsecond each, in a table of a
// million) to hand the idle ones back to xvs_expire. xvs_sweep
// (bpf/expire) walks both pairs in the kernel with bpf_for_each_map_elem
// and removes the idle conns where it finds them, as xvs_expire does.

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"xvs/bpf"
	"xvs/bpf/expire"
)

// ErrNoSweep is SweepConns' error when the kernel refused xvs_sweep; the
// caller walks the tables itself (WalkConns, ExpireConns).
var ErrNoSweep = errors.New("in-kernel sweep not available")

// SweepTimeouts are the idle timeouts SweepConns applies.
type SweepTimeouts struct {
	New time.Duration // a conn that has forwarded no packet yet (CONN_F_NEW)
	UDP time.Duration
	// TCP by state; a state out of range takes STATE_NONE's.
	TCP [bpf.XvsTcpStateSTATE_MAX]time.Duration
}

// sweeper is the loaded xvs_sweep.
type sweeper struct {
	mu     sync.Mutex
	loaded bool
	closed bool
	err    error // why loading failed; not retried
	prog   *ebpf.Program
}

func (s *sweeper) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.prog != nil {
		s.prog.Close()
		s.prog = nil
	}
}

// sweepLimit is how many conns one run of xvs_sweep removes at most:
// about 1.5 ms of CPU here, as one batch of xvs_expire. The kernel's walk
// does not yield the CPU, and on a kernel without preemption no other
// task runs there meanwhile: a threaded NAPI poll, or ksoftirqd, waits
// for the run, and the packets queued for it overflow their ring.
const sweepLimit = 1 << 10

// SweepResult is what a sweep did.
type SweepResult struct {
	Removed int
	// Left is how many conns the run kept: as many as the pairs hold
	// after the sweep, give or take the datapath's. Meaningless if Cut.
	Left int
	// Cut: the run stopped at its limit of removals or of visits before
	// the end of the tables; the caller expires the rest by walking them
	// (WalkConns, ExpireConns).
	Cut bool
}

// SweepConns removes conns of both pairs that at now (the
// bpf_ktime_get_ns clock, see Now) have been idle for longer than their
// timeout, each as ExpireConns removes a candidate: its server-side key
// only where it still points at it, counted out of its real server's
// class once, kept if the datapath promoted it meanwhile. One run of
// xvs_sweep does the walk and the removal in the kernel, and holds its CPU
// for it: it stops after sweepLimit removals or maxVisits conns looked at
// (0: no bound; the walk costs some 0.15 us per conn here, a removal
// about 1.5 us) and reports Cut. A walk cannot resume where a run
// stopped, and running it again from the start would look at the conns
// it kept again, so a cut sweep is the caller's to finish by walking.
// Concurrent calls are serialised.
//
// A conn whose element the kernel's hash walk meets after another CPU
// reused it (a delete then an insert) may be missed; the next sweep finds
// it. If the kernel refuses the program (bpf_for_each_map_elem on hash
// maps came with Linux 5.13), it returns ErrNoSweep.
func (m *Maps) SweepConns(now time.Duration, to SweepTimeouts, maxVisits int) (SweepResult, error) {
	s := &m.sweep
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return SweepResult{}, errors.New("sweep conns: maps closed")
	}
	if !s.loaded {
		s.loaded = true
		s.prog, s.err = loadSweep(m)
	}
	if s.err != nil {
		return SweepResult{}, fmt.Errorf("%w: %w", ErrNoSweep, s.err)
	}
	return s.run(now, to, sweepLimit, maxVisits)
}

// run runs xvs_sweep once; s.mu is held.
func (s *sweeper) run(now time.Duration, to SweepTimeouts, limit uint32, maxVisits int) (SweepResult, error) {
	args := expire.ExpireSweepArgs{
		Now:       uint64(max(now, 0)),
		NewTo:     uint64(max(to.New, 0)),
		UdpTo:     uint64(max(to.UDP, 0)),
		Limit:     limit,
		MaxVisits: uint32(min(max(maxVisits, 0), math.MaxUint32)),
	}
	for i, d := range to.TCP {
		args.TcpTo[i] = uint64(max(d, 0))
	}
	var out expire.ExpireSweepArgs
	ret, err := s.prog.Run(&ebpf.RunOptions{Context: args, ContextOut: &out})
	res := SweepResult{Removed: int(ret), Left: max(int(out.Visited)-int(ret), 0), Cut: out.Cut != 0}
	if err != nil {
		return res, fmt.Errorf("run xvs_sweep: %w", err)
	}
	return res, nil
}

// loadSweep loads xvs_sweep with the maps of maps.h replaced by m's.
func loadSweep(m *Maps) (*ebpf.Program, error) {
	coll, err := loadExpireProg(m, expire.ExpireProgXvsSweep)
	if err != nil {
		return nil, err
	}
	defer coll.Close() // the replaced maps are not closed: they are not the collection's
	return coll.DetachProgram(expire.ExpireProgXvsSweep), nil
}
