package bench

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseLinkStat(t *testing.T) {
	out := `4: tap0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UNKNOWN mode DEFAULT group default qlen 1000
    link/ether 6e:9b:0b:85:fd:b9 brd ff:ff:ff:ff:ff:ff
    RX:  bytes packets errors dropped  missed   mcast           
       1401120   23352      0       7       0       0 
    RX errors:  length    crc   frame    fifo overrun
                     0      0       0       0       0 
    TX:  bytes packets errors dropped carrier collsns           
       1401120   23350      0    6440       0       0 
`
	tests := []struct {
		name, dir, field string
		want             uint64
		wantErr          bool
	}{
		{name: "tx dropped", dir: "TX", field: "dropped", want: 6440},
		{name: "tx packets", dir: "TX", field: "packets", want: 23350},
		{name: "rx dropped", dir: "RX", field: "dropped", want: 7},
		{name: "unknown field", dir: "TX", field: "nope", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLinkStat(out, tt.dir, tt.field)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseLinkStat(%s, %s) = %d, %v; want %d, error %v", tt.dir, tt.field, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseServiceConns(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr bool
	}{
		{name: "services summed, dests ignored", in: `XDP Virtual Server version 0.1.0 (size=1048576)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  198.18.0.1:80                       5        0        0        0        0
  -> 198.19.0.2:80                       3        0        0        0        0
UDP  198.18.0.1:9                    23352    23352        0  1074192        0
  -> 198.19.0.2:9                    11676    11676        0   537096        0
`, want: 23357},
		{name: "no service", in: "XDP Virtual Server version 0.1.0 (size=1048576)\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseServiceConns(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseGoBench(t *testing.T) {
	in := `goos: linux
goarch: amd64
pkg: xvs/bpf
BenchmarkXDPForwardHit-2   	  123456	        81.50 ns/op	        30.10 pass-ns/op	         2.708 x-pass
BenchmarkSchedule/rr/dests=16-2         	38000000	        31.2 ns/op	       0 B/op	       0 allocs/op
some log line
PASS
ok  	xvs/sched	12.3s
`
	got, err := ParseGoBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d results, want 2: %+v", len(got), got)
	}
	tests := []struct {
		name, bench, unit string
		want              float64
	}{
		{name: "hit ns", bench: "BenchmarkXDPForwardHit", unit: "ns/op", want: 81.5},
		{name: "custom metric", bench: "BenchmarkXDPForwardHit", unit: "pass-ns/op", want: 30.1},
		{name: "sub-benchmark without procs suffix", bench: "BenchmarkSchedule/rr/dests=16", unit: "ns/op", want: 31.2},
		{name: "benchmem", bench: "BenchmarkSchedule/rr/dests=16", unit: "allocs/op", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, b := range got {
				if b.Name == tt.bench {
					if v, ok := b.Metrics[tt.unit]; !ok || v != tt.want {
						t.Fatalf("%s %s = %v (present %v), want %v", tt.bench, tt.unit, v, ok, tt.want)
					}
					return
				}
			}
			t.Fatalf("no %s", tt.bench)
		})
	}
}

func TestParseIperf(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    IperfResult
		wantErr bool
	}{
		{name: "result", in: `{"end":{"sum_sent":{"retransmits":7},"sum_received":{"bits_per_second":2.5e9}}}`,
			want: IperfResult{BitsPerSec: 2.5e9, Retransmits: 7}},
		{name: "error", in: `{"error":"unable to connect to server"}`, wantErr: true},
		{name: "nothing received", in: `{"end":{}}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseIperf([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestResultsTable(t *testing.T) {
	r := NewResults()
	for _, v := range []float64{3e6, 1e6, 2e6} {
		r.Add("pps", "xvs", "pps", v)
	}
	r.Add("pps", "nft", "pps", 0.5e6)
	r.Add("pps", "ref", "pps", 4e6)
	r.Note("xvs-tc: skipped")
	var b bytes.Buffer
	if err := r.Table(&b, []Row{{Label: "rate", Key: "pps", XVS: "xvs", Scale: 1e-6, Prec: 2}}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines, want 3:\n%s", len(lines), b.String())
	}
	cells := strings.Fields(strings.ReplaceAll(lines[2], "|", " "))
	want := []string{"rate", "2.00", "0.50", "-", "4.00", "4.00", "0.50"}
	if strings.Join(cells, " ") != strings.Join(want, " ") {
		t.Fatalf("row = %q, want %q (median 2.00, xvs/nft 4.00, xvs/ref 0.50)", cells, want)
	}
	var raw bytes.Buffer
	if err := r.WriteRaw(&raw, "header"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"# header\n", "pps\txvs\t2\t1e+06\tpps\n", "pps\tnft\t1\t500000\tpps\n", "# note: xvs-tc: skipped\n"} {
		if !strings.Contains(raw.String(), s) {
			t.Errorf("raw output lacks %q:\n%s", s, raw.String())
		}
	}
}

func TestParseMemlock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fdinfo")
	if err := os.WriteFile(p, []byte("pos:\t0\nflags:\t02000002\nmap_type:\t9\nmemlock:\t150994944\nmap_id:\t7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := parseMemlock(f)
	if err != nil || got != 150994944 {
		t.Fatalf("parseMemlock = %d, %v; want 150994944", got, err)
	}
}

func TestUDPFrame(t *testing.T) {
	a := defaultAddrs()
	dst := netip.AddrPortFrom(a.VIP, udpPort)
	f := udpFrame(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}, a.Gen, dst)
	if len(f) != 60 {
		t.Fatalf("frame is %d bytes, want 60", len(f))
	}
	// An IPv4 header with a correct checksum sums to 0xffff.
	var sum uint32
	for i := 14; i < 34; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(f[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{name: "ip checksum", got: sum, want: uint32(0xffff)},
		{name: "dst mac", got: net.HardwareAddr(f[0:6]).String(), want: "02:00:00:00:00:02"},
		{name: "ethertype", got: binary.BigEndian.Uint16(f[12:]), want: uint16(0x0800)},
		{name: "protocol", got: f[23], want: byte(17)},
		{name: "src", got: netip.AddrFrom4([4]byte(f[26:30])), want: a.Gen},
		{name: "dst", got: netip.AddrFrom4([4]byte(f[30:34])), want: a.VIP},
		{name: "dport", got: binary.BigEndian.Uint16(f[36:]), want: uint16(udpPort)},
		{name: "udp length", got: binary.BigEndian.Uint16(f[38:]), want: uint16(26)},
		{name: "no udp checksum", got: binary.BigEndian.Uint16(f[40:]), want: uint16(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %v, want %v", tt.got, tt.want)
			}
		})
	}
}

func TestParseEvents(t *testing.T) {
	in := `# HELP xvs_datapath_events_total Packets and first-packet frames by what happened to them.
# TYPE xvs_datapath_events_total counter
xvs_datapath_events_total{reason="fwd"} 1.5e+06
xvs_datapath_events_total{reason="punt"} 42
node_ipvs_connections_total 7
`
	got := parseEvents(in)
	want := map[string]float64{"fwd": 1.5e6, "punt": 42}
	if len(got) != len(want) || got["fwd"] != want["fwd"] || got["punt"] != want["punt"] {
		t.Fatalf("parseEvents = %v, want %v", got, want)
	}
	d := diffEvents(map[string]float64{"fwd": 1e6, "punt": 42}, got)
	if len(d) != 1 || d["fwd"] != 0.5e6 {
		t.Fatalf("diffEvents = %v, want only fwd 500000", d)
	}
}

func TestParseSchedstat(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1234567890 55 17\n", 1234567890 * time.Nanosecond, true},
		{"0 0 0", 0, true},
		{"12 34", 0, false},
		{"x 1 2", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := parseSchedstat(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSchedstat(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
