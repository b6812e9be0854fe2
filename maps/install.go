package maps

// Batched installs for the first-packet path. InstallConn costs about
// five map syscalls per conn (a lookup in the main pair, the two keys,
// the shadowing server-side key), which at a few microseconds each on a
// VM made them most of a punt worker's time per new flow. InstallConns
// hands up to installBatch new conns to xvs_install (bpf/install), a
// BPF_PROG_TYPE_SYSCALL program that does the same checks and inserts in
// the kernel: one syscall per batch. Its records live in an mmapped array
// (one slot per worker), so writing them and reading the results costs
// no syscall either.
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
	"xvs/bpf/install"
)

// installBatch is how many conns one run of xvs_install takes
// (INSTALL_BATCH in bpf/install/install.c), installSlots how many runs
// may be in flight at once (INSTALL_SLOTS).
const (
	installBatch = len(install.InstallInstBatch{}.Recs)
	installSlots = 16
)

// The install object's bindings are distinct Go types for the same C
// structs of bpf/xvs.h: they must have the same sizes (the records are
// converted with unsafe casts).
var (
	_ [unsafe.Sizeof(bpf.XvsConnKey{}) - unsafe.Sizeof(install.InstallConnKey{})]struct{}
	_ [unsafe.Sizeof(install.InstallConnKey{}) - unsafe.Sizeof(bpf.XvsConnKey{})]struct{}
	_ [unsafe.Sizeof(bpf.XvsConn{}) - unsafe.Sizeof(install.InstallConn{})]struct{}
	_ [unsafe.Sizeof(install.InstallConn{}) - unsafe.Sizeof(bpf.XvsConn{})]struct{}
)

// installBatchSize is the stride of xvs_inst_batch in its mmap.
const installBatchSize = (int(unsafe.Sizeof(install.InstallInstBatch{})) + 7) &^ 7

// installer is the loaded xvs_install, its batch map mapped shared, and
// which slots are taken.
type installer struct {
	mu     sync.Mutex
	loaded bool
	closed bool
	err    error // why loading failed; not retried (InstallConns falls back)
	loadedProg
	free []int // slots not in use
}

// loadedProg is a syscall program and its batch map, mapped shared.
type loadedProg struct {
	prog  *ebpf.Program
	batch *ebpf.Map
	mem   []byte
}

// close unmaps the batch and closes the program and the map, if loaded.
func (l *loadedProg) close() {
	if l.mem != nil {
		_ = unix.Munmap(l.mem)
		l.mem = nil
	}
	if l.prog != nil {
		l.prog.Close()
		l.prog = nil
	}
	if l.batch != nil {
		l.batch.Close()
		l.batch = nil
	}
}

func (in *installer) close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	in.loadedProg.close()
}

// slot takes a free slot, loading the program on first use. It returns
// -1 when the program is not to be had (the caller falls back).
func (in *installer) slot(m *Maps) (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return -1, errors.New("maps closed")
	}
	if !in.loaded {
		in.loaded = true
		in.err = in.load(m)
	}
	if in.err != nil || len(in.free) == 0 {
		return -1, nil
	}
	s := in.free[len(in.free)-1]
	in.free = in.free[:len(in.free)-1]
	return s, nil
}

func (in *installer) put(s int) {
	in.mu.Lock()
	in.free = append(in.free, s)
	in.mu.Unlock()
}

func (in *installer) load(m *Maps) error {
	spec, err := install.LoadInstall()
	if err != nil {
		return fmt.Errorf("load install spec: %w", err)
	}
	live := map[string]*ebpf.Map{
		install.InstallMapXvsConns:     m.conns,
		install.InstallMapXvsRconns:    m.rconns,
		install.InstallMapXvsConnsNew:  m.nconns,
		install.InstallMapXvsRconnsNew: m.nrconns,
		install.InstallMapXvsDests:     m.dests,
		install.InstallMapXvsFlowVoid:  m.flowVoid,
	}
	coll, err := loadSyscallProg(spec, install.InstallProgXvsInstall, live)
	if err != nil {
		return err
	}
	in.prog = coll.DetachProgram(install.InstallProgXvsInstall)
	in.batch = coll.DetachMap(install.InstallMapXvsInstBatch)
	coll.Close() // the replaced maps are not closed: they are not the collection's
	if in.batch == nil {
		in.prog.Close()
		return errors.New("install program does not use its batch map")
	}
	size := installBatchSize * int(in.batch.MaxEntries())
	page := unix.Getpagesize()
	in.mem, err = unix.Mmap(in.batch.FD(), 0, (size+page-1)/page*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap xvs_inst_batch: %w", err)
	}
	for s := range min(int(in.batch.MaxEntries()), installSlots) {
		in.free = append(in.free, s)
	}
	return nil
}

// loadSyscallProg loads program name of spec with the maps of maps.h
// replaced by live ones. Maps and variables the program does not use are
// dropped from the spec, so nothing else is created; the program's own
// maps (not in live) are created.
func loadSyscallProg(spec *ebpf.CollectionSpec, name string, live map[string]*ebpf.Map) (*ebpf.Collection, error) {
	prog := spec.Programs[name]
	if prog == nil {
		return nil, fmt.Errorf("object has no program %s", name)
	}
	for pn := range spec.Programs {
		if pn != name {
			delete(spec.Programs, pn) // and the maps only they use, below
		}
	}
	used := make(map[string]bool)
	for _, ins := range prog.Instructions {
		if ins.IsLoadFromMap() {
			used[ins.Reference()] = true
		}
	}
	repl := make(map[string]*ebpf.Map)
	for mn, ms := range spec.Maps {
		if !used[mn] {
			delete(spec.Maps, mn)
			continue
		}
		ms.Pinning = ebpf.PinNone
		if lm := live[mn]; lm != nil {
			// The loader sizes the conn tables at load, and whether a
			// table is preallocated is the datapath's business, not
			// this program's; the rest of the spec must match (same
			// header), which the load checks.
			ms.MaxEntries = lm.MaxEntries()
			ms.Flags = lm.Flags()
			repl[mn] = lm
		}
	}
	for vn, vs := range spec.Variables {
		if spec.Maps[vs.SectionName] == nil {
			delete(spec.Variables, vn)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: repl})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	return coll, nil
}

// InstallConns installs new conns of the first-packet path (not
// established: into the new pair) as InstallConn does, with one syscall
// per batch. errs (len(cs) long) receives each conn's outcome: nil,
// ErrConnExists (either pair has its client-side key: another installer
// won, or the datapath punted a packet of an existing conn), or another
// error. A conn that meets a full new pair is retried alone with
// InstallConn, which makes room. Without the program (a kernel that
// refuses it) every conn goes through InstallConn.
func (m *Maps) InstallConns(cs []Conn, errs []error) {
	if len(errs) < len(cs) {
		panic("maps: InstallConns: errs shorter than cs")
	}
	slot, err := m.inst.slot(m)
	if err != nil {
		for i := range cs {
			errs[i] = fmt.Errorf("install conn: %w", err)
		}
		return
	}
	if slot < 0 {
		for i, c := range cs {
			errs[i] = m.InstallConn(c)
		}
		return
	}
	defer m.inst.put(slot)
	for len(cs) > 0 {
		n := min(len(cs), installBatch)
		m.installRun(slot, cs[:n], errs[:n])
		cs, errs = cs[n:], errs[n:]
	}
}

// ConnsExist says for each conn of cs (Proto, Client and VIP are used)
// whether either pair has its client-side key, with one syscall per
// installBatch conns: the first-packet path checks a batch of punted
// frames with it before scheduling them. A conn whose key cannot be built
// is reported absent (its install fails the same way).
func (m *Maps) ConnsExist(cs []Conn, exist []bool) error {
	if len(exist) < len(cs) {
		panic("maps: ConnsExist: exist shorter than cs")
	}
	slot, err := m.inst.slot(m)
	if err != nil {
		return fmt.Errorf("look conns up: %w", err)
	}
	if slot < 0 {
		for i, c := range cs {
			_, err := m.LookupConn(c.Proto, c.Client, c.VIP)
			exist[i] = err == nil
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		return nil
	}
	defer m.inst.put(slot)
	b := (*install.InstallInstBatch)(unsafe.Pointer(&m.inst.mem[slot*installBatchSize]))
	for len(cs) > 0 {
		n := min(len(cs), installBatch)
		idx := make([]int, 0, n)
		for i, c := range cs[:n] {
			exist[i] = false
			ck, err := connKeyToBPF(c.Proto, c.Client, c.VIP)
			if err != nil {
				continue
			}
			b.Recs[len(idx)].Ckey = *(*install.InstallConnKey)(unsafe.Pointer(&ck))
			idx = append(idx, i)
		}
		if len(idx) > 0 {
			args := install.InstallInstArgs{Slot: uint32(slot), N: uint32(len(idx)), Check: 1}
			if _, err := m.inst.prog.Run(&ebpf.RunOptions{Context: args}); err != nil {
				return fmt.Errorf("look conns up: run xvs_install: %w", err)
			}
			for j, i := range idx {
				exist[i] = b.Result[j] == uint8(install.InstallInstResultINST_EXISTS)
			}
		}
		cs, exist = cs[n:], exist[n:]
	}
	return nil
}

// installRun installs up to installBatch conns in one run, in slot.
func (m *Maps) installRun(slot int, cs []Conn, errs []error) {
	b := (*install.InstallInstBatch)(unsafe.Pointer(&m.inst.mem[slot*installBatchSize]))
	idx := make([]int, 0, len(cs)) // record -> index in cs
	for i, c := range cs {
		if c.LastSeen == 0 {
			c.LastSeen = Now()
		}
		ck, sk, v, err := m.connToBPF(c)
		if err == nil && established(c.Proto, c.State) {
			err = errors.New("established conn: use InstallConn")
		}
		if err != nil {
			errs[i] = fmt.Errorf("install conn: %w", err)
			continue
		}
		r := &b.Recs[len(idx)]
		r.Ckey = *(*install.InstallConnKey)(unsafe.Pointer(&ck))
		r.Skey = *(*install.InstallConnKey)(unsafe.Pointer(&sk))
		r.Val = *(*install.InstallConn)(unsafe.Pointer(&v))
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return
	}
	_, err := m.inst.prog.Run(&ebpf.RunOptions{Context: install.InstallInstArgs{Slot: uint32(slot), N: uint32(len(idx))}})
	if err != nil {
		for _, i := range idx {
			errs[i] = fmt.Errorf("install conn %s -> %s: run xvs_install: %w", cs[i].Client, cs[i].VIP, err)
		}
		return
	}
	for j, i := range idx {
		c := cs[i]
		switch install.InstallInstResult(b.Result[j]) {
		case install.InstallInstResultINST_OK:
			m.halfOpen.push(*(*bpf.XvsConnKey)(unsafe.Pointer(&b.Recs[j].Ckey)))
			m.addDestConns(c.DestID, c.State, 1)
			errs[i] = nil
		case install.InstallInstResultINST_EXISTS:
			errs[i] = fmt.Errorf("install conn %s -> %s: %w", c.Client, c.VIP, ErrConnExists)
		case install.InstallInstResultINST_FULL:
			errs[i] = m.InstallConn(c) // makes room
		default:
			errs[i] = fmt.Errorf("install conn %s -> %s: %w", c.Client, c.VIP, unix.Errno(-b.Err[j]))
		}
	}
}
