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

	"xvs/bpf"
	"xvs/connsync"
	"xvs/ipvsadm"
	"xvs/maps"
)

// Connection synchronisation (reference/ipvs.md section 8): the table's
// side of IPVS's sync daemons. The wire protocol, the master's policy and
// the sockets live in connsync; Sync walks the datapath's conns into
// snapshots for a connsync.Master, and installs what a backup receives.
//
// Where xvs's backup differs from IPVS's:
//   - a record whose service or real server does not exist here is counted
//     and skipped: IPVS keeps such a conn unbound (and binds it when the
//     real server appears), xvs binds every conn to an existing real server
//     because its datapath forwards by real-server id;
//   - persistence templates are counted and skipped: the schedulers
//     (sched.Pool) have no way to take a template from outside, so after a
//     failover a persistent client's next new connection is scheduled
//     afresh (its established connections continue);
//   - the record's timeout is not kept: a synced conn expires by this
//     director's own --set timeouts for its state, counted from the last
//     record (each record refreshes it), as every other conn here;
//   - once a synced conn has carried packets here (its last-seen time is no
//     longer the one the backup stamped), this director's datapath owns its
//     state: later records for it are ignored unless they name another real
//     server (a reused conn, as IPVS replaces it).
//
// Like IPVS's, the master sends what carries packets here: a conn the
// backup installed is not sent back by a master running on the same
// director until a packet went through it, so both daemons may run on both
// directors at once.

// SyncSender is a sync master's socket (connsync.Sender).
type SyncSender interface {
	Send(msg []byte) error
	Options() connsync.Options
	Close() error
}

// SyncReceiver is a sync backup's socket (connsync.Receiver).
type SyncReceiver interface {
	Run(ctx context.Context, deliver func([]connsync.Conn)) error
	Options() connsync.Options
	Close() error
}

// SyncSockets opens the sync daemons' sockets. Tests replace them; the
// defaults are connsync's multicast sockets, opened in the network
// namespace of the calling thread (xvsd's), after checking that the
// interface exists.
type SyncSockets struct {
	NewSender   func(connsync.Options) (SyncSender, error)
	NewReceiver func(connsync.Options) (SyncReceiver, error)
}

// DeviceError is a sync daemon's unknown multicast interface (IPVS's
// ENODEV); it matches ErrNoDevice.
type DeviceError struct{ Name string }

func (e *DeviceError) Error() string { return "unknown mcast interface " + e.Name }
func (e *DeviceError) Unwrap() error { return ErrNoDevice }

func checkIface(name string) error {
	if name == "" {
		name = connsync.DefaultInterface
	}
	if _, err := net.InterfaceByName(name); err != nil {
		return &DeviceError{Name: name}
	}
	return nil
}

func defaultSender(o connsync.Options) (SyncSender, error) {
	if err := checkIface(o.Interface); err != nil {
		return nil, err
	}
	return connsync.NewSender(o)
}

func defaultReceiver(o connsync.Options) (SyncReceiver, error) {
	if err := checkIface(o.Interface); err != nil {
		return nil, err
	}
	return connsync.NewReceiver(o)
}

// SyncConfig configures a Sync. Zero values are the defaults.
type SyncConfig struct {
	Sockets SyncSockets
	// Interval is how often the master walks the conn table; default 1 s
	// (IPVS's sync thread wakes every second too).
	Interval time.Duration
	Policy   connsync.Policy
	// Master tunes the master's queue (FlushAfter, Tick, QueueLen); its
	// SyncID, MaxLen and Policy come from the daemon's options and Policy.
	Master connsync.MasterConfig
	// OnError is told when a daemon stops on its own because of an error
	// (its socket failed); the daemon is then no longer listed.
	OnError func(role connsync.Role, err error)
}

// SyncStats count what the sync daemons did.
type SyncStats struct {
	Snapshots  atomic.Uint64 // master: conn table walks
	WalkErrors atomic.Uint64 // master: failed walks

	Installed atomic.Uint64 // backup: new conns installed
	Refreshed atomic.Uint64 // backup: synced conns refreshed (state and idle time)
	Replaced  atomic.Uint64 // backup: conns moved to the record's real server
	Late      atomic.Uint64 // backup: INACTIVE records for a conn now on another real server, ignored
	Local     atomic.Uint64 // backup: records for conns that carry traffic here, left alone
	NoService atomic.Uint64 // backup: records for a service that does not exist here
	NoDest    atomic.Uint64 // backup: records for a real server that does not exist here
	Templates atomic.Uint64 // backup: persistence templates, not installed
	Raced     atomic.Uint64 // backup: the conn changed under the update; left as it was
	Errors    atomic.Uint64 // backup: datapath errors
}

// DaemonStatus is one running sync daemon, as -L --daemon lists it.
type DaemonStatus struct {
	State   string           `json:"state"` // "master" or "backup"
	Options connsync.Options `json:"options"`
}

type syncDaemon struct {
	opts   connsync.Options
	cancel context.CancelFunc
	done   chan struct{}
	master *connsync.Master // master only
	rx     SyncReceiver     // backup only
}

// Sync runs the table's sync daemons: a master, a backup, or both at once,
// as IPVS can. Safe for concurrent use. Close stops them.
type Sync struct {
	t     *Table
	cfg   SyncConfig
	stats SyncStats

	mu      sync.Mutex
	daemons [3]*syncDaemon // by connsync.Role
	closed  bool

	// stamps are the last-seen times the backup gave the conns it
	// installed: a conn whose last-seen time differs has carried packets
	// here since.
	stampMu   sync.Mutex
	stamps    map[connID]time.Duration
	lastPrune time.Duration
}

type connID struct {
	proto       uint8
	client, vip netip.AddrPort
}

// NewSync returns the sync daemons of t, none running.
func NewSync(t *Table, cfg SyncConfig) *Sync {
	if cfg.Sockets.NewSender == nil {
		cfg.Sockets.NewSender = defaultSender
	}
	if cfg.Sockets.NewReceiver == nil {
		cfg.Sockets.NewReceiver = defaultReceiver
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	return &Sync{t: t, cfg: cfg, stamps: make(map[connID]time.Duration)}
}

// DaemonOptions converts ipvsadm's --start-daemon options.
func DaemonOptions(d ipvsadm.DaemonOptions) (connsync.Role, connsync.Options, error) {
	role, err := connsync.ParseRole(d.State)
	if err != nil {
		return 0, connsync.Options{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if d.SyncID < 0 || d.SyncID > 255 {
		return 0, connsync.Options{}, fmt.Errorf("syncid %d: %w", d.SyncID, ErrRange)
	}
	return role, connsync.Options{
		Interface: d.McastInterface,
		SyncID:    uint8(d.SyncID),
		MaxLen:    int(d.SyncMaxLen),
		Group:     d.McastGroup,
		Port:      d.McastPort,
		TTL:       d.McastTTL,
	}, nil
}

// Start starts the daemon of role with options o. ErrDaemonRunning if it
// runs already; a *DeviceError (ErrNoDevice) for an unknown interface.
func (s *Sync) Start(role connsync.Role, o connsync.Options) error {
	if role != connsync.RoleMaster && role != connsync.RoleBackup {
		return fmt.Errorf("start sync daemon: role %d: %w", role, ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("start sync %s: %w", role, ErrInvalid)
	}
	if s.daemons[role] != nil {
		return fmt.Errorf("start sync %s: %w", role, ErrDaemonRunning)
	}
	if o.Group.IsValid() && !o.Group.IsMulticast() {
		return fmt.Errorf("start sync %s: group %s is not multicast: %w", role, o.Group, ErrInvalid)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &syncDaemon{cancel: cancel, done: make(chan struct{})}
	var run func() error
	switch role {
	case connsync.RoleMaster:
		tx, err := s.cfg.Sockets.NewSender(o)
		if err != nil {
			cancel()
			return fmt.Errorf("start sync master: %w", err)
		}
		d.opts = tx.Options()
		mc := s.cfg.Master
		mc.SyncID, mc.MaxLen, mc.Policy = d.opts.SyncID, d.opts.MaxLen, s.cfg.Policy
		d.master = connsync.NewMaster(mc)
		run = func() error {
			defer tx.Close()
			return s.runMaster(ctx, d.master, tx)
		}
	case connsync.RoleBackup:
		rx, err := s.cfg.Sockets.NewReceiver(o)
		if err != nil {
			cancel()
			return fmt.Errorf("start sync backup: %w", err)
		}
		d.opts, d.rx = rx.Options(), rx
		run = func() error {
			defer rx.Close()
			return rx.Run(ctx, s.Apply)
		}
	}
	s.daemons[role] = d
	go func() {
		defer close(d.done)
		err := run()
		if ctx.Err() != nil {
			return
		}
		// Stopped by itself: no longer running.
		s.mu.Lock()
		if s.daemons[role] == d {
			s.daemons[role] = nil
		}
		s.mu.Unlock()
		cancel()
		if s.cfg.OnError != nil {
			s.cfg.OnError(role, err)
		}
	}()
	return nil
}

// Stop stops the daemon of role and waits for it; ErrNoDaemon when it does
// not run.
func (s *Sync) Stop(role connsync.Role) error {
	s.mu.Lock()
	var d *syncDaemon
	if role == connsync.RoleMaster || role == connsync.RoleBackup {
		d = s.daemons[role]
		s.daemons[role] = nil
	}
	s.mu.Unlock()
	if d == nil {
		return fmt.Errorf("stop sync %s: %w", role, ErrNoDaemon)
	}
	d.cancel()
	<-d.done
	return nil
}

// Close stops every daemon and refuses further starts.
func (s *Sync) Close() {
	s.mu.Lock()
	s.closed = true
	ds := s.daemons
	s.daemons = [3]*syncDaemon{}
	s.mu.Unlock()
	for _, d := range ds {
		if d != nil {
			d.cancel()
			<-d.done
		}
	}
}

// Daemons lists the running daemons, master first, with their resolved
// options.
func (s *Sync) Daemons() []DaemonStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []DaemonStatus
	for _, r := range []connsync.Role{connsync.RoleMaster, connsync.RoleBackup} {
		if d := s.daemons[r]; d != nil {
			out = append(out, DaemonStatus{State: r.String(), Options: d.opts})
		}
	}
	return out
}

// Stats returns the daemons' own counters.
func (s *Sync) Stats() *SyncStats { return &s.stats }

// Counters are the sync counters for xvsadm --counters and metrics: the
// table side's, and those of the running master and backup.
func (s *Sync) Counters() []Counter {
	st := &s.stats
	out := []Counter{
		{"sync_master_snapshots", st.Snapshots.Load()},
		{"sync_master_walk_errors", st.WalkErrors.Load()},
		{"sync_backup_installed", st.Installed.Load()},
		{"sync_backup_refreshed", st.Refreshed.Load()},
		{"sync_backup_replaced", st.Replaced.Load()},
		{"sync_backup_late", st.Late.Load()},
		{"sync_backup_local", st.Local.Load()},
		{"sync_backup_no_service", st.NoService.Load()},
		{"sync_backup_no_dest", st.NoDest.Load()},
		{"sync_backup_templates", st.Templates.Load()},
		{"sync_backup_raced", st.Raced.Load()},
		{"sync_backup_errors", st.Errors.Load()},
	}
	s.mu.Lock()
	m, b := s.daemons[connsync.RoleMaster], s.daemons[connsync.RoleBackup]
	s.mu.Unlock()
	if m != nil {
		ms := m.master.Stats()
		out = append(out,
			Counter{"sync_master_conns", uint64(ms.Conns)},
			Counter{"sync_master_records", ms.Records},
			Counter{"sync_master_messages", ms.Messages},
			Counter{"sync_master_deferred", ms.Deferred},
			Counter{"sync_master_invalid", ms.Invalid},
			Counter{"sync_master_send_errors", ms.SendErrors})
	}
	if b != nil {
		if r, ok := b.rx.(*connsync.Receiver); ok {
			rs := r.Stats()
			out = append(out,
				Counter{"sync_backup_datagrams", rs.Datagrams},
				Counter{"sync_backup_conns", rs.Conns},
				Counter{"sync_backup_skipped", rs.Skipped})
			for reason, n := range rs.Dropped {
				out = append(out, Counter{"sync_backup_dropped_" + reason, n})
			}
		}
	}
	return out
}

// runMaster walks the conn table into the master every Interval, and
// sends what it queues. A walk is kept to at most a fifth of the master's
// time: on a table so large that one walk takes longer than Interval/5,
// the next walk waits four times as long as the last one took (state
// changes then reach the backup later, rather than the master taking a
// core).
func (s *Sync) runMaster(ctx context.Context, m *connsync.Master, tx SyncSender) error {
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx, tx.Send) }()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var buf []connsync.Conn
	for {
		select {
		case <-ctx.Done():
			<-errc
			return ctx.Err()
		case <-timer.C:
		}
		start := time.Now()
		var err error
		buf, err = s.t.syncConns(ctx, buf[:0], s.fromBackup)
		if err != nil {
			if ctx.Err() == nil {
				s.stats.WalkErrors.Add(1)
			}
		} else {
			s.stats.Snapshots.Add(1)
			m.Observe(buf, time.Now())
		}
		timer.Reset(max(s.cfg.Interval, 4*time.Since(start)))
	}
}

// Sync record flags of a conn on the master (fwd method MASQ = 0).
func syncFlags(c maps.Conn) uint32 {
	f := connsync.FlagMasq
	if !maps.Active(c.State) {
		f |= connsync.FlagInactive
	}
	return f
}

// SyncConns is the master's view of the table, appended to buf: every conn
// that carried a packet (a conn still waiting for its first one is left
// out), with its state's timeout in seconds, and the persistence templates
// (TEMPLATE, state ASSURED while an active conn of their client holds them,
// else NONE; timeout the service's persistence timeout).
func (t *Table) SyncConns(ctx context.Context, buf []connsync.Conn) ([]connsync.Conn, error) {
	return t.syncConns(ctx, buf, nil)
}

// syncConns is SyncConns leaving out the conns skip says.
func (t *Table) syncConns(ctx context.Context, buf []connsync.Conn, skip func(maps.Conn) bool) ([]connsync.Conn, error) {
	type persist struct {
		key  svcKey
		bits int
	}
	t.mu.RLock()
	to := t.timeouts
	persistent := make(map[uint32]persist)
	for k, s := range t.svcs {
		if s.cfg.Persistent {
			persistent[s.id] = persist{key: k, bits: s.cfg.Netmask}
		}
	}
	t.mu.RUnlock()

	assured := make(map[persistKey]bool)
	err := t.dp.WalkConns(ctx, func(c maps.Conn) bool {
		if c.Flags&uint8(bpf.XvsConnFlagsCONN_F_NEW) != 0 || skip != nil && skip(c) {
			return ctx.Err() == nil
		}
		buf = append(buf, connsync.Conn{
			Proto:   c.Proto,
			Flags:   syncFlags(c),
			State:   uint16(c.State),
			Client:  c.Client,
			VIP:     c.VIP,
			Dest:    c.Dest,
			Timeout: uint32(connTimeout(c, to) / time.Second),
		})
		if p, ok := persistent[c.SvcID]; ok && maps.Active(c.State) {
			if pfx, err := c.Client.Addr().Prefix(p.bits); err == nil {
				assured[persistKey{svc: p.key, client: pfx.Addr()}] = true
			}
		}
		return ctx.Err() == nil
	})
	if err != nil {
		return buf, fmt.Errorf("sync snapshot: %w", err)
	}

	t.mu.RLock()
	defer t.mu.RUnlock()
	for k, s := range t.svcs {
		if !s.cfg.Persistent {
			continue
		}
		for _, tp := range s.pool.Templates() {
			state := connsync.TemplateNone
			if assured[persistKey{svc: k, client: tp.Client}] {
				state = connsync.TemplateAssured
			}
			buf = append(buf, connsync.Conn{
				Proto:   s.cfg.Proto,
				Flags:   connsync.FlagTemplate | connsync.FlagMasq,
				State:   state,
				Client:  netip.AddrPortFrom(tp.Client, 0),
				VIP:     tp.VIP,
				Dest:    tp.Dest,
				Timeout: s.cfg.Timeout,
			})
		}
	}
	return buf, nil
}

// bind finds the local service and real server of a record: the exact
// service, else its port-0 (all ports) service; the exact real server,
// else one added without a port.
func (t *Table) bind(proto uint8, vip, rs netip.AddrPort) (svcID, destID uint32, err error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := t.svcs[svcKey{proto: proto, addr: vip}]
	if s == nil {
		s = t.svcs[svcKey{proto: proto, addr: netip.AddrPortFrom(vip.Addr(), 0)}]
	}
	if s == nil {
		return 0, 0, ErrNoService
	}
	d := s.byAddr[rs]
	if d == nil {
		d = s.byAddr[netip.AddrPortFrom(rs.Addr(), 0)]
	}
	if d == nil {
		return 0, 0, ErrNoDest
	}
	return s.id, d.id, nil
}

// stampMaxAge bounds how long a backup remembers the last-seen time it
// gave a conn, past the longest timeout: by then the conn has expired.
const stampMaxAge = time.Minute

// Apply is the backup's handling of one received datagram's conns
// (reference 8.4): each conn is bound to the local service and real
// server, then installed (both lookups, its state, counted in its real
// server's ActiveConn or InActConn by that state, last seen now), or an
// existing conn is refreshed or moved to the record's real server.
func (s *Sync) Apply(conns []connsync.Conn) {
	t := s.t
	now := t.mono()
	for i := range conns {
		s.applyOne(&conns[i], now)
	}
	s.pruneStamps(now)
}

func (s *Sync) applyOne(rec *connsync.Conn, now time.Duration) {
	t, st := s.t, &s.stats
	if rec.IsTemplate() {
		st.Templates.Add(1)
		return
	}
	svcID, destID, err := t.bind(rec.Proto, rec.VIP, rec.Dest)
	switch {
	case errors.Is(err, ErrNoService):
		st.NoService.Add(1)
		return
	case err != nil:
		st.NoDest.Add(1)
		return
	}
	c := maps.Conn{
		Proto:    rec.Proto,
		Client:   rec.Client,
		VIP:      rec.VIP,
		Dest:     rec.Dest,
		State:    uint8(rec.State),
		SvcID:    svcID,
		DestID:   destID,
		LastSeen: now,
	}
	id := connID{proto: c.Proto, client: c.Client, vip: c.VIP}
	cur, err := t.dp.LookupConn(c.Proto, c.Client, c.VIP)
	switch {
	case errors.Is(err, maps.ErrNotFound):
		if s.install(c, id) {
			st.Installed.Add(1)
		}
		return
	case err != nil:
		st.Errors.Add(1)
		return
	}
	if cur.Dest != c.Dest || cur.DestID != c.DestID {
		// Another real server: a late message for an old conn is ignored,
		// else the record wins (the master reused the tuple).
		if rec.Flags&connsync.FlagInactive != 0 {
			st.Late.Add(1)
			return
		}
		if s.replace(cur, c, id) {
			st.Replaced.Add(1)
		}
		return
	}
	if !s.stamped(id, cur.LastSeen) {
		// Packets went through here since: this datapath's state is
		// newer than the master's.
		st.Local.Add(1)
		return
	}
	if s.replace(cur, c, id) {
		st.Refreshed.Add(1)
	}
}

// install adds c and remembers its stamp.
func (s *Sync) install(c maps.Conn, id connID) bool {
	switch err := s.t.dp.InstallConn(c); {
	case err == nil:
		s.stamp(id, c.LastSeen)
		return true
	case errors.Is(err, maps.ErrConnExists):
		s.stats.Raced.Add(1) // a first packet here won
	default:
		s.stats.Errors.Add(1)
	}
	return false
}

// replace swaps cur for c, unless a packet touched cur meanwhile. There
// is no in-place update of a conn: the delete and the install are two
// steps, each moving the real servers' counters by the state it removes or
// adds.
func (s *Sync) replace(cur, c maps.Conn, id connID) bool {
	ok, err := s.t.dp.DeleteConnIf(cur, cur.LastSeen)
	if err != nil {
		s.stats.Errors.Add(1)
		return false
	}
	if !ok {
		s.stats.Raced.Add(1)
		return false
	}
	s.forget(id)
	return s.install(c, id)
}

// fromBackup says whether c is a conn the backup installed and that has
// carried no packet here since. The master does not send those back: IPVS
// syncs a conn after its packets, and a synced conn that sees none is
// never sent again. This is what lets a director run master and backup at
// once without echoing its peer's conns.
func (s *Sync) fromBackup(c maps.Conn) bool {
	return s.stamped(connID{proto: c.Proto, client: c.Client, vip: c.VIP}, c.LastSeen)
}

func (s *Sync) stamp(id connID, at time.Duration) {
	s.stampMu.Lock()
	s.stamps[id] = at
	s.stampMu.Unlock()
}

func (s *Sync) forget(id connID) {
	s.stampMu.Lock()
	delete(s.stamps, id)
	s.stampMu.Unlock()
}

func (s *Sync) stamped(id connID, lastSeen time.Duration) bool {
	s.stampMu.Lock()
	defer s.stampMu.Unlock()
	at, ok := s.stamps[id]
	return ok && at == lastSeen
}

// pruneStamps forgets, about once a minute, the stamps older than the
// longest timeout: their conns have expired or carried packets since.
func (s *Sync) pruneStamps(now time.Duration) {
	s.stampMu.Lock()
	defer s.stampMu.Unlock()
	if now-s.lastPrune < stampMaxAge {
		return
	}
	s.lastPrune = now
	to := s.t.Timeouts()
	longest := time.Duration(max(to.TCP, to.TCPFin, to.UDP, maxStateTimeout())) * time.Second
	for id, at := range s.stamps {
		if now-at > longest+stampMaxAge {
			delete(s.stamps, id)
		}
	}
}

func maxStateTimeout() uint32 {
	var m uint32
	for _, v := range stateTimeouts {
		m = max(m, v)
	}
	return m
}
