package ipvsadm

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var testInfo = Info{Version: "1.0.0", ConnTableSize: 4096}

// golden compares got with testdata/name.golden (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, mark(string(got)), mark(string(want)))
	}
}

// mark shows line ends, so trailing blanks are visible in failures.
func mark(s string) string { return strings.ReplaceAll(s, "\n", "|\n") }

func dest(addr string, m Method, w int32, active, inact int64) DestEntry {
	return DestEntry{Dest: Dest{Addr: ap(addr), Method: m, Weight: w}, ActiveConns: active, InactConns: inact}
}

// referenceServices is the table of the reference's examples (2.2, 2.3, 3.1).
func referenceServices() []ServiceEntry {
	web := ServiceEntry{
		Service: *with(tcp("207.175.44.110:80"), sched("rr")),
		Stats:   Stats{Conns: 12, InPkts: 345, OutPkts: 300, InBytes: 123456789, OutBytes: 4567890123},
		Rate:    Stats{Conns: 3, InPkts: 120, OutPkts: 100, InBytes: 250000000, OutBytes: 99999999},
		Dests: []DestEntry{
			dest("192.168.10.2:80", MethodMasq, 3, 0, 0),
			dest("192.168.10.1:80", MethodMasq, 1, 2, 10),
		},
	}
	web.Dests[1].Stats = Stats{Conns: 6, InPkts: 170, OutPkts: 150, InBytes: 20000, OutBytes: 300000}
	web.Dests[1].Rate = Stats{Conns: 123456789, InPkts: 5, OutPkts: 4, InBytes: 1000000000, OutBytes: 100000000000000}
	web.Dests[1].UThreshold, web.Dests[1].LThreshold = 100, 50
	web.Dests[1].PersistConns = 3
	dns := ServiceEntry{Service: *with(udp("207.175.44.110:53"), func(s *Service) {
		s.Scheduler = "wlc"
		s.Persistent = true
		s.Timeout = 360
		s.Netmask = 24
		s.OnePacket = true
	})}
	fwm := ServiceEntry{Service: Service{Proto: ProtoTCP, Addr: ap("0.0.0.0:0"), FwMark: 1, Scheduler: "sh", Flags: 0x18, Netmask: 32},
		Dests: []DestEntry{dest("192.168.10.1:0", MethodMasq, 1, 0, 0)}}
	v6 := ServiceEntry{Service: Service{Proto: ProtoTCP, Addr: ap("[2001:db8::80]:80"), Scheduler: "rr", Netmask: 128},
		Dests: []DestEntry{dest("[2001:db8::a0a0]:80", MethodMasq, 1, 0, 0)}}
	fwm6 := ServiceEntry{Service: Service{Proto: ProtoTCP, Addr: ap("[::]:0"), FwMark: 2, Scheduler: "rr", Netmask: 128}}
	// Given in an order that sorting has to fix.
	return []ServiceEntry{fwm6, v6, fwm, dns, web}
}

// quirkServices exercise sorting, flags and masks.
func quirkServices() []ServiceEntry {
	return []ServiceEntry{
		{Service: *with(tcp("10.0.0.1:80"), sched("wrr")), Dests: []DestEntry{
			dest("192.168.1.1:80", MethodMasq, 1, 0, 0),
			dest("10.0.0.9:80", MethodMasq, 1, 0, 0),
			dest("10.0.0.9:79", MethodMasq, 2, 0, 0),
		}},
		{Service: *with(tcp("192.168.1.1:80"), func(s *Service) { s.Scheduler = "sh"; s.Flags = FlagSched3 })},
		{Service: *with(tcp("172.16.0.1:443"), func(s *Service) { s.Scheduler = "mh"; s.Flags = FlagSched1 | FlagSched2 })},
		{Service: *with(udp("172.16.0.1:53"), func(s *Service) { s.Scheduler = "lc"; s.Flags = FlagSched1 | FlagSched3 })},
		{Service: Service{Proto: ProtoUDP, Addr: ap("[2001:db8::1]:53"), Scheduler: "wlc", Netmask: 64, Persistent: true, Timeout: 600}},
	}
}

func TestWriteListGolden(t *testing.T) {
	names := []ServiceEntry{
		{Service: *with(tcp("207.175.44.110:80"), sched("rr")), Dests: []DestEntry{dest("192.168.10.1:80", MethodMasq, 1, 0, 0)}},
		{Service: *with(tcp("172.20.39.170:80"), sched("rr")), Dests: []DestEntry{dest("172.20.35.14:80", MethodMasq, 1, 1, 0)}},
		{Service: *with(udp("202.103.106.5:53"), sched("rr")), Dests: []DestEntry{dest("172.16.0.9:5353", MethodMasq, 1, 0, 0)}},
		{Service: Service{Proto: ProtoTCP, Addr: ap("[2001:db8::80]:443"), Scheduler: "rr", Netmask: 128},
			Dests: []DestEntry{dest("[2001:db8::80]:22", MethodMasq, 1, 0, 0)}},
	}
	tests := []struct {
		name string
		svcs []ServiceEntry
		opt  ListOptions
	}{
		{"list_default", referenceServices(), ListOptions{Numeric: true}},
		{"list_stats", referenceServices(), ListOptions{Numeric: true, Stats: true}},
		{"list_stats_exact", referenceServices(), ListOptions{Numeric: true, Stats: true, Exact: true}},
		{"list_rate", referenceServices(), ListOptions{Numeric: true, Rate: true}},
		{"list_rate_exact", referenceServices(), ListOptions{Numeric: true, Rate: true, Exact: true}},
		{"list_thresholds", referenceServices(), ListOptions{Numeric: true, Thresholds: true}},
		{"list_persistent_conn", referenceServices(), ListOptions{Numeric: true, PersistConn: true}},
		{"list_tun_info", referenceServices(), ListOptions{Numeric: true, TunInfo: true}},
		{"list_stats_wins", referenceServices(), ListOptions{Numeric: true, Stats: true, Rate: true, Thresholds: true, PersistConn: true}},
		{"list_one_service", referenceServices()[4:], ListOptions{Numeric: true, OneService: true}},
		{"list_nosort", referenceServices(), ListOptions{Numeric: true, NoSort: true}},
		{"list_quirks", quirkServices(), ListOptions{Numeric: true}},
		{"list_names", names, ListOptions{}},
		{"list_names_stats", names, ListOptions{Stats: true}},
	}
	r := newFakeResolver()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteList(&b, testInfo, tt.svcs, tt.opt, r); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, b.Bytes())
		})
	}
}

// TestWriteListReference checks the reference's own examples literally.
func TestWriteListReference(t *testing.T) {
	r := newFakeResolver()
	svcs := referenceServices()[2:] // FWM 1, UDP :53, TCP :80
	svcs[0].Dests = nil
	var b bytes.Buffer
	if err := WriteList(&b, testInfo, svcs, ListOptions{Numeric: true}, r); err != nil {
		t.Fatal(err)
	}
	want := "XDP Virtual Server version 1.0.0 (size=4096)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"TCP  207.175.44.110:80 rr\n" +
		"  -> 192.168.10.1:80              Masq    1      2          10        \n" +
		"  -> 192.168.10.2:80              Masq    3      0          0         \n" +
		"UDP  207.175.44.110:53 wlc persistent 360 mask 255.255.255.0 ops\n" +
		"FWM  1 sh (sh-fallback,sh-port)\n"
	if b.String() != want {
		t.Errorf("default listing:\n%s\nwant\n%s", mark(b.String()), mark(want))
	}

	b.Reset()
	one := []ServiceEntry{referenceServices()[4]}
	one[0].Dests = one[0].Dests[1:]
	if err := WriteList(&b, testInfo, one, ListOptions{Numeric: true, Stats: true, OneService: true}, r); err != nil {
		t.Fatal(err)
	}
	want = "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n" +
		"  -> RemoteAddress:Port\n" +
		"TCP  207.175.44.110:80                  12      345      300  123456K    4567M\n" +
		"  -> 192.168.10.1:80                     6      170      150    20000   300000\n"
	if b.String() != want {
		t.Errorf("stats listing:\n%s\nwant\n%s", mark(b.String()), mark(want))
	}

	b.Reset()
	if err := WriteList(&b, testInfo, one, ListOptions{Numeric: true, Thresholds: true, OneService: true}, r); err != nil {
		t.Fatal(err)
	}
	want = "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n" +
		"  -> RemoteAddress:Port\n" +
		"TCP  207.175.44.110:80 rr\n" +
		"  -> 192.168.10.1:80              100        50         2          10        \n"
	if b.String() != want {
		t.Errorf("thresholds listing:\n%s\nwant\n%s", mark(b.String()), mark(want))
	}

	b.Reset()
	if err := WriteList(&b, testInfo, one, ListOptions{Numeric: true, PersistConn: true, OneService: true}, r); err != nil {
		t.Fatal(err)
	}
	want = "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n" +
		"  -> RemoteAddress:Port\n" +
		"TCP  207.175.44.110:80 rr\n" +
		"  -> 192.168.10.1:80              1         3           2          10        \n"
	if b.String() != want {
		t.Errorf("persistent-conn listing:\n%s\nwant\n%s", mark(b.String()), mark(want))
	}

	// 2.7: names, and the 33/28 cuts quoted from kube-router PR #100.
	delete(r.hosts, "www.example.com")
	named := []ServiceEntry{
		{Service: *with(tcp("207.175.44.110:80"), sched("rr")), Dests: []DestEntry{dest("192.168.10.1:80", MethodMasq, 1, 0, 0)}},
		{Service: *with(tcp("172.20.39.170:80"), sched("rr")), Dests: []DestEntry{dest("172.20.35.14:80", MethodMasq, 1, 1, 0)}},
	}
	b.Reset()
	if err := WriteList(&b, testInfo, named, ListOptions{NoSort: true}, r); err != nil {
		t.Fatal(err)
	}
	want = "XDP Virtual Server version 1.0.0 (size=4096)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"TCP  207.175.44.110:http rr\n" +
		"  -> web1.example.com:http        Masq    1      0          0         \n" +
		"TCP  ip-172-20-39-170.us-west-2.c rr\n" +
		"  -> ip-172-20-35-14.us-west-2.co Masq    1      1          0         \n"
	if b.String() != want {
		t.Errorf("name listing:\n%s\nwant\n%s", mark(b.String()), mark(want))
	}
}

func TestLargenum(t *testing.T) {
	tests := []struct {
		v     uint64
		exact bool
		want  string
	}{
		{0, false, "        0"},
		{99999999, false, " 99999999"},
		{100000000, false, "  100000K"},
		{123456789, false, "  123456K"},
		{999999999, false, "  999999K"},
		{1000000000, false, "    1000M"},
		{4567890123, false, "    4567M"},
		{99999999999, false, "   99999M"},
		{100000000000, false, "     100G"},
		{99999999999999, false, "   99999G"},
		{100000000000000, false, "     100T"},
		{18446744073709551615, false, "18446744T"},
		{12345678, true, " 12345678"},
		{123456789, true, " 123456789"},
		{18446744073709551615, true, " 18446744073709551615"},
	}
	for _, tt := range tests {
		var b strings.Builder
		printLargenum(&b, tt.v, tt.exact)
		if b.String() != tt.want {
			t.Errorf("printLargenum(%d, %v) = %q, want %q", tt.v, tt.exact, b.String(), tt.want)
		}
	}
}

func TestSortQuirk(t *testing.T) {
	svcs := []ServiceEntry{
		{Service: *tcp("10.0.0.1:80")},
		{Service: *tcp("172.16.0.1:80")},
		{Service: *tcp("192.168.1.1:80")},
	}
	// Two at a time: 10.0.0.1 sorts after 192.168.1.1, 172.16.0.1 before 10.0.0.1.
	if got := sortedServices([]ServiceEntry{svcs[0], svcs[2]}); got[0].Addr != svcs[2].Addr {
		t.Errorf("10.0.0.1 vs 192.168.1.1: got %v first, want 192.168.1.1", got[0].Addr)
	}
	if got := sortedServices([]ServiceEntry{svcs[0], svcs[1]}); got[0].Addr != svcs[1].Addr {
		t.Errorf("10.0.0.1 vs 172.16.0.1: got %v first, want 172.16.0.1", got[0].Addr)
	}
	// All three, through glibc's merge sort.
	got := sortedServices(svcs)
	var order []string
	for _, s := range got {
		order = append(order, s.Addr.Addr().String())
	}
	if want := "172.16.0.1 192.168.1.1 10.0.0.1"; strings.Join(order, " ") != want {
		t.Errorf("order = %v, want %s", order, want)
	}
	// Within one /1 half the order is plain ascending; then family, protocol, port.
	mixed := []ServiceEntry{
		{Service: Service{Proto: ProtoTCP, Addr: ap("[2001:db8::1]:80")}},
		{Service: *udp("10.0.0.2:53")},
		{Service: *tcp("10.0.0.2:443")},
		{Service: *tcp("10.0.0.2:80")},
		{Service: *tcp("10.0.0.1:80")},
		{Service: Service{Proto: ProtoTCP, Addr: ap("0.0.0.0:0"), FwMark: 7}},
	}
	order = order[:0]
	for _, s := range sortedServices(mixed) {
		order = append(order, s.Addr.String())
	}
	if want := "10.0.0.1:80 10.0.0.2:80 10.0.0.2:443 10.0.0.2:53 [2001:db8::1]:80 0.0.0.0:0"; strings.Join(order, " ") != want {
		t.Errorf("order = %v, want %s", order, want)
	}
	if mixed[0].Addr != ap("[2001:db8::1]:80") {
		t.Error("sortedServices modified its input")
	}
}

func TestWriteConns(t *testing.T) {
	conns := []ConnEntry{
		{Proto: ProtoTCP, Client: ap("10.0.0.2:50000"), Virtual: ap("207.175.44.110:8080"), Dest: ap("172.16.0.2:8080"), State: "ESTABLISHED", Expires: 899*time.Second + 999*time.Millisecond},
		{Proto: ProtoTCP, Client: ap("10.0.0.2:50002"), Virtual: ap("207.175.44.110:8080"), Dest: ap("172.16.0.2:8080"), State: "TIME_WAIT", Expires: 118 * time.Second},
		{Proto: ProtoUDP, Client: ap("10.0.0.2:40000"), Virtual: ap("207.175.44.110:53"), Dest: ap("172.16.0.3:53"), State: "UDP", Expires: 299 * time.Second},
		{Proto: ProtoTCP, Template: true, Client: ap("10.0.0.2:0"), Virtual: ap("207.175.44.110:80"), Dest: ap("172.16.0.2:80"), State: "NONE", Expires: 359 * time.Second},
		{Proto: 0, Template: true, Client: ap("10.0.0.0:0"), Virtual: ap("0.0.0.1:0"), Dest: ap("172.16.0.2:0"), State: "ASSURED", Expires: 358 * time.Second},
	}
	var b bytes.Buffer
	if err := WriteConns(&b, conns, ListOptions{Numeric: true}, nil); err != nil {
		t.Fatal(err)
	}
	// The reference's example (2.5), literally.
	want := `IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:59  ESTABLISHED 10.0.0.2:50000     207.175.44.110:8080 172.16.0.2:8080
TCP 01:58  TIME_WAIT   10.0.0.2:50002     207.175.44.110:8080 172.16.0.2:8080
UDP 04:59  UDP         10.0.0.2:40000     207.175.44.110:53  172.16.0.3:53
TCP 05:59  NONE        10.0.0.2:0         207.175.44.110:80  172.16.0.2:80
IP  05:58  ASSURED     10.0.0.0:0         0.0.0.1:0          172.16.0.2:0
`
	if b.String() != want {
		t.Errorf("connections:\n%s\nwant\n%s", mark(b.String()), mark(want))
	}

	more := []ConnEntry{
		{Proto: ProtoTCP, Client: ap("[2001:db8::2]:50000"), Virtual: ap("[2001:db8::80]:80"), Dest: ap("[2001:db8::a0a0]:80"), State: "SYN_RECV", Expires: 6000 * time.Second},
		{Proto: ProtoTCP, Client: ap("10.0.0.2:50000"), Virtual: ap("202.103.106.5:80"), Dest: ap("172.16.0.2:80"), State: "FIN_WAIT", Expires: -time.Second},
		{Proto: 47, Client: ap("10.0.0.2:1"), Virtual: ap("202.103.106.5:80"), Dest: ap("172.16.0.2:80"), State: "NONE", Expires: time.Second},
	}
	for _, tc := range []struct {
		name string
		opt  ListOptions
	}{
		{"conns_numeric", ListOptions{Numeric: true}},
		{"conns_names", ListOptions{}},
		{"conns_persistent_conn", ListOptions{Numeric: true, PersistConn: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteConns(&b, append(append([]ConnEntry(nil), conns...), more...), tc.opt, newFakeResolver()); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, b.Bytes())
		})
	}
}

func TestWriteTimeout(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTimeout(&b, Timeouts{TCP: 900, TCPFin: 120, UDP: 300}); err != nil {
		t.Fatal(err)
	}
	if want := "Timeout (tcp tcpfin udp): 900 120 300\n"; b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestUsage(t *testing.T) {
	var b bytes.Buffer
	Usage(&b, "xvsadm")
	out := b.String()
	for _, s := range []string{"Usage:\n  xvsadm -A|E", "  xvsadm --set tcp tcpfin udp\n", "--masquerading -m", "the default scheduler is wlc.", "Note:"} {
		if !strings.Contains(out, s) {
			t.Errorf("usage lacks %q", s)
		}
	}
	if strings.Contains(out, "ipvsadm -") || strings.Contains(out, "--gatewaying   -g") {
		t.Errorf("usage names ipvsadm or offers -g:\n%s", out)
	}
}
