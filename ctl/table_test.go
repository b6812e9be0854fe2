package ctl

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"xvs/bpf"
	"xvs/ctl/ctltest"
	"xvs/ipvsadm"
	"xvs/maps"
)

func parse(t *testing.T, line string) ipvsadm.Command {
	t.Helper()
	c, err := ipvsadm.Parse(strings.Fields(line), ipvsadm.SystemResolver())
	if err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	return *c
}

func parseAll(t *testing.T, lines ...string) []ipvsadm.Command {
	var out []ipvsadm.Command
	for _, l := range lines {
		out = append(out, parse(t, l))
	}
	return out
}

// listing renders the table as "svc sched: dest weight, ..." lines in table
// order, for comparisons.
func listing(t *testing.T, tb *Table) []string {
	t.Helper()
	svcs, err := tb.Services(nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range svcs {
		l := s.Addr.String() + " " + s.Scheduler + ":"
		for _, d := range s.Dests {
			l += " " + d.Addr.String()
		}
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

func TestApply(t *testing.T) {
	const svc = "-t 10.0.0.1:80"
	tests := []struct {
		name    string
		lines   []string
		wantErr error
		want    []string
	}{
		{name: "service and two dests", lines: []string{
			"-A " + svc + " -s rr",
			"-a " + svc + " -r 172.16.0.2:80 -m",
			"-a " + svc + " -r 172.16.0.3:80 -m",
		}, want: []string{"10.0.0.1:80 rr: 172.16.0.2:80 172.16.0.3:80"}},
		{name: "duplicate service", lines: []string{"-A " + svc, "-A " + svc}, wantErr: ErrServiceExists},
		{name: "edit missing service", lines: []string{"-E " + svc + " -s rr"}, wantErr: ErrNoService},
		{name: "delete missing service", lines: []string{"-D " + svc}, wantErr: ErrNoService},
		{name: "dest without service", lines: []string{"-a " + svc + " -r 172.16.0.2 -m"}, wantErr: ErrServiceNotDefined},
		{name: "duplicate dest", lines: []string{"-A " + svc, "-a " + svc + " -r 172.16.0.2 -m", "-a " + svc + " -r 172.16.0.2 -m"}, wantErr: ErrDestExists},
		{name: "edit missing dest", lines: []string{"-A " + svc, "-e " + svc + " -r 172.16.0.2 -m"}, wantErr: ErrNoDest},
		{name: "lower threshold above upper", lines: []string{"-A " + svc, "-a " + svc + " -r 172.16.0.2 -m -y 5"}, wantErr: ErrRange},
		{name: "unknown scheduler", lines: []string{"-A " + svc + " -s nosuch"}, wantErr: ErrNoScheduler},
		{name: "delete dest keeps order", lines: []string{
			"-A " + svc + " -s wrr",
			"-a " + svc + " -r 172.16.0.2:80 -m",
			"-a " + svc + " -r 172.16.0.3:80 -m",
			"-a " + svc + " -r 172.16.0.4:80 -m",
			"-d " + svc + " -r 172.16.0.3:80",
		}, want: []string{"10.0.0.1:80 wrr: 172.16.0.2:80 172.16.0.4:80"}},
		{name: "edit scheduler", lines: []string{"-A " + svc + " -s rr", "-E " + svc + " -s wlc"}, want: []string{"10.0.0.1:80 wlc:"}},
		{name: "clear", lines: []string{"-A " + svc, "-A -u 10.0.0.1:53", "-C"}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := NewTable(ctltest.New(), TableOptions{})
			var err error
			for _, c := range parseAll(t, tt.lines...) {
				if err = tb.Apply([]ipvsadm.Command{c}, nil); err != nil {
					break
				}
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			if got := listing(t, tb); !slices.Equal(got, tt.want) {
				t.Errorf("table = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestApplyBatchIsAllOrNothing(t *testing.T) {
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{})
	cmds := parseAll(t,
		"-A -t 10.0.0.1:80 -s rr",
		"-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m",
		"-a -t 10.0.0.9:80 -r 172.16.0.3:80 -m", // no such service
		"-A -u 10.0.0.1:53 -s rr",
		"-a -u 10.0.0.1:53 -r 172.16.0.2:53 -m",
	)
	err := tb.Apply(cmds, []int{1, 2, 3, 4, 5})
	var le *LineError
	if !errors.As(err, &le) || le.Line != 3 || !errors.Is(err, ErrServiceNotDefined) {
		t.Fatalf("err = %v, want line 3: service not defined", err)
	}
	if got := listing(t, tb); len(got) != 0 {
		t.Errorf("table after failed batch = %q, want empty", got)
	}
	if len(dp.Svcs) != 0 {
		t.Errorf("datapath services after failed batch = %v, want none", dp.Svcs)
	}
}

func TestDeletedDestWaitsForItsConns(t *testing.T) {
	dp := ctltest.New()
	var now time.Duration = time.Hour
	tb := NewTable(dp, TableOptions{Mono: func() time.Duration { return now }})
	must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m"), nil))
	id := tb.svcs[svcKey{6, netip.MustParseAddrPort("10.0.0.1:80")}].dests[0].id
	client := netip.MustParseAddrPort("192.0.2.1:40000")
	vip := netip.MustParseAddrPort("10.0.0.1:80")
	must(t, dp.InstallConn(maps.Conn{Proto: 6, Client: client, VIP: vip, Dest: netip.MustParseAddrPort("172.16.0.2:80"), DestID: id, LastSeen: now}))
	dp.Establish(6, client, vip)

	rs := netip.MustParseAddr("172.16.0.2")
	if got := dp.Dests[id].Addr; got != rs {
		t.Fatalf("dest address in the datapath %s, want %s", got, rs)
	}

	must(t, tb.Apply(parseAll(t, "-d -t 10.0.0.1:80 -r 172.16.0.2:80"), nil))
	if dp.Dests[id].Available {
		t.Fatal("deleted dest still available in the datapath")
	}
	// Its conns are still rewritten to it.
	if got := dp.Dests[id].Addr; got != rs {
		t.Fatalf("deleted dest's address in the datapath %s, want %s", got, rs)
	}
	if tb.destIDs.used[id] == false {
		t.Fatal("deleted dest's id freed while a conn uses it")
	}
	// Re-adding revives the same real server, with its counters.
	must(t, tb.Apply(parseAll(t, "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m"), nil))
	svcs, _ := tb.Services(nil)
	if got := svcs[0].Dests[0]; got.ActiveConns != 1 || got.Stats.Conns != 1 {
		t.Errorf("revived dest = %+v, want its 1 active conn and 1 conn counted", got)
	}
	must(t, tb.Apply(parseAll(t, "-d -t 10.0.0.1:80 -r 172.16.0.2:80"), nil))
	now += 901 * time.Second
	n, err := tb.Expire(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Expire = %d, %v; want 1 conn removed", n, err)
	}
	if tb.destIDs.used[id] {
		t.Error("deleted dest's id still taken after its last conn expired")
	}
}

func TestExpireUsesStateTimeouts(t *testing.T) {
	dp := ctltest.New()
	var now time.Duration = time.Hour
	tb := NewTable(dp, TableOptions{Mono: func() time.Duration { return now }})
	must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m",
		"-A -u 10.0.0.1:53 -s rr", "-a -u 10.0.0.1:53 -r 172.16.0.2:53 -m", "--set 5 6 7"), nil))
	vip := netip.MustParseAddrPort("10.0.0.1:80")
	dns := netip.MustParseAddrPort("10.0.0.1:53")
	est := netip.MustParseAddrPort("192.0.2.1:1000")
	udp := netip.MustParseAddrPort("192.0.2.1:1001")
	fresh := netip.MustParseAddrPort("192.0.2.1:1002")
	must(t, dp.InstallConn(maps.Conn{Proto: 6, Client: est, VIP: vip, Dest: netip.MustParseAddrPort("172.16.0.2:80"), DestID: 0, LastSeen: now}))
	dp.Establish(6, est, vip)
	must(t, dp.InstallConn(maps.Conn{Proto: 17, Client: udp, VIP: dns, Dest: netip.MustParseAddrPort("172.16.0.2:53"), DestID: 1, LastSeen: now}))
	dp.Establish(17, udp, dns)
	must(t, dp.InstallConn(maps.Conn{Proto: 6, Client: fresh, VIP: vip, Dest: netip.MustParseAddrPort("172.16.0.2:80"), DestID: 0, Flags: 1, LastSeen: now}))

	tests := []struct {
		after time.Duration
		left  int
	}{
		{after: 2 * time.Second, left: 3},
		{after: 4 * time.Second, left: 2}, // never forwarded: 3 s
		{after: 6 * time.Second, left: 1}, // ESTABLISHED: --set tcp 5
		{after: 8 * time.Second, left: 0}, // UDP: --set udp 7
	}
	start := now
	for _, tt := range tests {
		now = start + tt.after
		if _, err := tb.Expire(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(dp.Conns) != tt.left {
			t.Errorf("after %v: %d conns, want %d", tt.after, len(dp.Conns), tt.left)
		}
	}
	svcs, _ := tb.Services(nil)
	for _, s := range svcs {
		for _, d := range s.Dests {
			if d.ActiveConns != 0 || d.InactConns != 0 {
				t.Errorf("%v: ActiveConn %d InActConn %d after expiry, want 0 0", d.Addr, d.ActiveConns, d.InactConns)
			}
		}
	}
}

func TestEstimatorMatchesIPVS(t *testing.T) {
	// ip_vs_est.c: a steady 100 conn/s reads 25, 44, 58, 68, ... -> 100.
	var e estimator
	var st maps.Stats
	var got []uint64
	for range 80 {
		st.Conns += 200
		st.InBytes += 200000
		e.sample(st)
		got = append(got, e.rate().Conns)
	}
	if want := []uint64{25, 44, 58, 68}; !slices.Equal(got[:4], want) {
		t.Errorf("first rates = %v, want %v", got[:4], want)
	}
	if got[79] != 100 {
		t.Errorf("steady rate = %d, want 100", got[79])
	}
	if r := e.rate().InBytes; r != 100000 {
		t.Errorf("steady byte rate = %d, want 100000", r)
	}
}

func TestSnapshotAdoptKeepsIDs(t *testing.T) {
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{})
	must(t, tb.Apply(parseAll(t,
		"-A -t 10.0.0.1:80 -s wrr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m -w 3",
		"-a -t 10.0.0.1:80 -r 172.16.0.3:80 -m -w 1", "-A -u [2001:db8::1]:53 -s sh -p 60",
		"-a -u [2001:db8::1]:53 -r [2001:db8:2::2]:53 -m", "--set 10 20 30"), nil))
	path := filepath.Join(t.TempDir(), "state.json")
	must(t, WriteSnapshotFile(path, tb.Snapshot()))
	sn, err := ReadSnapshotFile(path)
	must(t, err)
	tb2 := NewTable(dp, TableOptions{})
	must(t, tb2.Adopt(sn))
	if a, b := listing(t, tb), listing(t, tb2); !slices.Equal(a, b) {
		t.Errorf("adopted table = %q, want %q", b, a)
	}
	for k, s := range tb.svcs {
		s2 := tb2.svcs[k]
		if s2 == nil || s2.id != s.id {
			t.Fatalf("service %v: id not kept", k)
		}
		for i, d := range s.dests {
			if s2.dests[i].id != d.id || s2.dests[i].cfg != d.cfg {
				t.Errorf("dest %v: %+v, want %+v", d.cfg.Addr, s2.dests[i], d)
			}
		}
	}
	if tb2.Timeouts() != (ipvsadm.Timeouts{TCP: 10, TCPFin: 20, UDP: 30}) {
		t.Errorf("timeouts = %+v", tb2.Timeouts())
	}
	// A new service after adoption must not reuse a taken id.
	must(t, tb2.Apply(parseAll(t, "-A -t 10.0.0.2:80"), nil))
	ids := map[uint32]bool{}
	for _, s := range tb2.svcs {
		if ids[s.id] {
			t.Fatalf("service id %d used twice", s.id)
		}
		ids[s.id] = true
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSizesMatchTheObject(t *testing.T) {
	spec, err := bpf.LoadXvs()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"xvs_svcs": maxServices, "xvs_svc_stats": maxServices, "xvs_dests": maxDests, "xvs_dest_stats": maxDests} {
		if got := spec.Maps[name].MaxEntries; int(got) != want {
			t.Errorf("%s has %d entries, ctl assumes %d", name, got, want)
		}
	}
}

func TestServicesGetTheFirstPacketBudget(t *testing.T) {
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{Budget: Budget{Rate: 500, Burst: 50}})
	must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80", "-A -u 10.0.0.1:53"), nil))
	for k, s := range tb.svcs {
		if got := dp.Budgets[s.id]; got != [2]uint64{500, 50} {
			t.Errorf("%v: budget %v, want [500 50]", k.addr, got)
		}
	}
	tb2 := NewTable(dp, TableOptions{Budget: Budget{Rate: 7}})
	clear(dp.Budgets)
	must(t, tb2.Adopt(tb.Snapshot()))
	if len(dp.Budgets) != 2 {
		t.Errorf("adopted table set %d budgets, want 2", len(dp.Budgets))
	}
}
