package sched

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Config of a service's scheduling: what -A/-E set.
type Config struct {
	Scheduler  string        // ipvsadm name; "" means "wlc"
	Flags      uint32        // FlagSched1..3 (sh/mh fallback and port)
	Persistent time.Duration // 0 = not persistent
	// Netmask is the persistence prefix length applied to the client
	// address (32 or 128 = per client); 0 also means per client. Only
	// used with Persistent.
	Netmask int
	// AllPorts marks a port-0 service: its persistence templates ignore
	// the packet's destination port (one template per client net), as
	// IPVS does for port-0 services. Port 21 always behaves so (FTP).
	AllPorts bool
	// CacheExpire is lblc_expiration / lblcr_expiration; 0 = 24 h.
	CacheExpire time.Duration
	Now         func() time.Time // clock for persistence/lblc expiry; nil = time.Now
	Rand        func() uint32    // for twos; nil = math/rand/v2
}

// DestInfo is a snapshot of one real server.
type DestInfo struct {
	DestConfig
	Overloaded   bool
	PersistConns int // live persistence templates pointing to it
}

// Template is a live persistence template, as `ipvsadm -L -c` lists it.
type Template struct {
	Proto   uint8
	Client  netip.Addr     // client address masked by the netmask
	VIP     netip.AddrPort // port 0 for port-0 and FTP services
	Dest    netip.AddrPort // port 0 for port-0 and FTP services
	Expires time.Time
}

// templateHold is how far HoldTemplate pushes expiry back, as IPVS does for
// a template that still controls connections.
const templateHold = 60 * time.Second

type template struct {
	proto   uint8
	vip     netip.AddrPort
	snet    netip.Addr
	dest    *Dest
	expires time.Time
}

// Pool is one virtual service's ordered list of real servers with its
// scheduler and persistence templates. Safe for concurrent use.
type Pool struct {
	mu     sync.Mutex
	cfg    Config
	env    env
	name   string
	s      scheduler
	dests  []*Dest
	byAddr map[netip.AddrPort]*Dest
	nthr   int // dests with a threshold set
	tmpls  map[netip.Addr][]*template
}

// NewPool returns an empty pool scheduling with cfg.
func NewPool(cfg Config) (*Pool, error) {
	p := &Pool{
		byAddr: make(map[netip.AddrPort]*Dest),
		tmpls:  make(map[netip.Addr][]*template),
	}
	if err := p.SetConfig(cfg); err != nil {
		return nil, err
	}
	return p, nil
}

// SetConfig applies -E: scheduler, flags and persistence. Dests keep their
// order. As in IPVS the scheduler's state is rebuilt only when the
// scheduler changes; existing templates live on until they expire.
func (p *Pool) SetConfig(cfg Config) error {
	if cfg.Scheduler == "" {
		cfg.Scheduler = "wlc"
	}
	mk, ok := registry[cfg.Scheduler]
	if !ok {
		return fmt.Errorf("scheduler %q: %w", cfg.Scheduler, ErrUnknownScheduler)
	}
	if cfg.Persistent < 0 {
		return fmt.Errorf("persistence timeout %v: %w", cfg.Persistent, ErrRange)
	}
	if cfg.Netmask < 0 || cfg.Netmask > 128 {
		return fmt.Errorf("persistence netmask /%d: %w", cfg.Netmask, ErrRange)
	}
	if cfg.CacheExpire <= 0 {
		cfg.CacheExpire = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Uint32
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg = cfg
	p.env = env{flags: cfg.Flags, now: cfg.Now, rand: cfg.Rand, cacheExpire: cfg.CacheExpire}
	if p.s == nil || p.name != cfg.Scheduler {
		p.name = cfg.Scheduler
		p.s = mk()
		p.s.update(&p.env, p.dests, change{op: opInit, at: -1})
	}
	return nil
}

// Config returns the pool's configuration with defaults filled in.
func (p *Pool) Config() Config {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg
}

func checkDest(d DestConfig) error {
	if d.Weight < 0 || d.Weight > MaxWeight {
		return fmt.Errorf("weight %d not in 0..%d: %w", d.Weight, MaxWeight, ErrRange)
	}
	if d.LThreshold > d.UThreshold {
		return fmt.Errorf("lower threshold %d above upper threshold %d: %w", d.LThreshold, d.UThreshold, ErrRange)
	}
	if !d.Addr.IsValid() {
		return fmt.Errorf("real server address %v: %w", d.Addr, ErrRange)
	}
	return nil
}

func hasThreshold(d *Dest) bool { return d.uthr != 0 || d.lthr != 0 }

// AddDest appends a real server (-a). c reports its live connection counts;
// nil counts as no connections.
func (p *Pool) AddDest(dc DestConfig, c Counters) (*Dest, error) {
	if err := checkDest(dc); err != nil {
		return nil, fmt.Errorf("add %v: %w", dc.Addr, err)
	}
	if c == nil {
		c = noCounters{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.byAddr[dc.Addr]; ok {
		return nil, fmt.Errorf("add %v: %w", dc.Addr, ErrDestExists)
	}
	d := &Dest{
		Addr:       dc.Addr,
		Weight:     dc.Weight,
		uthr:       dc.UThreshold,
		lthr:       dc.LThreshold,
		lastWeight: dc.Weight,
		counters:   c,
	}
	if hasThreshold(d) {
		p.nthr++
	}
	p.dests = append(p.dests, d)
	p.byAddr[d.Addr] = d
	p.s.update(&p.env, p.dests, change{op: opAdd, at: len(p.dests) - 1, d: d})
	return d, nil
}

// EditDest changes a real server's weight and thresholds (-e), keeping its
// position and counters. As IPVS, OVERLOAD is cleared when the new upper
// threshold is 0 or larger than the old one.
func (p *Pool) EditDest(dc DestConfig) error {
	if err := checkDest(dc); err != nil {
		return fmt.Errorf("edit %v: %w", dc.Addr, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.byAddr[dc.Addr]
	if !ok {
		return fmt.Errorf("edit %v: %w", dc.Addr, ErrNoDest)
	}
	if hasThreshold(d) {
		p.nthr--
	}
	if dc.UThreshold == 0 || dc.UThreshold > d.uthr {
		d.overloaded = false
	}
	d.Weight = dc.Weight
	if dc.Weight > 0 {
		d.lastWeight = dc.Weight
	}
	d.uthr, d.lthr = dc.UThreshold, dc.LThreshold
	if hasThreshold(d) {
		p.nthr++
	}
	p.s.update(&p.env, p.dests, change{op: opEdit, at: slices.Index(p.dests, d), d: d})
	return nil
}

// DelDest removes a real server (-d) and drops its persistence templates.
func (p *Pool) DelDest(addr netip.AddrPort) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.byAddr[addr]
	if !ok {
		return fmt.Errorf("delete %v: %w", addr, ErrNoDest)
	}
	at := slices.Index(p.dests, d)
	p.dests = slices.Delete(p.dests, at, at+1)
	delete(p.byAddr, addr)
	if hasThreshold(d) {
		p.nthr--
	}
	if d.persist > 0 {
		for snet, list := range p.tmpls {
			list = slices.DeleteFunc(list, func(t *template) bool { return t.dest == d })
			if len(list) == 0 {
				delete(p.tmpls, snet)
			} else {
				p.tmpls[snet] = list
			}
		}
		d.persist = 0
	}
	p.s.update(&p.env, p.dests, change{op: opDel, at: at, d: d})
	return nil
}

func (p *Pool) refreshOverload() {
	if p.nthr == 0 {
		return // no thresholds: EditDest cleared every flag
	}
	for _, d := range p.dests {
		d.refreshOverload()
	}
}

// Dests returns a snapshot of the real servers in order.
func (p *Pool) Dests() []DestInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refreshOverload()
	out := make([]DestInfo, len(p.dests))
	for i, d := range p.dests {
		out[i] = DestInfo{
			DestConfig:   DestConfig{Addr: d.Addr, Weight: d.Weight, UThreshold: d.uthr, LThreshold: d.lthr},
			Overloaded:   d.overloaded,
			PersistConns: d.persist,
		}
	}
	return out
}

// Schedule picks the real server for a new connection: a live persistence
// template first (its dest is reused even at weight 0 or overloaded, as IPVS
// with expire_quiescent_template=0), else the scheduler. It returns
// ErrNoDest when no real server is usable.
func (p *Pool) Schedule(f Flow) (*Dest, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Persistent <= 0 {
		p.refreshOverload()
		if d := p.s.pick(&p.env, p.dests, f); d != nil {
			return d, nil
		}
		return nil, ErrNoDest
	}
	now := p.env.now()
	snet, vip := p.templateKey(f.Client.Addr(), f.VIP)
	list := p.tmpls[snet]
	for i, t := range list {
		if t.proto != f.Proto || t.vip != vip {
			continue
		}
		if now.Before(t.expires) {
			t.expires = now.Add(p.cfg.Persistent)
			return t.dest, nil
		}
		p.dropTemplate(snet, list, i)
		break
	}
	p.refreshOverload()
	d := p.s.pick(&p.env, p.dests, f)
	if d == nil {
		return nil, ErrNoDest
	}
	d.persist++
	p.tmpls[snet] = append(p.tmpls[snet], &template{
		proto: f.Proto, vip: vip, snet: snet, dest: d, expires: now.Add(p.cfg.Persistent),
	})
	return d, nil
}

// templateKey returns the masked client net and the template's service
// address (port 0 for port-0 and FTP services), after ip_vs_sched_persist.
func (p *Pool) templateKey(client netip.Addr, vip netip.AddrPort) (netip.Addr, netip.AddrPort) {
	if p.cfg.AllPorts || vip.Port() == 21 {
		vip = netip.AddrPortFrom(vip.Addr(), 0)
	}
	return p.mask(client), vip
}

func (p *Pool) mask(client netip.Addr) netip.Addr {
	client = client.Unmap()
	bits := p.cfg.Netmask
	if bits == 0 || bits > client.BitLen() {
		return client
	}
	pfx, err := client.Prefix(bits)
	if err != nil {
		return client
	}
	return pfx.Addr()
}

func (p *Pool) dropTemplate(snet netip.Addr, list []*template, i int) {
	list[i].dest.persist--
	list = slices.Delete(list, i, i+1)
	if len(list) == 0 {
		delete(p.tmpls, snet)
	} else {
		p.tmpls[snet] = list
	}
}

// Expire drops persistence templates whose time is up and ages the lblc/
// lblcr tables (their 60 s timer, run for the time elapsed). It returns the
// number of templates removed. Call it at least every 60 s.
func (p *Pool) Expire(now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for snet, list := range p.tmpls {
		kept := list[:0]
		for _, t := range list {
			if now.Before(t.expires) {
				kept = append(kept, t)
				continue
			}
			t.dest.persist--
			n++
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(p.tmpls, snet)
		} else {
			p.tmpls[snet] = kept
		}
	}
	if x, ok := p.s.(expirer); ok {
		x.expire(&p.env, now)
	}
	return n
}

// HoldTemplate keeps a client's templates alive while it still has live
// connections under them: IPVS never expires a template that controls
// connections, it pushes the expiry back 60 s at a time. The control plane
// calls this (at least every 60 s) for each client with live connections.
func (p *Pool) HoldTemplate(client netip.Addr, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	hold := now.Add(templateHold)
	for _, t := range p.tmpls[p.mask(client)] {
		if t.expires.Before(hold) {
			t.expires = hold
		}
	}
}

// Templates returns the live persistence templates, sorted by client net,
// then service address.
func (p *Pool) Templates() []Template {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Template
	for _, list := range p.tmpls {
		for _, t := range list {
			dst := t.dest.Addr
			if t.vip.Port() == 0 {
				dst = netip.AddrPortFrom(dst.Addr(), 0)
			}
			out = append(out, Template{Proto: t.proto, Client: t.snet, VIP: t.vip, Dest: dst, Expires: t.expires})
		}
	}
	slices.SortFunc(out, func(a, b Template) int {
		if c := a.Client.Compare(b.Client); c != 0 {
			return c
		}
		if c := a.VIP.Compare(b.VIP); c != 0 {
			return c
		}
		return int(a.Proto) - int(b.Proto)
	})
	return out
}
