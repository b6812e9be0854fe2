package tests

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Parsers for the ipvsadm formats xvsadm prints (reference/ipvs.md §2),
// and the expected orders of the schedulers the cases assert on.

// service is one service of `-L -n`, with its dest rows.
type service struct {
	Proto string // TCP or UDP
	Addr  string // 202.103.106.5:80 or [2001:db8:1::5]:80
	Rest  string // scheduler and flags, e.g. "rr persistent 30"
	Dests []dest
}

type dest struct {
	Addr     string
	Forward  string
	Weight   int
	Active   int
	Inactive int
}

// parseList parses `-L -n` output (the version line and titles are skipped).
func parseList(out string) ([]service, error) {
	var svcs []service
	for i, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0, i == 0, strings.HasPrefix(line, "Prot "), strings.HasPrefix(line, "  -> RemoteAddress"):
		case strings.HasPrefix(line, "  -> "):
			if len(svcs) == 0 || len(f) != 6 {
				return nil, fmt.Errorf("line %d: unexpected dest row %q", i+1, line)
			}
			w, err1 := strconv.Atoi(f[3])
			a, err2 := strconv.Atoi(f[4])
			n, err3 := strconv.Atoi(f[5])
			if err1 != nil || err2 != nil || err3 != nil {
				return nil, fmt.Errorf("line %d: bad numbers in %q", i+1, line)
			}
			s := &svcs[len(svcs)-1]
			s.Dests = append(s.Dests, dest{Addr: f[1], Forward: f[2], Weight: w, Active: a, Inactive: n})
		case f[0] == "TCP" || f[0] == "UDP":
			if len(f) < 3 {
				return nil, fmt.Errorf("line %d: short service row %q", i+1, line)
			}
			svcs = append(svcs, service{Proto: f[0], Addr: f[1], Rest: strings.Join(f[2:], " ")})
		default:
			return nil, fmt.Errorf("line %d: unexpected %q", i+1, line)
		}
	}
	return svcs, nil
}

// find returns the service proto addr, or nil.
func findService(svcs []service, proto, addr string) *service {
	for i := range svcs {
		if svcs[i].Proto == proto && svcs[i].Addr == addr {
			return &svcs[i]
		}
	}
	return nil
}

func (s *service) dest(addr string) *dest {
	for i := range s.Dests {
		if s.Dests[i].Addr == addr {
			return &s.Dests[i]
		}
	}
	return nil
}

// withoutCounters renders `-L -n` with the ActiveConn/InActConn columns
// dropped: the part of a listing that must survive a save and restore under
// live traffic unchanged.
func withoutCounters(svcs []service) string {
	var b strings.Builder
	for _, s := range svcs {
		fmt.Fprintf(&b, "%s %s %s\n", s.Proto, s.Addr, s.Rest)
		for _, d := range s.Dests {
			fmt.Fprintf(&b, "  -> %s %s %d\n", d.Addr, d.Forward, d.Weight)
		}
	}
	return b.String()
}

// statsRow is one line of `-L -n --stats`.
type statsRow struct {
	Name                                     string // "TCP 202.103.106.5:80" or "-> 172.16.0.2:80"
	Conns, InPkts, OutPkts, InBytes, OutByts uint64
}

// parseStats parses `-L -n --stats`; numbers with K/M/G/T suffixes are
// rejected, since the cases compare exact values (they stay below 10^8).
func parseStats(out string) ([]statsRow, error) {
	var rows []statsRow
	for i, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || i == 0 || strings.HasPrefix(line, "Prot ") || strings.TrimSpace(line) == "-> RemoteAddress:Port" {
			continue
		}
		var name string
		var nums []string
		switch {
		case f[0] == "->" && len(f) == 7:
			name, nums = "-> "+f[1], f[2:]
		case (f[0] == "TCP" || f[0] == "UDP") && len(f) == 7:
			name, nums = f[0]+" "+f[1], f[2:]
		default:
			return nil, fmt.Errorf("line %d: unexpected %q", i+1, line)
		}
		var v [5]uint64
		for j, s := range nums {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: field %q: %w", i+1, s, err)
			}
			v[j] = n
		}
		rows = append(rows, statsRow{Name: name, Conns: v[0], InPkts: v[1], OutPkts: v[2], InBytes: v[3], OutByts: v[4]})
	}
	return rows, nil
}

// connRow is one line of `-L -n -c`.
type connRow struct {
	Proto, Expire, State, Source, Virtual, Dest string
}

func parseConns(out string) ([]connRow, error) {
	var rows []connRow
	for i, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(line, "IPVS connection entries") || strings.HasPrefix(line, "pro expire") {
			continue
		}
		if len(f) != 6 {
			return nil, fmt.Errorf("line %d: unexpected %q", i+1, line)
		}
		rows = append(rows, connRow{f[0], f[1], f[2], f[3], f[4], f[5]})
	}
	return rows, nil
}

// wrrOrder replays ip_vs_wrr.c for dests with these weights, listed in
// xvs's order (order of addition), added one by one to a new service: it
// returns the list index of each of the first n picks. The state at each
// add is what ip_vs_wrr_dest_changed computes (reference/ipvs.md §4.2).
func wrrOrder(weights []int, n int) []int {
	cw, mw, di := 0, 0, 1
	for k := 1; k <= len(weights); k++ {
		g, maxw := 0, 0
		for _, w := range weights[:k] {
			if w > 0 {
				g = gcd(w, g)
			}
			maxw = max(maxw, w)
		}
		if g == 0 {
			g = 1
		}
		di, mw = g, maxw-(g-1)
		if cw > mw || cw == 0 {
			cw = mw
		} else if di > 1 {
			cw = (cw/di)*di + 1
		}
	}
	var picks []int
	if mw <= 0 {
		return picks
	}
	cl := -1 // the list head
	for len(picks) < n {
		cl++
		if cl == len(weights) {
			cl = -1
			cw -= di
			if cw <= 0 {
				cw = mw
			}
			continue
		}
		if weights[cl] >= cw {
			picks = append(picks, cl)
		}
	}
	return picks
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// shBucket is ip_vs_sh.c's bucket for an IPv4 client address without
// sh-port: hash_32(ntohl(saddr), 8).
func shBucket(a netip.Addr) int {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return int((v * 0x61C88647) >> 24)
}

func TestWRROrder(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		n       int
		want    []int
	}{
		// reference/ipvs.md §4.2: kernel list C(2), B(3), A(4):
		// "C B A" then cycles "A B A C B A C B A".
		{name: "reference 4 3 2", weights: []int{2, 3, 4}, n: 12, want: []int{0, 1, 2, 2, 1, 2, 0, 1, 2, 0, 1, 2}},
		// List B(2), A(4): "B A" then cycles "A B A".
		{name: "reference 4 2", weights: []int{2, 4}, n: 8, want: []int{0, 1, 1, 0, 1, 1, 0, 1}},
		// Case 2: node1 w3 then node2 w1.
		{name: "case 2", weights: []int{3, 1}, n: 8, want: []int{0, 1, 0, 0, 0, 1, 0, 0}},
		{name: "all zero", weights: []int{0, 0}, n: 3, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wrrOrder(tt.weights, tt.n); !slices.Equal(got, tt.want) {
				t.Errorf("wrrOrder(%v, %d) = %v, want %v", tt.weights, tt.n, got, tt.want)
			}
		})
	}
}

func TestSHBucket(t *testing.T) {
	// reference/ipvs.md §4.10.
	for addr, want := range map[string]int{"10.0.0.2": 137, "10.0.0.3": 235, "192.168.1.100": 89} {
		if got := shBucket(netip.MustParseAddr(addr)); got != want {
			t.Errorf("shBucket(%s) = %d, want %d", addr, got, want)
		}
	}
}

func TestParsers(t *testing.T) {
	list := "XDP Virtual Server version 1.0.0 (size=1048576)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"TCP  202.103.106.5:80 rr persistent 30\n" +
		"  -> 172.16.0.2:80                Masq    1      2          10        \n" +
		"  -> 172.16.0.3:80                Masq    3      0          0         \n" +
		"UDP  [2001:db8:1::5]:53 wlc\n"
	svcs, err := parseList(list)
	if err != nil {
		t.Fatal(err)
	}
	want := "TCP 202.103.106.5:80 rr persistent 30\n  -> 172.16.0.2:80 Masq 1\n  -> 172.16.0.3:80 Masq 3\nUDP [2001:db8:1::5]:53 wlc\n"
	if got := withoutCounters(svcs); got != want {
		t.Errorf("withoutCounters = %q, want %q", got, want)
	}
	if d := findService(svcs, "TCP", "202.103.106.5:80").dest("172.16.0.2:80"); d == nil || d.Active != 2 || d.Inactive != 10 {
		t.Errorf("dest row = %+v", d)
	}

	stats := "XDP Virtual Server version 1.0.0 (size=1048576)\n" +
		"Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n" +
		"  -> RemoteAddress:Port\n" +
		"TCP  202.103.106.5:80                  12      345      300    12345     4567\n" +
		"  -> 172.16.0.2:80                     6      170      150    20000   300000\n"
	rows, err := parseStats(stats)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Name != "TCP 202.103.106.5:80" || rows[0].Conns != 12 || rows[1].Name != "-> 172.16.0.2:80" || rows[1].OutByts != 300000 {
		t.Errorf("parseStats = %+v", rows)
	}
	if _, err := parseStats(strings.Replace(stats, "12345", "123456K", 1)); err == nil {
		t.Error("parseStats accepted a K suffix")
	}

	conns := "IPVS connection entries\n" +
		"pro expire state       source             virtual            destination\n" +
		"TCP 14:59  ESTABLISHED 10.0.0.2:50000     207.175.44.110:8080 172.16.0.2:8080\n"
	crows, err := parseConns(conns)
	if err != nil {
		t.Fatal(err)
	}
	if len(crows) != 1 || crows[0].State != "ESTABLISHED" || crows[0].Dest != "172.16.0.2:8080" {
		t.Errorf("parseConns = %+v", crows)
	}
}
