package maps

// The in-kernel sweep. Expiring by walking the tables from user space
// copies every conn out (about half a microsecond each, in a table of a
// million) to hand the idle ones back to xvs_expire. xvs_sweep
// (bpf/expire) walks both pairs in the kernel with bpf_for_each_map_elem
// and removes the idle conns where it finds them, as xvs_expire does.

import (
	"errors"
	"fmt"
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

// sweepLimit is how many conns one run of xvs_sweep removes at most
// (some 20 ms of CPU here): the kernel's walk does not yield the CPU, and
// on a kernel without preemption no other task runs there meanwhile.
const sweepLimit = 1 << 14

// SweepResult is what a sweep did.
type SweepResult struct {
	Removed int
	// Left is how many conns the last run kept: as many as the pairs
	// hold after the sweep, give or take the datapath's.
	Left int
}

// SweepConns removes every conn of both pairs that at now (the
// bpf_ktime_get_ns clock, see Now) has been idle for longer than its
// timeout, each as ExpireConns removes a candidate: its server-side key
// only where it still points at it, counted out of its real server's
// class once, kept if the datapath promoted it meanwhile. It reports how
// many it removed. One run of xvs_sweep does the walk and the removal in
// the kernel, sweepLimit removals per run, each run walking again from
// the start; concurrent calls are serialised. One run holds its CPU for
// its walk (0.15 us per conn here): the caller keeps it to tables of a
// size it can afford, by Left.
//
// A conn whose element the kernel's hash walk meets after another CPU
// reused it (a delete then an insert) may be missed; the next sweep finds
// it. If the kernel refuses the program (bpf_for_each_map_elem on hash
// maps came with Linux 5.13), it returns ErrNoSweep.
func (m *Maps) SweepConns(now time.Duration, to SweepTimeouts) (SweepResult, error) {
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
	return s.run(now, to, sweepLimit)
}

// run runs xvs_sweep until a run removes fewer than limit; s.mu is held.
func (s *sweeper) run(now time.Duration, to SweepTimeouts, limit uint32) (SweepResult, error) {
	args := expire.ExpireSweepArgs{
		Now:   uint64(max(now, 0)),
		NewTo: uint64(max(to.New, 0)),
		UdpTo: uint64(max(to.UDP, 0)),
		Limit: limit,
	}
	for i, d := range to.TCP {
		args.TcpTo[i] = uint64(max(d, 0))
	}
	var res SweepResult
	for {
		var out expire.ExpireSweepArgs
		ret, err := s.prog.Run(&ebpf.RunOptions{Context: args, ContextOut: &out})
		res.Removed += int(ret)
		res.Left = max(int(out.Visited)-int(ret), 0)
		if err != nil {
			return res, fmt.Errorf("run xvs_sweep: %w", err)
		}
		if ret < limit {
			return res, nil
		}
	}
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
