package maps

// Mass expiry. DeleteConnIf costs about seven map syscalls per conn, so
// expiring a million conns took half a minute of CPU. ExpireConns hands
// the candidates to xvs_expire (bpf/expire), a BPF_PROG_TYPE_SYSCALL
// program that does DeleteConnIf's work in the kernel for up to
// expireBatch conns per run: one syscall per batch (the candidates are
// written into the mmapped batch map, then the program runs) instead of
// seven per conn.
//
// The program is loaded on first use against this Maps' own maps
// (CollectionOptions.MapReplacements) and closed by Close.

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"xvs/bpf"
	"xvs/bpf/expire"
)

// expireBatch is how many candidates one run of xvs_expire takes
// (EXPIRE_BATCH in bpf/expire/expire.c).
const expireBatch = len(expire.ExpireBatch{}.Cands)

// Outcomes of one candidate, as xvs_expire reports them.
const (
	outcomeGone    = uint8(expire.ExpireOutcomeOUTCOME_GONE)
	outcomeRemoved = uint8(expire.ExpireOutcomeOUTCOME_REMOVED)
	outcomeFresh   = uint8(expire.ExpireOutcomeOUTCOME_FRESH)
)

// expirer is the loaded xvs_expire and its batch map. The batch map is a
// single buffer, so runs are serialised by mu.
type expirer struct {
	mu     sync.Mutex
	loaded bool
	closed bool
	err    error // why loading failed; not retried (see ExpireConns)
	loadedProg
	buf *expire.ExpireBatch // points into mem
}

// close releases the program and the batch map, if loaded.
func (e *expirer) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	e.buf = nil
	e.loadedProg.close()
}

// load loads xvs_expire against m's maps and maps its batch; e.mu is
// held.
func (e *expirer) load(m *Maps) error {
	prog, batch, err := loadExpire(m)
	if err != nil {
		return err
	}
	size := int(unsafe.Sizeof(expire.ExpireBatch{}))
	if got := int(batch.ValueSize()); got != size {
		prog.Close()
		batch.Close()
		return fmt.Errorf("xvs_exp_batch value size %d, want %d", got, size)
	}
	page := unix.Getpagesize()
	mem, err := unix.Mmap(batch.FD(), 0, (size+page-1)/page*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		prog.Close()
		batch.Close()
		return fmt.Errorf("mmap xvs_exp_batch: %w", err)
	}
	e.prog, e.batch, e.mem = prog, batch, mem
	// The struct holds no Go pointers, so it may live outside the Go heap.
	e.buf = (*expire.ExpireBatch)(unsafe.Pointer(&mem[0]))
	return nil
}

// loadExpire loads xvs_expire with the maps of maps.h replaced by m's.
func loadExpire(m *Maps) (*ebpf.Program, *ebpf.Map, error) {
	coll, err := loadExpireProg(m, expire.ExpireProgXvsExpire)
	if err != nil {
		return nil, nil, err
	}
	defer coll.Close() // the replaced maps are not closed: they are not the collection's
	p, b := coll.DetachProgram(expire.ExpireProgXvsExpire), coll.DetachMap(expire.ExpireMapXvsExpBatch)
	if b == nil {
		p.Close()
		return nil, nil, errors.New("expire program does not use its batch map")
	}
	return p, b, nil
}

// loadExpireProg loads program name of the expire object (xvs_expire or
// xvs_sweep) with the maps of maps.h replaced by m's.
func loadExpireProg(m *Maps, name string) (*ebpf.Collection, error) {
	spec, err := expire.LoadExpire()
	if err != nil {
		return nil, fmt.Errorf("load expire spec: %w", err)
	}
	return loadSyscallProg(spec, name, map[string]*ebpf.Map{
		expire.ExpireMapXvsConns:     m.conns,
		expire.ExpireMapXvsRconns:    m.rconns,
		expire.ExpireMapXvsConnsNew:  m.nconns,
		expire.ExpireMapXvsRconnsNew: m.nrconns,
		expire.ExpireMapXvsDests:     m.dests,
	})
}

// ExpireConns removes every conn of cands whose stored last_seen still
// equals its LastSeen (the value the caller's walk saw), each as
// DeleteConnIf would: from whichever pair holds it, its server-side key
// only where it still points at it, counted out of its real server's
// class once. It reports how many it removed; a conn refreshed since the
// walk, gone already, or promoted to the main pair meanwhile is not
// counted. The work is done in the kernel, expireBatch conns per
// syscall; concurrent calls are serialised.
//
// If the kernel refuses the program (no BPF_PROG_TYPE_SYSCALL, bpf_loop
// or mmapable arrays: Linux before 5.17), it falls back to DeleteConnIf
// per conn.
func (m *Maps) ExpireConns(cands []Conn) (int, error) {
	return m.expireConns(cands, nil)
}

// expireConns is ExpireConns; when out is not nil (len(cands) long) it
// receives each candidate's outcome.
func (m *Maps) expireConns(cands []Conn, out []uint8) (int, error) {
	if len(cands) == 0 {
		return 0, nil
	}
	e := &m.expire
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return 0, errors.New("expire conns: maps closed")
	}
	if !e.loaded {
		e.loaded = true
		e.err = e.load(m)
	}
	if e.err != nil {
		return m.expireEach(cands, out)
	}
	removed := 0
	for len(cands) > 0 {
		n := min(len(cands), expireBatch)
		var o []uint8
		if out != nil {
			o, out = out[:n], out[n:]
		}
		got, err := e.run(cands[:n], o)
		removed += got
		if err != nil {
			return removed, fmt.Errorf("expire conns: %w", err)
		}
		cands = cands[n:]
	}
	return removed, nil
}

// run expires up to expireBatch candidates in one run of xvs_expire; e.mu
// is held.
func (e *expirer) run(cands []Conn, out []uint8) (int, error) {
	for i, c := range cands {
		k, err := connKeyToBPF(c.Proto, c.Client, c.VIP)
		if err != nil {
			return 0, fmt.Errorf("conn %s -> %s: %w", c.Client, c.VIP, err)
		}
		e.buf.Cands[i] = expire.ExpireCand{Key: expireKey(k), LastSeen: uint64(c.LastSeen)}
	}
	ret, err := e.prog.Run(&ebpf.RunOptions{Context: expire.ExpireArgs{N: uint32(len(cands))}})
	if err != nil {
		return 0, fmt.Errorf("run xvs_expire: %w", err)
	}
	copy(out, e.buf.Outcome[:len(cands)])
	return int(ret), nil
}

// expireEach is the fallback without xvs_expire: DeleteConnIf per conn.
func (m *Maps) expireEach(cands []Conn, out []uint8) (int, error) {
	removed := 0
	for i, c := range cands {
		ok, err := m.DeleteConnIf(c, c.LastSeen)
		if err != nil {
			return removed, err
		}
		o := outcomeGone
		if ok {
			removed++
			o = outcomeRemoved
		}
		if out != nil {
			out[i] = o
		}
	}
	return removed, nil
}

// expireKey is k in the expire object's bindings: the same C struct
// (bpf/xvs.h), but a distinct Go type. The load checks that both objects
// agree on its size (the conn maps' key size).
func expireKey(k bpf.XvsConnKey) expire.ExpireConnKey {
	return expire.ExpireConnKey{
		Saddr: k.Saddr, Daddr: k.Daddr, Sport: k.Sport, Dport: k.Dport,
		Proto: k.Proto, Family: k.Family, Pad: k.Pad,
	}
}
