package maps

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/cilium/ebpf"

	"xvs/bpf"
)

// TestInstallConns: a batch larger than one run of xvs_install goes into
// the new pair under both keys with its counters, like InstallConn; a conn
// either pair already has is ErrConnExists and keeps the winner's keys; a
// conn with a bad address fails alone; an older conn's server-side key in
// the main pair is pointed at the new conn.
func TestInstallConns(t *testing.T) {
	m, raw := newTestMaps(t)
	const n = installBatch*2 + 5

	// Already there: one in the main pair, one in the new pair.
	inMain := tcpConn(1)
	inMain.State = uint8(bpf.XvsTcpStateSTATE_ESTABLISHED)
	if err := m.InstallConn(inMain); err != nil {
		t.Fatal(err)
	}
	inNew := tcpConn(2)
	inNew.Dest = netip.MustParseAddrPort("172.16.0.3:80")
	inNew.DestID = 8
	if err := m.InstallConn(inNew); err != nil {
		t.Fatal(err)
	}
	// An older conn whose server-side key the batch's conn 3 reuses
	// (same real server and client port through another service).
	old := tcpConn(3)
	old.VIP = netip.MustParseAddrPort("202.103.106.6:80")
	old.SvcID = 3
	old.State = uint8(bpf.XvsTcpStateSTATE_ESTABLISHED)
	if err := m.InstallConn(old); err != nil {
		t.Fatal(err)
	}
	wantDestConns(t, m, 7, 2, 0)
	wantDestConns(t, m, 8, 0, 1)

	cs := make([]Conn, n)
	for i := range cs {
		cs[i] = tcpConn(i + 1)
	}
	exist := make([]bool, n)
	if err := m.ConnsExist(cs, exist); err != nil {
		t.Fatal(err)
	}
	for i, e := range exist {
		if e != (i < 2) {
			t.Errorf("conn %d exists: %v, want %v", i, e, i < 2)
		}
	}
	bad := n - 1
	cs[bad].Dest = netip.MustParseAddrPort("[fd00::1]:80") // family differs from the VIP's
	// Not the address xvs_dests holds for dest 7 (172.16.0.2): Go's view
	// and the datapath's rewrite would disagree.
	wrong := n - 2
	cs[wrong].Dest = netip.MustParseAddrPort("172.16.0.9:80")
	errs := make([]error, n)
	m.InstallConns(cs, errs)

	for i, c := range cs {
		switch {
		case i == 0 || i == 1:
			if !errors.Is(errs[i], ErrConnExists) {
				t.Errorf("conn %d: %v, want ErrConnExists", i, errs[i])
			}
		case i == bad:
			if errs[i] == nil {
				t.Errorf("conn %d with a v6 real server behind a v4 VIP installed", i)
			}
		case i == wrong:
			if errs[i] == nil || !strings.Contains(errs[i].Error(), "dest id 7 is 172.16.0.2") {
				t.Errorf("conn %d to another address than its dest id's: %v", i, errs[i])
			}
			if _, err := m.LookupConn(c.Proto, c.Client, c.VIP); !errors.Is(err, ErrNotFound) {
				t.Errorf("conn %d installed anyway: %v", i, err)
			}
		default:
			if errs[i] != nil {
				t.Errorf("conn %d: %v", i, errs[i])
				continue
			}
			if i != 2 { // its server-side key is in both pairs: shadowing, below
				wantPair(t, m, raw, c, pairNew)
			}
			got, err := m.LookupConn(c.Proto, c.Client, c.VIP)
			if err != nil || got.Dest != c.Dest || got.DestID != c.DestID || got.SvcID != c.SvcID || got.Flags != c.Flags || got.LastSeen == 0 {
				t.Errorf("conn %d reads back as %+v, %v", i, got, err)
			}
		}
	}
	wantPair(t, m, raw, inMain, pairMain)
	wantPair(t, m, raw, inNew, pairNew)
	if got, err := m.LookupConn(inNew.Proto, inNew.Client, inNew.VIP); err != nil || got.DestID != 8 {
		t.Errorf("the winner of conn 1 is now %+v, %v", got, err)
	}
	// Every new conn counted once as inactive; the losers not at all.
	wantDestConns(t, m, 7, 2, int64(n-4))
	wantDestConns(t, m, 8, 0, 1)

	ck, sk, v, _ := m.connToBPF(cs[2])
	var back bpf.XvsRconn
	if err := raw.XvsRconns.Lookup(&sk, &back); err != nil || back != rconnOf(ck, v) {
		t.Errorf("main server side = %+v, %v; want the newer conn", back, err)
	}
	// The new conns are the oldest half-open ones, after inNew: they are
	// what makeRoom removes first.
	if k, ok := m.halfOpen.pop(); !ok || k != mustKey(t, inNew) {
		t.Errorf("oldest half-open key %+v, %v; want inNew's", k, ok)
	}
	if k, ok := m.halfOpen.pop(); !ok || k != mustKey(t, cs[2]) {
		t.Errorf("second oldest half-open key %+v, %v; want conn 2's", k, ok)
	}
}

func mustKey(t *testing.T, c Conn) bpf.XvsConnKey {
	t.Helper()
	ck, err := connKeyToBPF(c.Proto, c.Client, c.VIP)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

// TestInstallConnsFull: a batch that meets a full new pair makes room the
// way InstallConn does: the oldest half-open conns go, counted out.
func TestInstallConnsFull(t *testing.T) {
	const size = 16
	m, raw := newTestMapsSized(t, size)
	cs := make([]Conn, size+8)
	for i := range cs {
		cs[i] = tcpConn(i)
	}
	errs := make([]error, len(cs))
	m.InstallConns(cs, errs)
	for i, err := range errs {
		if err != nil {
			t.Errorf("conn %d: %v", i, err)
		}
	}
	for i, c := range cs {
		want := pairNew
		if i < len(cs)-size {
			want = pairNone
		}
		wantPair(t, m, raw, c, want)
	}
	if got := m.HalfOpenEvicted(); got != 8 {
		t.Errorf("evicted %d, want 8", got)
	}
	wantDestConns(t, m, 7, 0, size)
}

// TestInstallConnsConcurrent: workers installing at once (each run in its
// own slot) install every conn exactly once.
func TestInstallConnsConcurrent(t *testing.T) {
	m, raw := newTestMaps(t)
	const workers, per = 4, 300
	var wg sync.WaitGroup
	fails := make(chan error, workers*per)
	for w := range workers {
		wg.Go(func() {
			// Every worker tries every conn: each is won once.
			cs := make([]Conn, per)
			for i := range cs {
				cs[i] = tcpConn((i*7 + w*13) % per)
			}
			errs := make([]error, per)
			for b := 0; b < per; b += 10 {
				m.InstallConns(cs[b:b+10], errs[b:b+10])
			}
			for _, err := range errs {
				if err != nil && !errors.Is(err, ErrConnExists) {
					fails <- err
				}
			}
		})
	}
	wg.Wait()
	close(fails)
	for err := range fails {
		t.Error(err)
	}
	wantDestConns(t, m, 7, 0, per)
	var k bpf.XvsConnKey
	var v bpf.XvsConn
	it := raw.XvsConnsNew.Iterate()
	count := 0
	for it.Next(&k, &v) {
		count++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if count != per {
		t.Errorf("%d conns in the new pair, want %d", count, per)
	}
	for i := range per {
		wantPair(t, m, raw, tcpConn(i), pairNew)
	}
}

// TestSyscallProgsFollowLiveMaps: the install and expire programs load
// against conn tables whose flags differ from their object's (a datapath
// built with preallocated half-open tables), instead of failing over to
// the per-conn syscalls.
func TestSyscallProgsFollowLiveMaps(t *testing.T) {
	m, _ := newTestMapsSpec(t, func(spec *ebpf.CollectionSpec) {
		for _, n := range []string{bpf.XvsMapXvsConns, bpf.XvsMapXvsRconns, bpf.XvsMapXvsConnsNew, bpf.XvsMapXvsRconnsNew} {
			spec.Maps[n].MaxEntries = 1024
		}
		spec.Maps[bpf.XvsMapXvsConnsNew].Flags = 0
		spec.Maps[bpf.XvsMapXvsRconnsNew].Flags = 0
	})
	c := tcpConn(1)
	setDests(t, m, c)
	errs := make([]error, 1)
	m.InstallConns([]Conn{c}, errs)
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
	if m.inst.err != nil {
		t.Errorf("xvs_install not loaded: %v", m.inst.err)
	}
	got, err := m.LookupConn(c.Proto, c.Client, c.VIP)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.ExpireConns([]Conn{got}); err != nil || n != 1 {
		t.Errorf("ExpireConns = %d, %v; want 1", n, err)
	}
	if m.expire.err != nil {
		t.Errorf("xvs_expire not loaded: %v", m.expire.err)
	}
}
