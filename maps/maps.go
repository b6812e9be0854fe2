// Package maps gives typed Go access to every map of the xvs datapath:
// services, connections (both keys kept together, in the half-open or the
// established pair of tables), real-server counters
// shared through an mmap, per-CPU statistics, verdict reasons and the
// daemon's configuration entry.
package maps

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"xvs/bpf"
)

var (
	// ErrConnExists means the client-side key is already installed:
	// another installer won the race, look the conn up again.
	ErrConnExists = errors.New("connection exists")
	// ErrNotFound means the key is not in the map.
	ErrNotFound = errors.New("not found")
	// ErrConnTableFull means the half-open table (xvs_conns_new) is full
	// and no room could be made in it: the first packet that wanted the
	// conn is to be dropped. Established conns are unaffected.
	ErrConnTableFull = errors.New("half-open connection table full")
)

// destSize is the stride of xvs_dests in its mmap: sizeof(struct dest),
// already a multiple of 8 as the kernel requires for mmapable arrays.
const destSize = int(unsafe.Sizeof(bpf.XvsDest{}))

// Field offsets inside one struct dest in the mmap.
var (
	offActive   = int(unsafe.Offsetof(bpf.XvsDest{}.Active))
	offInactive = int(unsafe.Offsetof(bpf.XvsDest{}.Inactive))
	offFlags    = int(unsafe.Offsetof(bpf.XvsDest{}.Flags))
	// The family byte and its padding are one aligned word, so that Go
	// reads and writes it atomically; so are the four words of addr.
	offFamily = int(unsafe.Offsetof(bpf.XvsDest{}.Family))
	offAddr   = int(unsafe.Offsetof(bpf.XvsDest{}.Addr))
)

// Maps is typed access to the datapath's maps. It is safe for concurrent
// use. It does not own the maps' file descriptors: Close only unmaps
// xvs_dests, and the caller closes the maps.
type Maps struct {
	svcs      *ebpf.Map
	vips      *ebpf.Map // service id -> its key, for the reverse lookup
	conns     *ebpf.Map // main pair: established conns (LRU)
	rconns    *ebpf.Map
	nconns    *ebpf.Map // new pair: half-open conns (hash, nothing evicts)
	nrconns   *ebpf.Map
	dests     *ebpf.Map
	svcStats  *ebpf.Map
	destStats *ebpf.Map
	reasons   *ebpf.Map
	cfg       *ebpf.Map
	budget    *ebpf.Map
	rings     *ebpf.Map // service id -> datapath scheduling ring
	events    *ebpf.Map

	ncpu int
	// destMem is xvs_dests mapped shared: counters are changed with
	// atomic operations on it, the same way the datapath changes them,
	// so no update is lost (a map update would overwrite the whole value).
	destMem []byte
	destMax uint32
	// voidMem is xvs_flow_void mapped shared: the time before which the
	// datapath's flow cache copies are void, raised with a
	// compare-and-swap as the datapath raises it (voidFlows).
	voidMem  []byte
	flowVoid *ebpf.Map
	cfgMu    sync.Mutex // serialises read-modify-write of xvs_cfg[0]
	// halfOpen lists the client-side keys installed into the new pair,
	// oldest first: the victims when it is full (see makeRoom).
	halfOpen keyRing
	evicted  atomic.Uint64 // half-open conns removed to make room
	expire   expirer       // xvs_expire, loaded on first ExpireConns
	sweep    sweeper       // xvs_sweep, loaded on first SweepConns
	inst     installer     // xvs_install, loaded on first InstallConns
	closeMu  sync.Mutex
	isClosed bool
}

// New wraps loaded maps and mmaps xvs_dests.
func New(m *bpf.XvsMaps) (*Maps, error) {
	if m == nil || m.XvsSvcs == nil || m.XvsConns == nil || m.XvsRconns == nil ||
		m.XvsConnsNew == nil || m.XvsRconnsNew == nil || m.XvsDests == nil ||
		m.XvsSvcStats == nil || m.XvsDestStats == nil || m.XvsReasons == nil || m.XvsCfg == nil || m.XvsBudget == nil ||
		m.XvsVips == nil || m.XvsRings == nil || m.XvsEvents == nil || m.XvsFlowVoid == nil {
		return nil, errors.New("new maps: missing map")
	}
	if got := int(m.XvsDests.ValueSize()); got != destSize {
		return nil, fmt.Errorf("new maps: xvs_dests value size %d, want %d", got, destSize)
	}
	if m.XvsDests.Flags()&unix.BPF_F_MMAPABLE == 0 {
		return nil, errors.New("new maps: xvs_dests is not mmapable")
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("new maps: possible cpus: %w", err)
	}
	entries := m.XvsDests.MaxEntries()
	page := unix.Getpagesize()
	size := (int(entries)*destSize + page - 1) / page * page
	mem, err := unix.Mmap(m.XvsDests.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("new maps: mmap xvs_dests: %w", err)
	}
	voidMem, err := mmapFlowVoid(m.XvsFlowVoid)
	if err != nil {
		_ = unix.Munmap(mem)
		return nil, fmt.Errorf("new maps: %w", err)
	}
	return &Maps{
		svcs:      m.XvsSvcs,
		vips:      m.XvsVips,
		conns:     m.XvsConns,
		rconns:    m.XvsRconns,
		nconns:    m.XvsConnsNew,
		nrconns:   m.XvsRconnsNew,
		halfOpen:  keyRing{keys: make([]bpf.XvsConnKey, m.XvsConnsNew.MaxEntries())},
		dests:     m.XvsDests,
		svcStats:  m.XvsSvcStats,
		destStats: m.XvsDestStats,
		reasons:   m.XvsReasons,
		cfg:       m.XvsCfg,
		budget:    m.XvsBudget,
		rings:     m.XvsRings,
		events:    m.XvsEvents,
		ncpu:      ncpu,
		destMem:   mem,
		destMax:   entries,
		voidMem:   voidMem,
		flowVoid:  m.XvsFlowVoid,
	}, nil
}

// Close unmaps xvs_dests. The maps themselves stay open; no method may be
// called after Close.
func (m *Maps) Close() error {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	if m.isClosed {
		return nil
	}
	m.isClosed = true
	m.expire.close()
	m.sweep.close()
	m.inst.close()
	if err := unix.Munmap(m.voidMem); err != nil {
		return fmt.Errorf("unmap xvs_flow_void: %w", err)
	}
	if err := unix.Munmap(m.destMem); err != nil {
		return fmt.Errorf("unmap xvs_dests: %w", err)
	}
	return nil
}

// SvcKey identifies a virtual service.
type SvcKey struct {
	Proto uint8 // unix.IPPROTO_TCP or unix.IPPROTO_UDP
	Addr  netip.AddrPort
}

// PutService maps a virtual service to its id (index of its statistics)
// and records the service's key under its id in xvs_vips, where the
// datapath's reverse lookup finds a conn's VIP. The xvs_vips entry stays
// when the service is deleted: its conns may outlive it.
func (m *Maps) PutService(k SvcKey, id uint32) error {
	bk, err := svcKeyToBPF(k)
	if err != nil {
		return fmt.Errorf("put service: %w", err)
	}
	if id >= m.vips.MaxEntries() {
		return fmt.Errorf("put service %d %s: id %d out of range (max %d)", k.Proto, k.Addr, id, m.vips.MaxEntries())
	}
	// The VIP first: a conn of the service may be installed as soon as
	// the service is visible.
	if err := m.vips.Put(&id, &bk); err != nil {
		return fmt.Errorf("put service %d %s: virtual address: %w", k.Proto, k.Addr, err)
	}
	if err := m.svcs.Put(&bk, &bpf.XvsSvc{Id: id}); err != nil {
		return fmt.Errorf("put service %d %s: %w", k.Proto, k.Addr, err)
	}
	return nil
}

// DeleteService removes a virtual service; ErrNotFound if it is not there.
func (m *Maps) DeleteService(k SvcKey) error {
	bk, err := svcKeyToBPF(k)
	if err != nil {
		return fmt.Errorf("delete service: %w", err)
	}
	if err := m.svcs.Delete(&bk); err != nil {
		return fmt.Errorf("delete service %d %s: %w", k.Proto, k.Addr, notFound(err))
	}
	return nil
}

// Services returns every installed virtual service and its id, to rebuild
// the service table after a restart.
func (m *Maps) Services() (map[SvcKey]uint32, error) {
	out := make(map[SvcKey]uint32)
	var (
		bk bpf.XvsSvcKey
		v  bpf.XvsSvc
	)
	it := m.svcs.Iterate()
	for it.Next(&bk, &v) {
		k, err := svcKeyFromBPF(bk)
		if err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		out[k] = v.Id
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	return out, nil
}

// destField returns a pointer into the mmap of xvs_dests, or nil when id
// is out of range.
func (m *Maps) destField(id uint32, off int) unsafe.Pointer {
	if id >= m.destMax {
		return nil
	}
	return unsafe.Pointer(&m.destMem[int(id)*destSize+off])
}

func (m *Maps) checkDest(id uint32) error {
	if id >= m.destMax {
		return fmt.Errorf("dest id %d out of range (max %d)", id, m.destMax)
	}
	return nil
}

// SetDest sets a real server's address (what the datapath rewrites its
// conns' destination to) and whether it is available (on its service's
// list). Its counters are left alone. The address must be set before the
// id's first conn is installed and must not change while a conn uses the
// id (InstallConn refuses a conn whose Dest is not it).
func (m *Maps) SetDest(id uint32, addr netip.Addr, available bool) error {
	if err := m.checkDest(id); err != nil {
		return fmt.Errorf("set dest: %w", err)
	}
	b, fam, err := addrBytes(addr)
	if err != nil {
		return fmt.Errorf("set dest %d: %w", id, err)
	}
	for i := 0; i < 16; i += 4 {
		w := *(*uint32)(unsafe.Pointer(&b[i])) // memory order, as stored
		atomic.StoreUint32((*uint32)(m.destField(id, offAddr+i)), w)
	}
	atomic.StoreUint32((*uint32)(m.destField(id, offFamily)), familyWord(fam))
	var flags uint32
	if available {
		flags = uint32(bpf.XvsDestFlagsDEST_F_AVAILABLE)
	}
	atomic.StoreUint32((*uint32)(m.destField(id, offFlags)), flags)
	return nil
}

// familyWord is the aligned word holding struct dest's family byte (its
// padding zero), as Go stores it.
func familyWord(fam uint8) uint32 {
	var w [4]byte
	w[0] = fam
	return *(*uint32)(unsafe.Pointer(&w))
}

// DestAddr returns the address xvs_dests holds for id (set by SetDest);
// false if id is out of range or has no address.
func (m *Maps) DestAddr(id uint32) (netip.Addr, bool) {
	if id >= m.destMax {
		return netip.Addr{}, false
	}
	fw := atomic.LoadUint32((*uint32)(m.destField(id, offFamily)))
	var b [16]byte
	for i := 0; i < 16; i += 4 {
		*(*uint32)(unsafe.Pointer(&b[i])) = atomic.LoadUint32((*uint32)(m.destField(id, offAddr+i)))
	}
	var fam [4]byte
	*(*uint32)(unsafe.Pointer(&fam)) = fw
	a, err := addrFromBytes(b, fam[0])
	if err != nil {
		return netip.Addr{}, false
	}
	return a, true
}

// ResetDest zeroes the counters, flags, address and per-CPU statistics of a dest id
// before it is reused for a new real server.
func (m *Maps) ResetDest(id uint32) error {
	if err := m.checkDest(id); err != nil {
		return fmt.Errorf("reset dest: %w", err)
	}
	atomic.StoreUint32((*uint32)(m.destField(id, offFlags)), 0)
	atomic.StoreUint32((*uint32)(m.destField(id, offFamily)), 0)
	for i := 0; i < 16; i += 4 {
		atomic.StoreUint32((*uint32)(m.destField(id, offAddr+i)), 0)
	}
	atomic.StoreInt64((*int64)(m.destField(id, offActive)), 0)
	atomic.StoreInt64((*int64)(m.destField(id, offInactive)), 0)
	if err := m.destStats.Put(&id, make([]bpf.XvsStats, m.ncpu)); err != nil {
		return fmt.Errorf("reset dest %d stats: %w", id, err)
	}
	return nil
}

// DestConns returns a real server's ActiveConn and InActConn. It reads the
// shared mmap and does not allocate, so schedulers may call it per packet.
// Out-of-range ids read as zero.
func (m *Maps) DestConns(id uint32) (active, inactive int64) {
	if id >= m.destMax {
		return 0, 0
	}
	return atomic.LoadInt64((*int64)(m.destField(id, offActive))),
		atomic.LoadInt64((*int64)(m.destField(id, offInactive)))
}

// DestAvailable reports the availability flag of a dest id.
func (m *Maps) DestAvailable(id uint32) bool {
	if id >= m.destMax {
		return false
	}
	f := atomic.LoadUint32((*uint32)(m.destField(id, offFlags)))
	return f&uint32(bpf.XvsDestFlagsDEST_F_AVAILABLE) != 0
}

// addDestConns counts a conn in (n > 0) or out of (n < 0) the class of
// its state.
func (m *Maps) addDestConns(id uint32, state uint8, n int64) {
	off := offInactive
	if Active(state) {
		off = offActive
	}
	if p := m.destField(id, off); p != nil {
		atomic.AddInt64((*int64)(p), n)
	}
}

// Active reports whether a TCP state counts as ActiveConn (IPVS:
// ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK); every other state, and UDP's
// NONE, counts as InActConn.
func Active(state uint8) bool {
	switch bpf.XvsTcpState(state) {
	case bpf.XvsTcpStateSTATE_ESTABLISHED, bpf.XvsTcpStateSTATE_SYN_SENT,
		bpf.XvsTcpStateSTATE_SYN_RECV, bpf.XvsTcpStateSTATE_SYNACK:
		return true
	}
	return false
}

// Conn is one connection: the client-side tuple, where it goes, its state.
type Conn struct {
	Proto    uint8
	Client   netip.AddrPort
	VIP      netip.AddrPort
	Dest     netip.AddrPort // its address is xvs_dests' for DestID (SetDest)
	State    uint8          // enum tcp_state (IPVS numbering); UDP stays 0
	Flags    uint8          // enum conn_flags
	SvcID    uint32
	DestID   uint32
	LastSeen time.Duration // bpf_ktime_get_ns clock, see Now
}

// Stats are IPVS's five counters of a service or real server.
type Stats struct {
	Conns, InPkts, OutPkts, InBytes, OutBytes uint64
}

// ServiceStats returns a service's counters summed over all CPUs.
func (m *Maps) ServiceStats(id uint32) (Stats, error) {
	s, err := m.sumStats(m.svcStats, id)
	if err != nil {
		return s, fmt.Errorf("service %d stats: %w", id, err)
	}
	return s, nil
}

// DestStats returns a real server's counters summed over all CPUs.
func (m *Maps) DestStats(id uint32) (Stats, error) {
	s, err := m.sumStats(m.destStats, id)
	if err != nil {
		return s, fmt.Errorf("dest %d stats: %w", id, err)
	}
	return s, nil
}

func (m *Maps) sumStats(mp *ebpf.Map, id uint32) (Stats, error) {
	var s Stats
	if id >= mp.MaxEntries() {
		return s, fmt.Errorf("id out of range (max %d)", mp.MaxEntries())
	}
	per := make([]bpf.XvsStats, m.ncpu)
	if err := mp.Lookup(&id, &per); err != nil {
		return s, err
	}
	for _, c := range per {
		statsAdd(&s, c)
	}
	return s, nil
}

// Reasons returns the packet count of every verdict reason, summed over
// CPUs and indexed by bpf.XvsReason.
func (m *Maps) Reasons() ([bpf.XvsReasonREASON_MAX]uint64, error) {
	var out [bpf.XvsReasonREASON_MAX]uint64
	err := m.sumPerCPU(m.reasons, out[:], func(i uint32) string { return "reason " + ReasonName(bpf.XvsReason(i)) })
	return out, err
}

// sumPerCPU fills out[i] with entry i of the per-CPU counter array mp,
// summed over CPUs; name(i) names the entry in errors.
func (m *Maps) sumPerCPU(mp *ebpf.Map, out []uint64, name func(uint32) string) error {
	per := make([]uint64, m.ncpu)
	for i := range uint32(len(out)) {
		if err := mp.Lookup(&i, &per); err != nil {
			return fmt.Errorf("%s: %w", name(i), err)
		}
		for _, n := range per {
			out[i] += n
		}
	}
	return nil
}

var reasonNames = [bpf.XvsReasonREASON_MAX]string{
	bpf.XvsReasonREASON_FWD_IN:           "fwd_in",
	bpf.XvsReasonREASON_FWD_OUT:          "fwd_out",
	bpf.XvsReasonREASON_PUNT:             "punt",
	bpf.XvsReasonREASON_PASS_NOT_IP:      "pass_not_ip",
	bpf.XvsReasonREASON_PASS_NOT_L4:      "pass_not_l4",
	bpf.XvsReasonREASON_PASS_FRAGMENT:    "pass_fragment",
	bpf.XvsReasonREASON_PASS_IPV6EXT:     "pass_ipv6_ext",
	bpf.XvsReasonREASON_PASS_NO_SVC:      "pass_no_svc",
	bpf.XvsReasonREASON_PASS_NOT_FIRST:   "pass_not_first",
	bpf.XvsReasonREASON_PASS_TTL:         "pass_ttl",
	bpf.XvsReasonREASON_PASS_FIB:         "pass_fib",
	bpf.XvsReasonREASON_PASS_NO_NEIGH:    "pass_no_neigh",
	bpf.XvsReasonREASON_PASS_MTU:         "pass_mtu",
	bpf.XvsReasonREASON_DROP_MALFORMED:   "drop_malformed",
	bpf.XvsReasonREASON_DROP_PUNT_STALE:  "drop_punt_stale",
	bpf.XvsReasonREASON_DROP_PUNT_MISS:   "drop_punt_miss",
	bpf.XvsReasonREASON_DROP_NO_DEST:     "drop_no_dest",
	bpf.XvsReasonREASON_DROP_REDIRECT:    "drop_redirect",
	bpf.XvsReasonREASON_FWD_ICMP_IN:      "fwd_icmp_in",
	bpf.XvsReasonREASON_FWD_ICMP_OUT:     "fwd_icmp_out",
	bpf.XvsReasonREASON_PASS_ICMP:        "pass_icmp",
	bpf.XvsReasonREASON_DROP_ICMP_CSUM:   "drop_icmp_csum",
	bpf.XvsReasonREASON_TX_TTL:           "tx_ttl",
	bpf.XvsReasonREASON_TX_FRAG_NEEDED:   "tx_frag_needed",
	bpf.XvsReasonREASON_DROP_TX_FAILED:   "drop_tx_failed",
	bpf.XvsReasonREASON_DROP_PUNT_BUDGET: "drop_punt_budget",
}

// ReasonName is the stable metric label of a reason ("fwd_in", "punt",
// "pass_fragment", ...); unknown reasons read "reason_<n>".
func ReasonName(r bpf.XvsReason) string { return counterName(reasonNames[:], uint32(r), "reason") }

// counterName is names[i], or prefix_<i> for an index without a name.
func counterName(names []string, i uint32, prefix string) string {
	if int(i) < len(names) && names[i] != "" {
		return names[i]
	}
	return fmt.Sprintf("%s_%d", prefix, i)
}

// SetPunt sets the punt device and how long after the last Heartbeat the
// datapath keeps punting first packets (after that it drops them, counted
// as drop_punt_stale). It also stamps the heartbeat.
func (m *Maps) SetPunt(ifindex uint32, staleAfter time.Duration) error {
	return m.updateCfg(func(c *bpf.XvsCfg) {
		c.PuntIfindex = ifindex
		c.StaleNs = uint64(staleAfter)
		c.AliveNs = uint64(Now())
	})
}

// Heartbeat tells the datapath that the daemon is alive: cfg.alive_ns = Now().
func (m *Maps) Heartbeat() error {
	return m.updateCfg(func(c *bpf.XvsCfg) { c.AliveNs = uint64(Now()) })
}

// BumpRouteGen moves cfg.route_gen on: the datapath looks every real
// server's next hop up again instead of taking it from xvs_routes.
func (m *Maps) BumpRouteGen() error {
	return m.updateCfg(func(c *bpf.XvsCfg) { c.RouteGen++ })
}

// Cfg returns the datapath configuration entry.
func (m *Maps) Cfg() (bpf.XvsCfg, error) {
	var c bpf.XvsCfg
	if err := m.cfg.Lookup(uint32(0), &c); err != nil {
		return c, fmt.Errorf("read cfg: %w", err)
	}
	return c, nil
}

// updateCfg is a read-modify-write of xvs_cfg[0]; only the daemon writes
// it, and the mutex keeps its own writers from losing each other's fields.
func (m *Maps) updateCfg(fn func(*bpf.XvsCfg)) error {
	m.cfgMu.Lock()
	defer m.cfgMu.Unlock()
	var c bpf.XvsCfg
	if err := m.cfg.Lookup(uint32(0), &c); err != nil {
		return fmt.Errorf("read cfg: %w", err)
	}
	fn(&c)
	if err := m.cfg.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("write cfg: %w", err)
	}
	return nil
}

// Now is the datapath's clock (bpf_ktime_get_ns, CLOCK_MONOTONIC) as a
// Duration since boot; compare Conn.LastSeen with it, never with time.Now.
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// CLOCK_MONOTONIC cannot fail on Linux; keep the signature simple.
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err))
	}
	return time.Duration(ts.Nano())
}

// notFound turns the ebpf package's missing-key error into ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return ErrNotFound
	}
	return err
}

// SetBudget sets the first-packet budget of service id, or the global one
// when global is set: rate first packets per second with bursts of burst
// (0 = unlimited rate; 0 burst = one second's worth). The bucket starts
// full.
func (m *Maps) SetBudget(id uint32, global bool, rate, burst uint64) error {
	if global {
		id = m.budget.MaxEntries() - 1
	}
	b := bpf.XvsBudget{Rate: rate, Burst: burst}
	if err := m.budget.Update(id, &b, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set first-packet budget %d: %w", id, err)
	}
	return nil
}
