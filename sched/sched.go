// Package sched holds every IPVS scheduler (rr wrr lc wlc lblc lblcr dh sh
// sed nq mh fo ovf twos, and none) as plain Go, together with the per-service
// state IPVS keeps beside them: the ordered real-server list, the OVERLOAD
// flag from -x/-y thresholds and the persistence templates of -p/-M.
//
// Behaviour is Linux IPVS's (see reference/ipvs.md section 4) with one
// deliberate difference: real servers are kept in the order they were added,
// and every walk or "first in list wins" tie-break reads first-added where
// the kernel reads most-recently-added.
//
// The package imports nothing of xvs and nothing of BPF: live connection
// counts come in through the Counters interface.
//
// Thresholds: IPVS sets a dest's OVERLOAD flag when it binds a connection
// and clears it when it unbinds one. In xvs the counters change in the
// datapath, so a Pool re-evaluates the flag from Counters each time it
// schedules (and in Dests) with the same rules: set when active+inactive
// >= u_threshold; once set, cleared when the total drops below
// l_threshold, or below 3/4 of u_threshold when no l_threshold is set.
// Between those bounds the flag keeps its previous value (hysteresis).
//
// Persistence: a template per (protocol, client address masked to
// Config.Netmask bits, VIP:port) maps to a dest. While the dest stays in
// the pool the template is reused without asking the scheduler, even when
// the dest is quiesced or overloaded (IPVS with
// expire_quiescent_template=0), and each use restarts its timeout. Removing
// the dest drops its templates. The control plane calls Expire regularly
// and HoldTemplate for clients whose connections are still alive.
package sched

import (
	"errors"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"time"
)

// Sentinel errors; check them with errors.Is.
var (
	// ErrNoDest: no usable real server (Schedule), or no such real server
	// (EditDest, DelDest).
	ErrNoDest = errors.New("no destination available")
	// ErrDestExists: AddDest of an address:port already in the pool.
	ErrDestExists = errors.New("destination already exists")
	// ErrUnknownScheduler: a scheduler name that is not registered.
	ErrUnknownScheduler = errors.New("unknown scheduler")
	// ErrRange: a weight or threshold IPVS refuses with ERANGE (weight
	// outside 0..65535, lower threshold above the upper one).
	ErrRange = errors.New("value out of range")
)

// IPVS service scheduler flags (IP_VS_SVC_F_SCHED1..3), as set by ipvsadm -b.
const (
	FlagSched1 uint32 = 0x08 // sh-fallback, mh-fallback, flag-1
	FlagSched2 uint32 = 0x10 // sh-port, mh-port, flag-2
	FlagSched3 uint32 = 0x20 // flag-3

	FlagFallback = FlagSched1 // sh-fallback / mh-fallback
	FlagPort     = FlagSched2 // sh-port / mh-port
)

// MaxWeight is the largest weight IPVS accepts.
const MaxWeight = 65535

// Counters reports a real server's live connection counts (the datapath
// keeps them).
type Counters interface {
	Active() int64   // ActiveConn
	Inactive() int64 // InActConn
}

type noCounters struct{}

func (noCounters) Active() int64   { return 0 }
func (noCounters) Inactive() int64 { return 0 }

// DestConfig is what -a/-e set for a real server.
type DestConfig struct {
	Addr       netip.AddrPort // real server address:port
	Weight     int32          // 0..65535; 0 = quiesced
	UThreshold uint32         // 0 = off
	LThreshold uint32         // 0 = off
}

// Flow is what the scheduler sees of a first packet.
type Flow struct {
	Proto  uint8          // 6 TCP, 17 UDP
	Client netip.AddrPort // source
	VIP    netip.AddrPort // destination (virtual service)
}

// Dest is one real server of a Pool. Addr never changes. Weight is written
// by Pool.EditDest under the pool's lock; a caller that edits concurrently
// should read weights from Pool.Dests instead.
type Dest struct {
	Addr   netip.AddrPort
	Weight int32

	uthr, lthr uint32
	lastWeight int32 // latest non-zero weight (mh), 0 if added with 0
	counters   Counters
	overloaded bool // IP_VS_DEST_F_OVERLOAD
	persist    int  // live persistence templates pointing here
}

// Counters returns the counters the dest was added with.
func (d *Dest) Counters() Counters { return d.counters }

// active and inactive clamp what the datapath reports to >= 0.
func (d *Dest) active() uint64 {
	if a := d.counters.Active(); a > 0 {
		return uint64(a)
	}
	return 0
}

func (d *Dest) inactive() uint64 {
	if a := d.counters.Inactive(); a > 0 {
		return uint64(a)
	}
	return 0
}

// usable is the common eligibility test for a new connection: weight > 0
// and not OVERLOAD.
func (d *Dest) usable() bool { return d.Weight > 0 && !d.overloaded }

// overhead is ip_vs_dest_conn_overhead: active*256 + inactive, saturating
// instead of wrapping.
func (d *Dest) overhead() uint64 {
	a, i := d.active(), d.inactive()
	if a > math.MaxUint64>>8 {
		return math.MaxUint64
	}
	s, c := bits.Add64(a<<8, i, 0)
	if c != 0 {
		return math.MaxUint64
	}
	return s
}

// sedOverhead is ip_vs_sed_dest_overhead (and nq's): active + 1.
func (d *Dest) sedOverhead() uint64 {
	a := d.active()
	if a == math.MaxUint64 {
		return a
	}
	return a + 1
}

// heavier reports a/wa > b/wb computed as a*wb > b*wa in 128 bits, the
// kernel's division-free comparison without its overflow. Weights are >= 0.
func heavier(a uint64, wa int32, b uint64, wb int32) bool {
	h1, l1 := bits.Mul64(a, uint64(wb))
	h2, l2 := bits.Mul64(b, uint64(wa))
	return h1 > h2 || (h1 == h2 && l1 > l2)
}

// refreshOverload evaluates the OVERLOAD flag from the live counters with
// IPVS's hysteresis (reference 5.6). IPVS sets the flag after binding a
// connection and clears it after unbinding one; in xvs counters move in the
// datapath, so the flag is re-evaluated whenever the pool schedules: set
// when active+inactive >= u_threshold, cleared below l_threshold (or below
// 3/4 of u_threshold when no l_threshold is set), otherwise kept as it was.
func (d *Dest) refreshOverload() {
	if d.uthr == 0 && d.lthr == 0 {
		d.overloaded = false
		return
	}
	a, i := d.active(), d.inactive()
	total, c := bits.Add64(a, i, 0)
	if c != 0 {
		total = math.MaxUint64
	}
	if d.uthr != 0 && total >= uint64(d.uthr) {
		d.overloaded = true
		return
	}
	if !d.overloaded {
		return
	}
	switch {
	case d.lthr != 0:
		if total < uint64(d.lthr) {
			d.overloaded = false
		}
	default: // uthr != 0 here
		if total < math.MaxUint64/4 && total*4 < uint64(d.uthr)*3 {
			d.overloaded = false
		}
	}
}

// env is what schedulers may consult besides the dest list.
type env struct {
	flags       uint32
	now         func() time.Time
	rand        func() uint32
	cacheExpire time.Duration // lblc_expiration / lblcr_expiration
}

type changeOp int

const (
	opInit changeOp = iota // scheduler bound to the service (dests may exist)
	opAdd                  // dests[at] was appended
	opDel                  // d was removed from index at; dests is the new list
	opEdit                 // dests[at] had its weight or thresholds edited
)

// change tells a scheduler how the dest list changed, as IPVS's
// init_service/add_dest/del_dest/upd_dest hooks do.
type change struct {
	op changeOp
	at int
	d  *Dest
}

// scheduler is one IPVS scheduling algorithm bound to one service.
type scheduler interface {
	// pick returns the real server for f, or nil for "no destination".
	// dests is in xvs order; OVERLOAD flags are already evaluated.
	pick(e *env, dests []*Dest, f Flow) *Dest
	// update is called after every change of the dest list or a dest's
	// configuration, with the new list.
	update(e *env, dests []*Dest, c change)
}

// expirer is implemented by schedulers with entries of their own to age
// (lblc, lblcr).
type expirer interface {
	expire(e *env, now time.Time)
}

// registry maps ipvsadm names to constructors; filled by init functions of
// the scheduler files and read-only afterwards.
var registry = map[string]func() scheduler{}

func register(name string, f func() scheduler) { registry[name] = f }

// Names returns the registered scheduler names, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// hash32 is the kernel's hash_32 (include/linux/hash.h).
func hash32(v uint32, bits uint) uint32 {
	return (v * 0x61C88647) >> (32 - bits)
}

// foldAddr returns an address as the host-order 32-bit value the kernel
// hashes: the IPv4 address, or the XOR of the four words of an IPv6 one.
func foldAddr(a netip.Addr) uint32 {
	a = a.Unmap()
	switch {
	case a.Is4():
		b := a.As4()
		return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	case a.Is6():
		b := a.As16()
		var v uint32
		for i := 0; i < 16; i += 4 {
			v ^= uint32(b[i])<<24 | uint32(b[i+1])<<16 | uint32(b[i+2])<<8 | uint32(b[i+3])
		}
		return v
	}
	return 0
}

// clientKey is what sh and mh hash for a flow: the client address folded
// to 32 bits, plus with sh-port/mh-port (port) its source port for
// protocols that have one (TCP, UDP, SCTP), as ip_vs_sh_get_port does.
func clientKey(f Flow, port bool) uint32 {
	v := foldAddr(f.Client.Addr())
	if port {
		switch f.Proto {
		case 6, 17, 132:
			v += uint32(f.Client.Port())
		}
	}
	return v
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
