package ctl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"xvs/connsync"
	"xvs/ctl/ctltest"
	"xvs/ipvsadm"
	"xvs/maps"
	"xvs/sched"
)

var (
	syncVIP  = netip.MustParseAddrPort("202.103.106.5:80")
	syncDNS  = netip.MustParseAddrPort("202.103.106.5:53")
	syncRS1  = netip.MustParseAddrPort("172.16.0.2:80")
	syncRS2  = netip.MustParseAddrPort("172.16.0.3:80")
	syncDNS1 = netip.MustParseAddrPort("172.16.0.2:53")
)

// syncTable is a director with the seed's web service, a persistent UDP
// service, and a clock the test moves.
type syncTable struct {
	tb  *Table
	dp  *ctltest.Datapath
	now *time.Duration
}

func newSyncTable(t *testing.T) syncTable {
	t.Helper()
	dp := ctltest.New()
	now := new(time.Duration)
	*now = 1000 * time.Second
	tb := NewTable(dp, TableOptions{Mono: func() time.Duration { return *now }})
	must(t, tb.Apply(parseAll(t,
		"-A -t 202.103.106.5:80 -s rr",
		"-a -t 202.103.106.5:80 -r 172.16.0.2:80 -m",
		"-a -t 202.103.106.5:80 -r 172.16.0.3:80 -m",
		"-A -u 202.103.106.5:53 -s rr -p 60",
		"-a -u 202.103.106.5:53 -r 172.16.0.2:53 -m",
	), nil))
	return syncTable{tb: tb, dp: dp, now: now}
}

func (s syncTable) ids(t *testing.T, vip, rs netip.AddrPort, proto uint8) (uint32, uint32) {
	t.Helper()
	svc, d, err := s.tb.bind(proto, vip, rs)
	if err != nil {
		t.Fatalf("bind %v %v: %v", vip, rs, err)
	}
	return svc, d
}

// counts returns a real server's ActiveConn and InActConn as -L shows them.
func (s syncTable) counts(t *testing.T, vip, rs netip.AddrPort) [2]int64 {
	t.Helper()
	svcs, err := s.tb.Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range svcs {
		if e.Addr != vip {
			continue
		}
		for _, d := range e.Dests {
			if d.Addr == rs {
				return [2]int64{d.ActiveConns, d.InactConns}
			}
		}
	}
	t.Fatalf("no real server %v in %v", rs, vip)
	return [2]int64{}
}

func cport(p uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("202.103.106.100"), p)
}

func sortConns(cs []connsync.Conn) {
	slices.SortFunc(cs, func(a, b connsync.Conn) int {
		if c := strings.Compare(a.Client.String(), b.Client.String()); c != 0 {
			return c
		}
		return strings.Compare(a.VIP.String(), b.VIP.String())
	})
}

func TestSyncConnsConvertsTheTable(t *testing.T) {
	m := newSyncTable(t)
	web, rs1 := m.ids(t, syncVIP, syncRS1, 6)
	_, rs2 := m.ids(t, syncVIP, syncRS2, 6)
	dns, dns1 := m.ids(t, syncDNS, syncDNS1, 17)
	for _, c := range []maps.Conn{
		{Proto: 6, Client: cport(1001), VIP: syncVIP, Dest: syncRS1, State: 1, SvcID: web, DestID: rs1},           // ESTABLISHED
		{Proto: 6, Client: cport(1002), VIP: syncVIP, Dest: syncRS2, State: 4, SvcID: web, DestID: rs2},           // FIN_WAIT
		{Proto: 6, Client: cport(1003), VIP: syncVIP, Dest: syncRS1, State: 0, Flags: 1, SvcID: web, DestID: rs1}, // new: no packet yet
		{Proto: 17, Client: cport(1004), VIP: syncDNS, Dest: syncDNS1, SvcID: dns, DestID: dns1},
	} {
		c.LastSeen = *m.now
		must(t, m.dp.InstallConn(c))
	}
	// A persistence template for the UDP client, held by its conn.
	if _, err := m.tb.svcs[svcKey{17, syncDNS}].pool.Schedule(sched.Flow{Proto: 17, Client: cport(1004), VIP: syncDNS}); err != nil {
		t.Fatal(err)
	}
	must(t, m.tb.Apply(parseAll(t, "--set 1000 100 200"), nil))

	got, err := m.tb.SyncConns(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	sortConns(got)
	want := []connsync.Conn{
		{Proto: 17, Flags: connsync.FlagTemplate, State: connsync.TemplateNone, Client: netip.MustParseAddrPort("202.103.106.100:0"), VIP: syncDNS, Dest: syncDNS1, Timeout: 60},
		{Proto: 6, Flags: connsync.FlagMasq, State: connsync.TCPEstablished, Client: cport(1001), VIP: syncVIP, Dest: syncRS1, Timeout: 1000},
		{Proto: 6, Flags: connsync.FlagInactive, State: connsync.TCPFinWait, Client: cport(1002), VIP: syncVIP, Dest: syncRS2, Timeout: 100},
		{Proto: 17, Flags: connsync.FlagInactive, State: connsync.UDPNormal, Client: cport(1004), VIP: syncDNS, Dest: syncDNS1, Timeout: 200},
	}
	if !slices.EqualFunc(got, want, func(a, b connsync.Conn) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
		t.Errorf("SyncConns:\n%v\nwant:\n%v", got, want)
	}
	for i := range got {
		if err := got[i].Validate(); err != nil {
			t.Errorf("record %v does not validate: %v", got[i], err)
		}
	}
}

func TestSyncTemplateAssuredWhileAnActiveConnHoldsIt(t *testing.T) {
	m := newSyncTable(t)
	must(t, m.tb.Apply(parseAll(t, "-E -t 202.103.106.5:80 -s rr -p 300"), nil))
	web, rs1 := m.ids(t, syncVIP, syncRS1, 6)
	d, err := m.tb.svcs[svcKey{6, syncVIP}].pool.Schedule(sched.Flow{Proto: 6, Client: cport(2000), VIP: syncVIP})
	if err != nil || d.Addr != syncRS1 {
		t.Fatalf("schedule: %v %v", d, err)
	}
	must(t, m.dp.InstallConn(maps.Conn{Proto: 6, Client: cport(2000), VIP: syncVIP, Dest: syncRS1, State: 1, SvcID: web, DestID: rs1, LastSeen: *m.now}))
	got, err := m.tb.SyncConns(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var tmpl *connsync.Conn
	for i := range got {
		if got[i].IsTemplate() {
			tmpl = &got[i]
		}
	}
	if tmpl == nil || tmpl.State != connsync.TemplateAssured || tmpl.Timeout != 300 || tmpl.Proto != 6 || tmpl.Dest != syncRS1 {
		t.Errorf("template = %+v, want ASSURED, 300 s, to %v", tmpl, syncRS1)
	}
}

func rec(client netip.AddrPort, rs netip.AddrPort, state uint16) connsync.Conn {
	f := connsync.FlagMasq
	if !maps.Active(uint8(state)) {
		f |= connsync.FlagInactive
	}
	return connsync.Conn{Proto: 6, Flags: f, State: state, Client: client, VIP: syncVIP, Dest: rs, Timeout: 900}
}

func TestSyncApplyBindsAndCountsExactly(t *testing.T) {
	type counts struct{ rs1, rs2 [2]int64 }
	steps := []struct {
		name    string
		advance time.Duration
		recs    []connsync.Conn
		local   *maps.Conn // installed here first, as a first packet would
		want    counts
		conn    *connsync.Conn // the conn of the first record afterwards; nil: absent
		stat    func(*SyncStats) uint64
	}{{
		name: "established installs active",
		recs: []connsync.Conn{rec(cport(1), syncRS1, connsync.TCPEstablished)},
		want: counts{rs1: [2]int64{1, 0}},
		conn: &connsync.Conn{State: connsync.TCPEstablished, Dest: syncRS1},
		stat: func(s *SyncStats) uint64 { return s.Installed.Load() },
	}, {
		name: "fin_wait installs inactive",
		recs: []connsync.Conn{rec(cport(2), syncRS2, connsync.TCPFinWait)},
		want: counts{rs1: [2]int64{1, 0}, rs2: [2]int64{0, 1}},
		conn: &connsync.Conn{State: connsync.TCPFinWait, Dest: syncRS2},
		stat: func(s *SyncStats) uint64 { return s.Installed.Load() },
	}, {
		name:    "refresh keeps counts",
		advance: 5 * time.Second,
		recs:    []connsync.Conn{rec(cport(1), syncRS1, connsync.TCPEstablished)},
		want:    counts{rs1: [2]int64{1, 0}, rs2: [2]int64{0, 1}},
		conn:    &connsync.Conn{State: connsync.TCPEstablished, Dest: syncRS1},
		stat:    func(s *SyncStats) uint64 { return s.Refreshed.Load() },
	}, {
		name: "state change moves active to inactive",
		recs: []connsync.Conn{rec(cport(1), syncRS1, connsync.TCPTimeWait)},
		want: counts{rs1: [2]int64{0, 1}, rs2: [2]int64{0, 1}},
		conn: &connsync.Conn{State: connsync.TCPTimeWait, Dest: syncRS1},
		stat: func(s *SyncStats) uint64 { return s.Refreshed.Load() },
	}, {
		name: "other real server replaces",
		recs: []connsync.Conn{rec(cport(1), syncRS2, connsync.TCPEstablished)},
		want: counts{rs1: [2]int64{0, 0}, rs2: [2]int64{1, 1}},
		conn: &connsync.Conn{State: connsync.TCPEstablished, Dest: syncRS2},
		stat: func(s *SyncStats) uint64 { return s.Replaced.Load() },
	}, {
		name: "late inactive record for another real server is ignored",
		recs: []connsync.Conn{rec(cport(1), syncRS1, connsync.TCPClose)},
		want: counts{rs1: [2]int64{0, 0}, rs2: [2]int64{1, 1}},
		conn: &connsync.Conn{State: connsync.TCPEstablished, Dest: syncRS2},
		stat: func(s *SyncStats) uint64 { return s.Late.Load() },
	}, {
		name:  "conn with local traffic keeps its state",
		local: &maps.Conn{Proto: 6, Client: cport(3), VIP: syncVIP, Dest: syncRS1, State: 1},
		recs:  []connsync.Conn{rec(cport(3), syncRS1, connsync.TCPFinWait)},
		want:  counts{rs1: [2]int64{1, 0}, rs2: [2]int64{1, 1}},
		conn:  &connsync.Conn{State: connsync.TCPEstablished, Dest: syncRS1},
		stat:  func(s *SyncStats) uint64 { return s.Local.Load() },
	}, {
		name: "unknown service is counted and skipped",
		recs: []connsync.Conn{{Proto: 6, Flags: 0, State: connsync.TCPEstablished, Client: cport(4),
			VIP: netip.MustParseAddrPort("202.103.106.6:80"), Dest: syncRS1, Timeout: 900}},
		want: counts{rs1: [2]int64{1, 0}, rs2: [2]int64{1, 1}},
		stat: func(s *SyncStats) uint64 { return s.NoService.Load() },
	}, {
		name: "unknown real server is counted and skipped",
		recs: []connsync.Conn{rec(cport(5), netip.MustParseAddrPort("172.16.0.9:80"), connsync.TCPEstablished)},
		want: counts{rs1: [2]int64{1, 0}, rs2: [2]int64{1, 1}},
		stat: func(s *SyncStats) uint64 { return s.NoDest.Load() },
	}, {
		name: "template is counted and skipped",
		recs: []connsync.Conn{{Proto: 6, Flags: connsync.FlagTemplate, Client: netip.MustParseAddrPort("202.103.106.100:0"),
			VIP: syncVIP, Dest: syncRS1, Timeout: 300}},
		want: counts{rs1: [2]int64{1, 0}, rs2: [2]int64{1, 1}},
		stat: func(s *SyncStats) uint64 { return s.Templates.Load() },
	}}
	b := newSyncTable(t)
	s := NewSync(b.tb, SyncConfig{})
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			*b.now += st.advance
			if st.local != nil {
				c := *st.local
				c.SvcID, c.DestID = b.ids(t, c.VIP, c.Dest, c.Proto)
				c.LastSeen = *b.now - time.Second
				must(t, b.dp.InstallConn(c))
			}
			before := st.stat(s.Stats())
			s.Apply(st.recs)
			if got := st.stat(s.Stats()) - before; got != uint64(len(st.recs)) {
				t.Errorf("counter moved by %d, want %d", got, len(st.recs))
			}
			got := counts{rs1: b.counts(t, syncVIP, syncRS1), rs2: b.counts(t, syncVIP, syncRS2)}
			if got != st.want {
				t.Errorf("ActiveConn/InActConn rs1 %v rs2 %v, want rs1 %v rs2 %v", got.rs1, got.rs2, st.want.rs1, st.want.rs2)
			}
			r := st.recs[0]
			c, err := b.dp.LookupConn(r.Proto, r.Client, r.VIP)
			switch {
			case st.conn == nil && err == nil:
				t.Errorf("conn %v installed, want none", c)
			case st.conn == nil:
			case err != nil:
				t.Errorf("conn missing: %v", err)
			default:
				svc, dest := b.ids(t, r.VIP, st.conn.Dest, r.Proto)
				if c.State != uint8(st.conn.State) || c.Dest != st.conn.Dest || c.SvcID != svc || c.DestID != dest || c.Flags != 0 {
					t.Errorf("conn = %+v, want state %d to %v (svc %d dest %d), flags 0", c, st.conn.State, st.conn.Dest, svc, dest)
				}
				if st.local == nil && c.LastSeen != *b.now {
					t.Errorf("last seen %v, want now %v", c.LastSeen, *b.now)
				}
			}
		})
	}
}

func TestSyncedConnsExpireByTheBackupsTimeouts(t *testing.T) {
	b := newSyncTable(t)
	s := NewSync(b.tb, SyncConfig{})
	s.Apply([]connsync.Conn{rec(cport(1), syncRS1, connsync.TCPFinWait)})
	*b.now += 119 * time.Second
	if n, err := b.tb.Expire(context.Background()); err != nil || n != 0 {
		t.Fatalf("expired %d (%v) before the FIN_WAIT timeout", n, err)
	}
	*b.now += 2 * time.Second
	if n, err := b.tb.Expire(context.Background()); err != nil || n != 1 {
		t.Fatalf("expired %d (%v) after the FIN_WAIT timeout, want 1", n, err)
	}
	if got := b.counts(t, syncVIP, syncRS1); got != [2]int64{0, 0} {
		t.Errorf("counts after expiry %v, want 0 0", got)
	}
}

// TestSyncRoundTrip: a master's table, encoded and decoded as on the wire,
// installs the same conns on a backup.
func TestSyncRoundTrip(t *testing.T) {
	m := newSyncTable(t)
	web, rs1 := m.ids(t, syncVIP, syncRS1, 6)
	_, rs2 := m.ids(t, syncVIP, syncRS2, 6)
	dns, dns1 := m.ids(t, syncDNS, syncDNS1, 17)
	var want []string
	for i, c := range []maps.Conn{
		{Proto: 6, Client: cport(1), VIP: syncVIP, Dest: syncRS1, State: 1, SvcID: web, DestID: rs1},
		{Proto: 6, Client: cport(2), VIP: syncVIP, Dest: syncRS2, State: 7, SvcID: web, DestID: rs2},
		{Proto: 17, Client: cport(3), VIP: syncDNS, Dest: syncDNS1, SvcID: dns, DestID: dns1},
	} {
		c.LastSeen = *m.now - time.Duration(i)*time.Second
		must(t, m.dp.InstallConn(c))
		want = append(want, fmt.Sprint(c.Proto, c.Client, c.VIP, c.Dest, c.State))
	}
	conns, err := m.tb.SyncConns(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := connsync.Encode(7, conns, 1472)
	if err != nil {
		t.Fatal(err)
	}
	b := newSyncTable(t)
	s := NewSync(b.tb, SyncConfig{})
	for _, msg := range msgs {
		got, err := connsync.Decode(msg, 7)
		if err != nil {
			t.Fatal(err)
		}
		s.Apply(got)
	}
	var got []string
	must(t, b.dp.WalkConns(context.Background(), func(c maps.Conn) bool {
		got = append(got, fmt.Sprint(c.Proto, c.Client, c.VIP, c.Dest, c.State))
		return true
	}))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("backup conns:\n%v\nwant:\n%v", got, want)
	}
	for _, rs := range []netip.AddrPort{syncRS1, syncRS2} {
		if g, w := b.counts(t, syncVIP, rs), m.counts(t, syncVIP, rs); g != w {
			t.Errorf("%v counts on the backup %v, on the master %v", rs, g, w)
		}
	}
}

// bus is an in-memory multicast segment: what a fake sender sends, every
// fake receiver of the same group gets, filtered and decoded as by
// connsync.Receiver.
type bus struct {
	mu    sync.Mutex
	rx    map[*fakeRx]bool
	ifs   map[string]bool
	sends int
}

func newBus(ifaces ...string) *bus {
	b := &bus{rx: make(map[*fakeRx]bool), ifs: make(map[string]bool)}
	for _, i := range ifaces {
		b.ifs[i] = true
	}
	return b
}

func (b *bus) sockets() SyncSockets {
	return SyncSockets{
		NewSender: func(o connsync.Options) (SyncSender, error) {
			if !b.ifs[o.Interface] {
				return nil, &DeviceError{Name: o.Interface}
			}
			return &fakeTx{b: b, o: o.Resolve(connsync.RoleMaster, 1500)}, nil
		},
		NewReceiver: func(o connsync.Options) (SyncReceiver, error) {
			if !b.ifs[o.Interface] {
				return nil, &DeviceError{Name: o.Interface}
			}
			r := &fakeRx{b: b, o: o.Resolve(connsync.RoleBackup, 1500), ch: make(chan []byte, 64)}
			b.mu.Lock()
			b.rx[r] = true
			b.mu.Unlock()
			return r, nil
		},
	}
}

type fakeTx struct {
	b *bus
	o connsync.Options
}

func (f *fakeTx) Send(msg []byte) error {
	f.b.mu.Lock()
	defer f.b.mu.Unlock()
	f.b.sends++
	for r := range f.b.rx {
		if r.o.Group == f.o.Group && r.o.Port == f.o.Port {
			select {
			case r.ch <- slices.Clone(msg):
			default:
			}
		}
	}
	return nil
}
func (f *fakeTx) Options() connsync.Options { return f.o }
func (f *fakeTx) Close() error              { return nil }

type fakeRx struct {
	b  *bus
	o  connsync.Options
	ch chan []byte
}

func (f *fakeRx) Run(ctx context.Context, deliver func([]connsync.Conn)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case msg := <-f.ch:
			if conns, err := connsync.Decode(msg, f.o.SyncID); err == nil {
				deliver(conns)
			}
		}
	}
}
func (f *fakeRx) Options() connsync.Options { return f.o }
func (f *fakeRx) Close() error {
	f.b.mu.Lock()
	delete(f.b.rx, f)
	f.b.mu.Unlock()
	return nil
}

func TestSyncDaemonsStartStopAndSync(t *testing.T) {
	net := newBus("sync0")
	cfg := SyncConfig{Sockets: net.sockets(), Interval: 10 * time.Millisecond,
		Master: connsync.MasterConfig{FlushAfter: 10 * time.Millisecond, Tick: 10 * time.Millisecond}}
	m, b := newSyncTable(t), newSyncTable(t)
	ms, bs := NewSync(m.tb, cfg), NewSync(b.tb, cfg)
	t.Cleanup(ms.Close)
	t.Cleanup(bs.Close)

	opts := connsync.Options{Interface: "sync0", SyncID: 9}
	must(t, ms.Start(connsync.RoleMaster, opts))
	must(t, bs.Start(connsync.RoleBackup, opts))
	if err := ms.Start(connsync.RoleMaster, opts); !errors.Is(err, ErrDaemonRunning) || Message(err) != "Daemon has already run" {
		t.Errorf("second master: %v (%q)", err, Message(err))
	}
	if err := bs.Stop(connsync.RoleMaster); !errors.Is(err, ErrNoDaemon) || Message(err) != "No daemon is running" {
		t.Errorf("stop of a stopped master: %v (%q)", err, Message(err))
	}
	err := bs.Start(connsync.RoleMaster, connsync.Options{Interface: "nosuch0"})
	if !errors.Is(err, ErrNoDevice) || Message(err) != "No such device: unknown mcast interface nosuch0" {
		t.Errorf("unknown interface: %v (%q)", err, Message(err))
	}
	var lines []string
	for _, d := range ms.Daemons() {
		lines = append(lines, connsync.FormatDaemon(d.State, d.Options))
	}
	if want := []string{"master sync daemon (mcast=sync0, syncid=9, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"}; !slices.Equal(lines, want) {
		t.Errorf("master daemons %q, want %q", lines, want)
	}

	web, rs1 := m.ids(t, syncVIP, syncRS1, 6)
	must(t, m.dp.InstallConn(maps.Conn{Proto: 6, Client: cport(1), VIP: syncVIP, Dest: syncRS1, State: 1, SvcID: web, DestID: rs1, LastSeen: *m.now}))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := b.dp.LookupConn(6, cport(1), syncVIP)
		if err == nil {
			if c.Dest != syncRS1 || c.State != 1 {
				t.Fatalf("backup conn %+v", c)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("conn not synced after 10s: %v (backup stats installed %d)", err, bs.Stats().Installed.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := b.counts(t, syncVIP, syncRS1); got != [2]int64{1, 0} {
		t.Errorf("backup counts %v, want 1 0", got)
	}

	must(t, ms.Stop(connsync.RoleMaster))
	if d := ms.Daemons(); len(d) != 0 {
		t.Errorf("daemons after stop: %v", d)
	}
	net.mu.Lock()
	sent := net.sends
	net.mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	net.mu.Lock()
	if net.sends != sent {
		t.Errorf("stopped master still sends")
	}
	net.mu.Unlock()
	must(t, ms.Start(connsync.RoleMaster, opts)) // and starts again
}

// TestSyncMasterDoesNotEchoTheBackup: on a director running both daemons,
// the master leaves out the conns its backup installed until they carry a
// packet here.
func TestSyncMasterDoesNotEchoTheBackup(t *testing.T) {
	b := newSyncTable(t)
	s := NewSync(b.tb, SyncConfig{})
	s.Apply([]connsync.Conn{rec(cport(1), syncRS1, connsync.TCPEstablished)})
	snapshot := func() int {
		cs, err := b.tb.syncConns(context.Background(), nil, s.fromBackup)
		if err != nil {
			t.Fatal(err)
		}
		return len(cs)
	}
	if n := snapshot(); n != 0 {
		t.Errorf("master snapshot has %d conns right after the backup installed one, want 0", n)
	}
	// A packet here refreshes the conn's last-seen time.
	c, err := b.dp.LookupConn(6, cport(1), syncVIP)
	must(t, err)
	if ok, err := b.dp.DeleteConnIf(c, c.LastSeen); !ok || err != nil {
		t.Fatalf("touch: %v %v", ok, err)
	}
	c.LastSeen += time.Second
	must(t, b.dp.InstallConn(c))
	if n := snapshot(); n != 1 {
		t.Errorf("master snapshot has %d conns after local traffic, want 1", n)
	}
}

// BenchmarkSyncSnapshot is the master's cost per second: one walk of the
// conn table into records and one Observe, for 10k established conns.
func BenchmarkSyncSnapshot(b *testing.B) {
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{})
	cmds := []string{"-A -t 202.103.106.5:80 -s rr", "-a -t 202.103.106.5:80 -r 172.16.0.2:80 -m"}
	for _, l := range cmds {
		c, err := ipvsadm.Parse(strings.Fields(l), ipvsadm.SystemResolver())
		if err != nil {
			b.Fatal(err)
		}
		if err := tb.Apply([]ipvsadm.Command{*c}, nil); err != nil {
			b.Fatal(err)
		}
	}
	svc, dest, err := tb.bind(6, syncVIP, syncRS1)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 10000 {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000)
		if err := dp.InstallConn(maps.Conn{Proto: 6, Client: client, VIP: syncVIP, Dest: syncRS1, State: 1, SvcID: svc, DestID: dest, LastSeen: time.Second}); err != nil {
			b.Fatal(err)
		}
	}
	m := connsync.NewMaster(connsync.MasterConfig{QueueLen: 1 << 20})
	var buf []connsync.Conn
	now := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf, err = tb.SyncConns(context.Background(), buf[:0])
		if err != nil {
			b.Fatal(err)
		}
		m.Observe(buf, now.Add(time.Duration(i)*time.Second))
		m.Flush()
	}
}
