package ipvsadm

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// buildTable applies restored commands to an empty table the way the
// daemon would (-E/-e replace, -e without a method keeps it); ok is false
// for commands that cannot be applied or are not table changes.
func buildTable(cmds []Command) ([]ServiceEntry, bool) {
	var t []ServiceEntry
	find := func(s *Service) int {
		for i := range t {
			if t[i].Proto == s.Proto && t[i].Addr == s.Addr && t[i].FwMark == s.FwMark {
				return i
			}
		}
		return -1
	}
	findDest := func(se *ServiceEntry, d *Dest) int {
		for i := range se.Dests {
			if se.Dests[i].Addr == d.Addr {
				return i
			}
		}
		return -1
	}
	for _, c := range cmds {
		switch c.Kind {
		case CmdFlush:
			t = nil
		case CmdAddService, CmdEditService:
			i := find(c.Service)
			if (i >= 0) == (c.Kind == CmdAddService) {
				return nil, false
			}
			if i < 0 {
				t = append(t, ServiceEntry{Service: *c.Service})
			} else {
				t[i].Service = *c.Service
			}
		case CmdDelService:
			i := find(c.Service)
			if i < 0 {
				return nil, false
			}
			t = append(t[:i], t[i+1:]...)
		case CmdAddDest, CmdEditDest, CmdDelDest:
			i := find(c.Service)
			if i < 0 {
				return nil, false
			}
			se := &t[i]
			j := findDest(se, c.Dest)
			if (j >= 0) == (c.Kind == CmdAddDest) {
				return nil, false
			}
			switch c.Kind {
			case CmdAddDest:
				se.Dests = append(se.Dests, DestEntry{Dest: *c.Dest})
			case CmdEditDest:
				d := *c.Dest
				if d.Method == MethodUnset {
					d.Method = se.Dests[j].Method
				}
				se.Dests[j].Dest = d
			default:
				se.Dests = append(se.Dests[:j], se.Dests[j+1:]...)
			}
		default:
			return nil, false
		}
	}
	return t, true
}

// normalize drops what the save format does not carry (thresholds, a
// mask without persistence) and orders everything totally, so that two
// tables can be compared as sets.
func normalize(t []ServiceEntry) []string {
	var out []string
	for _, se := range t {
		s := se.Service
		if !s.Persistent {
			s.Netmask = 32
			if isV6(s.Addr.Addr()) {
				s.Netmask = 128
			}
		}
		line := fmt.Sprintf("%+v", s)
		var ds []string
		for _, d := range se.Dests {
			d.UThreshold, d.LThreshold = 0, 0
			ds = append(ds, fmt.Sprintf("%+v", d.Dest))
		}
		sort.Strings(ds)
		out = append(out, line+" "+strings.Join(ds, " "))
	}
	sort.Strings(out)
	return out
}

func restore(t *testing.T, in string, r Resolver) []Command {
	t.Helper()
	cmds, err := ParseRestore(strings.NewReader(in), r)
	if err != nil {
		t.Fatalf("ParseRestore: %v\ninput:\n%s", err, in)
	}
	return cmds
}

func save(t *testing.T, svcs []ServiceEntry, numeric bool, r Resolver) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteSave(&b, svcs, numeric, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestWriteSaveReference checks the reference's example (3.1). The order
// follows the stated sort (fwmark services after all others), so the IPv6
// service comes before "-f 1" here, unlike the reference's illustration.
func TestWriteSaveReference(t *testing.T) {
	got := save(t, referenceServices(), true, newFakeResolver())
	want := `-A -t 207.175.44.110:80 -s rr
-a -t 207.175.44.110:80 -r 192.168.10.1:80 -m -w 1
-a -t 207.175.44.110:80 -r 192.168.10.2:80 -m -w 3
-A -u 207.175.44.110:53 -s wlc -p 360 -M 255.255.255.0 -o
-A -t [2001:db8::80]:80 -s rr
-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m -w 1
-A -f 1 -s sh -b sh-fallback,sh-port
-a -f 1 -r 192.168.10.1:0 -m -w 1
-A -f 2 -6 -s rr
`
	if got != want {
		t.Errorf("save:\n%s\nwant\n%s", got, want)
	}

	// Methods, flags and masks.
	svcs := quirkServices()
	svcs[0].Dests[1].Method = MethodLocal
	svcs[0].Dests[2].Method = MethodRoute
	svcs[0].Dests[2].UThreshold = 5 // not saved
	got = save(t, svcs, true, nil)
	want = `-A -t 172.16.0.1:443 -s mh -b mh-fallback,mh-port
-A -t 192.168.1.1:80 -s sh -b flag-3
-A -t 10.0.0.1:80 -s wrr
-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 1
-a -t 10.0.0.1:80 -r 10.0.0.9:79 -g -w 2
-a -t 10.0.0.1:80 -r 10.0.0.9:80 -g -w 1
-A -u 172.16.0.1:53 -s lc -b flag-1,flag-3
-A -u [2001:db8::1]:53 -s wlc -p 600 -M 64
`
	if got != want {
		t.Errorf("save:\n%s\nwant\n%s", got, want)
	}
}

// The seed's ipvsadm-save output, in name form.
const seedSave = `-A -t filesystem.server.com:http -s rr
-a -t filesystem.server.com:http -r 172.16.0.2:http -m -w 1
-a -t filesystem.server.com:http -r 172.16.0.3:http -m -w 1
`

func TestRestoreSeedSaveFile(t *testing.T) {
	r := newFakeResolver()
	cmds := restore(t, seedSave, r)
	svc := with(tcp("202.103.106.5:80"), sched("rr"))
	key := tcp("202.103.106.5:80")
	want := []Command{
		{Kind: CmdAddService, Service: svc, Line: 1},
		{Kind: CmdAddDest, Service: key, Dest: &Dest{Addr: ap("172.16.0.2:80"), Method: MethodMasq, Weight: 1}, Line: 2},
		{Kind: CmdAddDest, Service: key, Dest: &Dest{Addr: ap("172.16.0.3:80"), Method: MethodMasq, Weight: 1}, Line: 3},
	}
	if !reflect.DeepEqual(cmds, want) {
		t.Fatalf("restored %+v\nwant %+v", cmds, want)
	}
	table, ok := buildTable(cmds)
	if !ok {
		t.Fatal("commands do not apply")
	}
	// Saving in name form gives the seed's file back, numeric form the numbers.
	if got := save(t, table, false, r); got != seedSave {
		t.Errorf("named save:\n%s\nwant\n%s", got, seedSave)
	}
	wantNum := `-A -t 202.103.106.5:80 -s rr
-a -t 202.103.106.5:80 -r 172.16.0.2:80 -m -w 1
-a -t 202.103.106.5:80 -r 172.16.0.3:80 -m -w 1
`
	if got := save(t, table, true, r); got != wantNum {
		t.Errorf("numeric save:\n%s\nwant\n%s", got, wantNum)
	}
	// And the listing the seed shows after the restore (numeric).
	var b bytes.Buffer
	if err := WriteList(&b, testInfo, table, ListOptions{Numeric: true}, r); err != nil {
		t.Fatal(err)
	}
	wantList := "XDP Virtual Server version 1.0.0 (size=4096)\n" +
		"Prot LocalAddress:Port Scheduler Flags\n" +
		"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
		"TCP  202.103.106.5:80 rr\n" +
		"  -> 172.16.0.2:80                Masq    1      0          0         \n" +
		"  -> 172.16.0.3:80                Masq    1      0          0         \n"
	if b.String() != wantList {
		t.Errorf("listing:\n%s\nwant\n%s", mark(b.String()), mark(wantList))
	}
}

func TestRestoreSaveRoundTrip(t *testing.T) {
	r := newFakeResolver()
	in := `# written by hand
-A -t 207.175.44.110:80 -s rr
-a -t 207.175.44.110:80 -r 192.168.10.2:80 -m -w 3
-a -t 207.175.44.110:80 -r 192.168.10.1 -m
-A -u 207.175.44.110:53 -s wlc -p -M 255.255.255.0
-a -u 207.175.44.110:53 -r 192.168.10.1:5353 -m -w 0 -x 10 -y 5
-A -t [2001:db8::80]:443 -s sh -b sh-port -p 60 -M 64
-a -t [2001:db8::80]:443 -r [2001:db8::a0a0]:8443 -m
-A -t 10.0.0.1:80 -s wrr -b flag-2
-a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 2
-a -t 10.0.0.1:80 -r 10.0.1.0:80 -m -w 2
-A -t 10.0.0.1:81 -s lc
-e -t 10.0.0.1:80 -r 10.0.1.0:80 -w 7
-D -t 10.0.0.1:81
`
	cmds := restore(t, in, r)
	table, ok := buildTable(cmds)
	if !ok {
		t.Fatal("commands do not apply")
	}
	for _, numeric := range []bool{true, false} {
		t.Run(fmt.Sprintf("numeric=%v", numeric), func(t *testing.T) {
			s1 := save(t, table, numeric, r)
			// Each saved line through Parse reproduces the entries.
			var one []Command
			for _, line := range strings.Split(strings.TrimSuffix(s1, "\n"), "\n") {
				c, err := Parse(strings.Fields(line), r)
				if err != nil {
					t.Fatalf("Parse(%q): %v", line, err)
				}
				one = append(one, *c)
			}
			t1, ok := buildTable(one)
			if !ok {
				t.Fatal("saved lines do not apply")
			}
			if got, want := normalize(t1), normalize(table); !reflect.DeepEqual(got, want) {
				t.Errorf("entries after save and parse:\n%v\nwant\n%v", got, want)
			}
			// restore -> save -> restore -> save is a fixed point.
			t2, ok := buildTable(restore(t, s1, r))
			if !ok {
				t.Fatal("saved file does not apply")
			}
			s2 := save(t, t2, numeric, r)
			if s2 != s1 {
				t.Errorf("second save differs:\n%s\nfirst\n%s", s2, s1)
			}
		})
	}
	// -e without a method kept -m; thresholds were dropped by save only.
	if got := table[3].Dests[1]; got.Method != MethodMasq || got.Weight != 7 {
		t.Errorf("edited dest = %+v", got)
	}
}

func TestParseRestoreErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *Error
	}{
		{name: "bad line 3 of 5", in: "-A -t 1.2.3.4:80 -s rr\n-a -t 1.2.3.4:80 -r 10.0.0.1 -m\n-a -t 1.2.3.4:80 -r 10.0.0.2 -m -w 70000\n-a -t 1.2.3.4:80 -r 10.0.0.3 -m\n-C\n",
			want: e2("line 3: illegal weight specified")},
		{name: "trailing comment", in: "\n-A -t 1.2.3.4:80 -s rr # web\n", want: e2("line 2: unexpected argument #")},
		{name: "restore inside restore", in: "-C\n-R\n", want: e255("line 2: Try `xvsadm -h' or 'xvsadm --help' for more information.")},
		{name: "not a command", in: "-n -L", want: e255("line 1: Try `xvsadm -h' or 'xvsadm --help' for more information.")},
		{name: "popt error", in: "-A -t", want: e255("line 1: -t: missing argument")},
		{name: "legality", in: "-A -s rr", want: e2("line 1: You need to supply the 'service-address' option for the 'add-service' command")},
		{name: "gatewaying refused", in: "-A -t 1.2.3.4:80\n-a -t 1.2.3.4:80 -r 10.0.0.1",
			want: e2("line 2: xvsadm: no forwarding method given and ipvsadm's default, gatewaying (-g), is not supported by xvs: use masquerading (-m)")},
		{name: "fwmark refused", in: "-A -f 1 -s rr", want: e2("line 1: xvsadm: firewall-mark services (-f) are not supported by xvs")},
		{name: "unresolvable name", in: "-A -t nosuch.example.com:http -s rr", want: e2("line 1: illegal virtual server address[:port] specified")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmds, err := ParseRestore(strings.NewReader(tt.in), newFakeResolver())
			if cmds != nil {
				t.Errorf("commands = %+v, want none", cmds)
			}
			var e *Error
			if !errors.As(err, &e) || *e != *tt.want {
				t.Fatalf("error = %#v, want %#v", err, tt.want)
			}
		})
	}
}

func TestParseRestoreAccepts(t *testing.T) {
	// The man page's example, the wrapper's comments, words "ipvsadm"
	// anywhere, CRs, tabs, and a last line without newline.
	in := "  # comment after blanks\n" +
		"#\n" +
		"\n" +
		" \t \r\n" +
		"ipvsadm -A -t 207.175.44.110:80 -s rr\r\n" +
		"-a\t-t 207.175.44.110:80 ipvsadm -r 192.168.10.1:80 -m\n" +
		"xvsadm\n" +
		"xvsadm --set 900 120 300\n" +
		"-L -n"
	cmds := restore(t, in, newFakeResolver())
	want := []Command{
		{Kind: CmdAddService, Service: with(tcp("207.175.44.110:80"), sched("rr")), Line: 5},
		{Kind: CmdAddDest, Service: tcp("207.175.44.110:80"), Dest: &Dest{Addr: ap("192.168.10.1:80"), Method: MethodMasq, Weight: 1}, Line: 6},
		{Kind: CmdSet, Timeouts: Timeouts{TCP: 900, TCPFin: 120, UDP: 300}, Line: 8},
		{Kind: CmdList, List: ListOptions{Numeric: true}, Line: 9},
	}
	if !reflect.DeepEqual(cmds, want) {
		t.Fatalf("got %+v\nwant %+v", cmds, want)
	}
	if cmds, err := ParseRestore(strings.NewReader(""), nil); err != nil || len(cmds) != 0 {
		t.Errorf("empty input: %v %v", cmds, err)
	}
}
