package ipvsadm

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func tcp(addr string) *Service {
	return &Service{Proto: ProtoTCP, Addr: ap(addr), Netmask: 32}
}

func udp(addr string) *Service {
	return &Service{Proto: ProtoUDP, Addr: ap(addr), Netmask: 32}
}

// with returns a copy of s changed by fn.
func with(s *Service, fn func(*Service)) *Service {
	c := *s
	fn(&c)
	return &c
}

func sched(name string) func(*Service) { return func(s *Service) { s.Scheduler = name } }

func e2(msg string) *Error   { return &Error{Code: 2, Msg: msg} }
func e255(msg string) *Error { return &Error{Code: 255, Msg: msg} }

var try = e255("Try `xvsadm -h' or 'xvsadm --help' for more information.")

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    string // split at blanks
		argv    []string
		want    *Command
		wantErr *Error
	}{
		// Commands and the popt model (1.1).
		{name: "no arguments lists", args: "", want: &Command{Kind: CmdList}},
		{name: "add tcp service", args: "-A -t 207.175.44.110:80 -s rr",
			want: &Command{Kind: CmdAddService, Service: with(tcp("207.175.44.110:80"), sched("rr"))}},
		{name: "default scheduler wlc", args: "-A -t 1.2.3.4:80",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), sched("wlc"))}},
		{name: "long options with =", args: "--add-service --tcp-service=1.2.3.4:80 --scheduler=rr",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), sched("rr"))}},
		{name: "bundled command and service", args: "-At1.2.3.4:80 -srr",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), sched("rr"))}},
		{name: "short option =value", args: "-A -t=1.2.3.4:80",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), sched("wlc"))}},
		{name: "list numeric bundled", args: "-Ln", want: &Command{Kind: CmdList, List: ListOptions{Numeric: true}}},
		{name: "list conns bundled", args: "-Lnc", want: &Command{Kind: CmdList, List: ListOptions{Numeric: true, Conns: true}}},
		{name: "lower-case l", args: "-l -n", want: &Command{Kind: CmdList, List: ListOptions{Numeric: true}}},
		{name: "list stats exact", args: "-L -n --stats --exact -X",
			wantErr: e2("multiple 'exact' options specified")},
		{name: "list stats exact once", args: "-L -n --stats -X",
			want: &Command{Kind: CmdList, List: ListOptions{Numeric: true, Stats: true, Exact: true}}},
		{name: "list one service", args: "-L -n -t 1.2.3.4:80",
			want: &Command{Kind: CmdList, Service: tcp("1.2.3.4:80"), List: ListOptions{Numeric: true, OneService: true}}},
		{name: "list timeout", args: "-L --timeout", want: &Command{Kind: CmdList, List: ListOptions{Timeout: true}}},
		{name: "sort may repeat", args: "-L --sort --sort --nosort", want: &Command{Kind: CmdList, List: ListOptions{NoSort: true}}},
		{name: "list tun-info", args: "-L --tun-info", want: &Command{Kind: CmdList, List: ListOptions{TunInfo: true}}},
		{name: "conns with persistent-conn", args: "-L -c --persistent-conn",
			want: &Command{Kind: CmdList, List: ListOptions{Conns: true, PersistConn: true}}},
		{name: "first option not a command", args: "-n -L", wantErr: try},
		{name: "unknown first option", args: "--foo", wantErr: try},
		{name: "only a word", args: "foo", wantErr: try},
		{name: "comment word", args: "# -A", wantErr: e2("unexpected argument #")},
		{name: "command letter again", args: "-L -L", wantErr: e2("invalid option `-L'")},
		{name: "second command", args: "-A -t 1.2.3.4:80 -a", wantErr: e2("invalid option `-a'")},
		{name: "help later is invalid", args: "-L -h", wantErr: e2("invalid option `-h'")},
		{name: "missing argument", args: "-A -t", wantErr: e255("-t: missing argument")},
		{name: "missing argument long", args: "-A --scheduler", wantErr: e255("--scheduler: missing argument")},
		{name: "unknown option", args: "-A --foo", wantErr: e255("--foo: unknown option")},
		{name: "unknown short option in bundle", args: "-Lq", wantErr: e255("-Lq: unknown option")},
		{name: "unwanted argument", args: "-L --numeric=1", wantErr: e255("--numeric=1: option does not take an argument")},
		{name: "unexpected argument", args: "-A -t 1.2.3.4:80 extra", wantErr: e2("unexpected argument extra")},
		{name: "trailing comment", args: "-A -t 1.2.3.4:80 -s rr # web", wantErr: e2("unexpected argument #")},
		{name: "help", args: "-h --whatever", want: &Command{Kind: CmdHelp}},
		{name: "version", args: "--version", want: &Command{Kind: CmdVersion}},
		{name: "flush", args: "-C", want: &Command{Kind: CmdFlush}},
		{name: "save numeric", args: "-S -n", want: &Command{Kind: CmdSave, List: ListOptions{Numeric: true}}},
		{name: "restore", args: "-R", want: &Command{Kind: CmdRestore}},
		{name: "zero all", args: "-Z", want: &Command{Kind: CmdZero}},
		{name: "zero one", args: "-Z -t 1.2.3.4:80", want: &Command{Kind: CmdZero, Service: tcp("1.2.3.4:80")}},
		{name: "delete service", args: "-D -u 1.2.3.4:53", want: &Command{Kind: CmdDelService, Service: udp("1.2.3.4:53")}},

		// -p (1.1, 1.3).
		{name: "bare -p is 360", args: "-A -u 1.2.3.4:53 -p",
			want: &Command{Kind: CmdAddService, Service: with(udp("1.2.3.4:53"), func(s *Service) { s.Scheduler = "wlc"; s.Persistent = true; s.Timeout = 360 })}},
		{name: "-p value", args: "-A -t 1.2.3.4:80 -p 300",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), func(s *Service) { s.Scheduler = "wlc"; s.Persistent = true; s.Timeout = 300 })}},
		{name: "-p attached", args: "-A -t 1.2.3.4:80 -p300",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), func(s *Service) { s.Scheduler = "wlc"; s.Persistent = true; s.Timeout = 300 })}},
		{name: "--persistent=", args: "-A -t 1.2.3.4:80 --persistent=300",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), func(s *Service) { s.Scheduler = "wlc"; s.Persistent = true; s.Timeout = 300 })}},
		{name: "-p before option", args: "-A -t 1.2.3.4:80 -p -s rr",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), func(s *Service) { s.Scheduler = "rr"; s.Persistent = true; s.Timeout = 360 })}},
		{name: "-p takes next word", args: "-A -t 1.2.3.4:80 -p rr", wantErr: e2("invalid timeout value `rr' specified")},
		{name: "-p zero", args: "-A -t 1.2.3.4:80 -p 0", wantErr: e2("invalid timeout value `0' specified")},
		{name: "-p too long", args: "-A -t 1.2.3.4:80 -p 2678401", wantErr: e2("invalid timeout value `2678401' specified")},
		{name: "-p max", args: "-A -t 1.2.3.4:80 -p 2678400",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), func(s *Service) { s.Scheduler = "wlc"; s.Persistent = true; s.Timeout = 2678400 })}},
		{name: "-p twice", args: "-A -t 1.2.3.4:80 -p -p", wantErr: e2("multiple 'persistent' options specified")},

		// Legality table (1.4).
		{name: "missing service", args: "-A -s rr", wantErr: e2("You need to supply the 'service-address' option for the 'add-service' command")},
		{name: "missing real server", args: "-a -t 1.2.3.4:80 -m", wantErr: e2("You need to supply the 'real-server' option for the 'add-server' command")},
		{name: "illegal method on delete", args: "-d -t 1.2.3.4:80 -r 10.0.0.1 -m", wantErr: e2("Illegal 'forwarding-method' option with the 'delete-server' command")},
		{name: "illegal weight on add-service", args: "-A -t 1.2.3.4:80 -w 3", wantErr: e2("Illegal 'weight' option with the 'add-service' command")},
		{name: "illegal scheduler on delete", args: "-D -t 1.2.3.4:80 -s rr", wantErr: e2("Illegal 'scheduler' option with the 'delete-service' command")},
		{name: "illegal numeric on flush", args: "-C -n", wantErr: e2("Illegal 'numeric' option with the 'flush' command")},
		{name: "illegal nosort on save", args: "-S --nosort", wantErr: e2("Illegal 'nosort' option with the 'save' command")},
		{name: "illegal numeric on restore", args: "-R -n", wantErr: e2("Illegal 'numeric' option with the 'restore' command")},
		{name: "illegal ops on list", args: "-L -o", wantErr: e2("Illegal 'ops' option with the 'list' command")},
		{name: "illegal service on set", args: "--set 1 2 3 -t 1.2.3.4:80", wantErr: e2("Illegal 'service-address' option with the 'set' command")},
		{name: "illegal sched-flags on edit-server", args: "-e -t 1.2.3.4:80 -r 10.0.0.1 -m -b flag-1", wantErr: e2("Illegal 'sched-flags' option with the 'edit-server' command")},
		{name: "conflict service connection", args: "-L -n -c -t 1.2.3.4:80",
			wantErr: e2("The option 'service-address' conflicts with the 'connection' option in the 'list' command")},
		{name: "conflict in column order", args: "-L --timeout -c",
			wantErr: e2("The option 'timeout' conflicts with the 'connection' option in the 'list' command")},
		{name: "conflict timeout daemon", args: "-L --daemon --timeout",
			wantErr: e2("The option 'daemon' conflicts with the 'timeout' option in the 'list' command")},
		{name: "list conflict conns stats", args: "-L -c --stats", wantErr: e2("options conflicts in the list command")},
		{name: "list conflict timeout thresholds", args: "-L --timeout --thresholds", wantErr: e2("options conflicts in the list command")},
		{name: "list conflict timeout persistent-conn", args: "-L --timeout --persistent-conn", wantErr: e2("options conflicts in the list command")},
		{name: "multiple methods", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -m -g", wantErr: e2("multiple 'forwarding-method' options specified")},
		{name: "multiple services", args: "-A -t 1.2.3.4:80 -u 1.2.3.4:80", wantErr: e2("multiple 'service-address' options specified")},
		{name: "multiple schedulers", args: "-A -t 1.2.3.4:80 -s rr -s wrr", wantErr: e2("multiple 'scheduler' options specified")},

		// --set.
		{name: "set", args: "--set 900 120 300", want: &Command{Kind: CmdSet, Timeouts: Timeouts{TCP: 900, TCPFin: 120, UDP: 300}}},
		{name: "set zeros", args: "--set 0 0 0", want: &Command{Kind: CmdSet}},
		{name: "set two values", args: "--set 1 2", wantErr: e2("--set option requires 3 timeout values")},
		{name: "set bad value", args: "--set 1 2 x", wantErr: e2("invalid timeout value `x' specified")},
		{name: "set four values", args: "--set 1 2 3 4", wantErr: e2("unexpected argument 4")},

		// Addresses (1.5).
		{name: "digits only", args: "-A -t 1234", wantErr: e2("illegal virtual server address[:port] specified")},
		{name: "bad port", args: "-A -t 1.2.3.4:65536", wantErr: e2("illegal virtual server address[:port] specified")},
		{name: "empty port", args: "-A -t 1.2.3.4:", wantErr: e2("illegal virtual server address[:port] specified")},
		{name: "unknown port name", args: "-A -t 1.2.3.4:nosuch", wantErr: e2("illegal virtual server address[:port] specified")},
		{name: "unknown host", args: "-A -t nosuch.example.com:80", wantErr: e2("illegal virtual server address[:port] specified")},
		{name: "bad real server", args: "-a -t 1.2.3.4:80 -r 1234 -m", wantErr: e2("illegal real server address[:port] specified")},
		{name: "names", args: "-A -t filesystem.server.com:http -s rr",
			want: &Command{Kind: CmdAddService, Service: with(tcp("202.103.106.5:80"), sched("rr"))}},
		{name: "udp port name", args: "-A -u www.example.com:domain",
			want: &Command{Kind: CmdAddService, Service: with(udp("207.175.44.110:53"), sched("wlc"))}},
		{name: "port name is per protocol", args: "-A -u 1.2.3.4:ssh", wantErr: e2("illegal virtual server address[:port] specified")},
		{name: "inet_aton short form", args: "-A -t 10.1:80",
			want: &Command{Kind: CmdAddService, Service: with(tcp("10.0.0.1:80"), sched("wlc"))}},
		{name: "inet_aton hex", args: "-A -t 0x0a.0.0.010:80",
			want: &Command{Kind: CmdAddService, Service: with(tcp("10.0.0.8:80"), sched("wlc"))}},
		{name: "ipv6 bracketed", args: "-A -t [2001:db8::1]:80 -s rr",
			want: &Command{Kind: CmdAddService, Service: &Service{Proto: ProtoTCP, Addr: ap("[2001:db8::1]:80"), Scheduler: "rr", Netmask: 128}}},
		{name: "ipv6 bare is port 0", args: "-A -t 2001:db8::1 -p",
			want: &Command{Kind: CmdAddService, Service: &Service{Proto: ProtoTCP, Addr: ap("[2001:db8::1]:0"), Scheduler: "wlc", Netmask: 128, Persistent: true, Timeout: 360}}},
		{name: "ipv6 brackets without port", args: "-A -t [2001:db8::1]", wantErr: e2("illegal virtual server address[:port] specified")},
		{name: "bracketed ipv4 loses its port", args: "-A -t [1.2.3.4]:80 -p",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:0"), func(s *Service) { s.Scheduler = "wlc"; s.Persistent = true; s.Timeout = 360 })}},
		{name: "zero port", args: "-A -t 1.2.3.4:0", wantErr: e2("Zero port specified for non-persistent service")},
		{name: "no port", args: "-E -t 1.2.3.4", wantErr: e2("Zero port specified for non-persistent service")},

		// -M.
		{name: "mask", args: "-A -u 1.2.3.4:53 -p -M 255.255.255.0",
			want: &Command{Kind: CmdAddService, Service: with(udp("1.2.3.4:53"), func(s *Service) { s.Scheduler = "wlc"; s.Persistent = true; s.Timeout = 360; s.Netmask = 24 })}},
		{name: "mask by name", args: "-A -u 1.2.3.4:53 -p -M mask.example.com",
			want: &Command{Kind: CmdAddService, Service: with(udp("1.2.3.4:53"), func(s *Service) { s.Scheduler = "wlc"; s.Persistent = true; s.Timeout = 360; s.Netmask = 24 })}},
		{name: "bad mask", args: "-A -t 1.2.3.4:80 -M bogus", wantErr: e2("illegal virtual server persistent mask specified")},
		{name: "ipv6 prefix", args: "-A -t [2001:db8::1]:80 -p -M 64",
			want: &Command{Kind: CmdAddService, Service: &Service{Proto: ProtoTCP, Addr: ap("[2001:db8::1]:80"), Scheduler: "wlc", Netmask: 64, Persistent: true, Timeout: 360}}},
		{name: "ipv6 prefix too long", args: "-A -t [2001:db8::1]:80 -M 129", wantErr: e2("illegal ipv6 netmask specified")},
		{name: "ipv6 service resets earlier mask", args: "-A -M 64 -t [2001:db8::1]:80 -p",
			want: &Command{Kind: CmdAddService, Service: &Service{Proto: ProtoTCP, Addr: ap("[2001:db8::1]:80"), Scheduler: "wlc", Netmask: 128, Persistent: true, Timeout: 360}}},

		// Scheduler and flags (1.6.4).
		{name: "scheduler cut to 15", args: "-A -t 1.2.3.4:80 -s abcdefghijklmnopqrst",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), sched("abcdefghijklmno"))}},
		{name: "sh flags", args: "-A -t 1.2.3.4:80 -b sh-fallback,sh-port -s sh",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), func(s *Service) { s.Scheduler = "sh"; s.Flags = 0x18 })}},
		{name: "flag-3 with any scheduler", args: "-A -t 1.2.3.4:80 -s rr -b flag-3",
			want: &Command{Kind: CmdAddService, Service: with(tcp("1.2.3.4:80"), func(s *Service) { s.Scheduler = "rr"; s.Flags = 0x20 })}},
		{name: "sh flag on default scheduler", args: "-A -t 1.2.3.4:80 -b sh-port", wantErr: e2("incompatible scheduler flag `sh-port'")},
		{name: "mh flag on sh", args: "-A -t 1.2.3.4:80 -s sh -b mh-port", wantErr: e2("incompatible scheduler flag `mh-port'")},
		{name: "unknown flag", args: "-A -t 1.2.3.4:80 -b flag-1,foo", wantErr: e2("invalid scheduler flag `foo'")},

		// Dests.
		{name: "add dest", args: "-a -t 207.175.44.110:80 -r 192.168.10.1:8080 -m -w 3",
			want: &Command{Kind: CmdAddDest, Service: tcp("207.175.44.110:80"), Dest: &Dest{Addr: ap("192.168.10.1:8080"), Method: MethodMasq, Weight: 3}}},
		{name: "dest port from service", args: "-a -t 207.175.44.110:80 -r 192.168.10.1 -m",
			want: &Command{Kind: CmdAddDest, Service: tcp("207.175.44.110:80"), Dest: &Dest{Addr: ap("192.168.10.1:80"), Method: MethodMasq, Weight: 1}}},
		{name: "dest before service gets port 0", args: "-a -r 192.168.10.1 -t 207.175.44.110:80 -m",
			want: &Command{Kind: CmdAddDest, Service: tcp("207.175.44.110:80"), Dest: &Dest{Addr: ap("192.168.10.1:0"), Method: MethodMasq, Weight: 1}}},
		{name: "dest names", args: "-a -t filesystem.server.com:http -r 172.16.0.2:http -m -w 1",
			want: &Command{Kind: CmdAddDest, Service: tcp("202.103.106.5:80"), Dest: &Dest{Addr: ap("172.16.0.2:80"), Method: MethodMasq, Weight: 1}}},
		{name: "thresholds", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -m -x 100 -y 50 -w 0",
			want: &Command{Kind: CmdAddDest, Service: tcp("1.2.3.4:80"), Dest: &Dest{Addr: ap("10.0.0.1:80"), Method: MethodMasq, UThreshold: 100, LThreshold: 50}}},
		{name: "threshold max", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -m -x 2147483647",
			want: &Command{Kind: CmdAddDest, Service: tcp("1.2.3.4:80"), Dest: &Dest{Addr: ap("10.0.0.1:80"), Method: MethodMasq, Weight: 1, UThreshold: 2147483647}}},
		{name: "edit without method keeps it", args: "-e -t 1.2.3.4:80 -r 10.0.0.1:8080 -w 0",
			want: &Command{Kind: CmdEditDest, Service: tcp("1.2.3.4:80"), Dest: &Dest{Addr: ap("10.0.0.1:8080"), Method: MethodUnset}}},
		{name: "delete dest", args: "-d -t 1.2.3.4:80 -r 10.0.0.1:8080",
			want: &Command{Kind: CmdDelDest, Service: tcp("1.2.3.4:80"), Dest: &Dest{Addr: ap("10.0.0.1:8080"), Method: MethodUnset, Weight: 1}}},
		{name: "weight too big", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -m -w 65536", wantErr: e2("illegal weight specified")},
		{name: "weight negative", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -m -w -1", wantErr: e2("illegal weight specified")},
		{name: "u-threshold bad", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -m -x 2147483648", wantErr: e2("illegal u_threshold specified")},
		{name: "l-threshold bad", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -m -y abc", wantErr: e2("illegal l_threshold specified")},
		{name: "different family", args: "-a -t [2001:db8::1]:80 -r 10.0.0.1 -m", wantErr: e2("Different address family is allowed only for tunneling servers")},
		{name: "tunnel option without -i", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -m --tun-type gue", wantErr: e2("Tunnel options conflict with forward method")},
		{name: "gue needs port", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type gue", wantErr: e2("You need to supply the 'tun-port' option for the 'gue' tunnel type")},
		{name: "ipip takes no port", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-port 5", wantErr: e2("Illegal 'tun-port' option with the 'ipip' tunnel type")},
		{name: "gre takes no remcsum", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type gre --tun-remcsum", wantErr: e2("Illegal 'tun-remcsum' option with the 'gre' tunnel type")},
		{name: "csum options conflict", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type gue --tun-port 5 --tun-csum --tun-nocsum",
			wantErr: e2("The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type")},
		{name: "bad tunnel type", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type vxlan", wantErr: e2("illegal tunnel type specified")},
		{name: "bad tunnel port", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type gue --tun-port 0", wantErr: e2("illegal tunnel port specified")},

		// fwmark and -6 (parsed, then refused: see TestParseUnsupported), and the daemon.
		{name: "-6 before -f", args: "-A -6 -f 1", wantErr: e2("-6 used before -f\n")},
		{name: "bad fwmark", args: "-A -f 0", wantErr: e2("invalid fwmark value `0' specified")},
		{name: "fwmark too big", args: "-A -f 4294967296", wantErr: e2("invalid fwmark value `4294967296' specified")},
		{name: "bad daemon state", args: "--start-daemon foo", wantErr: e2("illegal start-daemon parameter specified")},
		{name: "bad stop daemon state", args: "--stop-daemon foo", wantErr: e2("illegal start_daemon specified")},
		{name: "bad syncid", args: "--start-daemon master --syncid 256", wantErr: e2("illegal syncid specified")},
		{name: "bad mcast group v4", args: "--start-daemon master --mcast-group 1.2.3.4", wantErr: e2("invalid IPv4 mcast-group `1.2.3.4'")},
		{name: "bad mcast group v6", args: "--start-daemon master --mcast-group 2001:db8::1", wantErr: e2("invalid IPv6 mcast-group `2001:db8::1'")},
		{name: "bad mcast port", args: "--start-daemon master --mcast-port 0", wantErr: e2("illegal mcast-port specified")},
		{name: "bad mcast ttl", args: "--start-daemon master --mcast-ttl 256", wantErr: e2("illegal mcast-ttl specified")},
		{name: "bad sync maxlen", args: "--start-daemon master --sync-maxlen 65508", wantErr: e2("illegal sync-maxlen specified")},
		{name: "syncid on list", args: "-L --syncid 1", want: &Command{Kind: CmdList}},
		{name: "start daemon defaults", args: "--start-daemon master --syncid 5",
			want: &Command{Kind: CmdStartDaemon, Daemon: &DaemonOptions{State: "master", McastInterface: "eth0", SyncID: 5}}},
		{name: "start daemon all options", args: "--start-daemon backup --mcast-interface sync0 --syncid 9 --sync-maxlen 1400 --mcast-group 239.1.2.3 --mcast-port 8850 --mcast-ttl 2",
			want: &Command{Kind: CmdStartDaemon, Daemon: &DaemonOptions{State: "backup", McastInterface: "sync0", SyncID: 9,
				McastGroup: netip.MustParseAddr("239.1.2.3"), McastPort: 8850, McastTTL: 2, SyncMaxLen: 1400}}},
		{name: "start daemon v6 group", args: "--start-daemon master --mcast-group ff02::81",
			want: &Command{Kind: CmdStartDaemon, Daemon: &DaemonOptions{State: "master", McastInterface: "eth0", McastGroup: netip.MustParseAddr("ff02::81")}}},
		{name: "stop daemon", args: "--stop-daemon backup", want: &Command{Kind: CmdStopDaemon, Daemon: &DaemonOptions{State: "backup"}}},
		{name: "list daemon", args: "-L --daemon", want: &Command{Kind: CmdList, List: ListOptions{Daemon: true}}},
		{name: "ops on tcp", args: "-A -t 1.2.3.4:53 -o", wantErr: e2("One-Packet Scheduling is only for UDP virtual services")},
		{name: "pe illegal with add-server", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -m --pe sip", wantErr: e2("Illegal 'pe' option with the 'add-server' command")},
		{name: "mcast on stop", args: "--stop-daemon master --mcast-interface eth1", wantErr: e2("Illegal 'mcast-interface' option with the 'stop-daemon' command")},
	}
	r := newFakeResolver()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.argv
			if args == nil {
				args = strings.Fields(tt.args)
			}
			got, err := Parse(args, r)
			if tt.wantErr != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("Parse(%q) error = %v, want %#v", args, err, tt.wantErr)
				}
				if *e != *tt.wantErr {
					t.Fatalf("Parse(%q) error = %#v, want %#v", args, *e, *tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%q)\n got %+v %+v %+v\nwant %+v %+v %+v", args, got, got.Service, got.Dest, tt.want, tt.want.Service, tt.want.Dest)
			}
		})
	}
}

// TestParseUnsupported checks that what xvs refuses is parsed first
// (ipvsadm's messages win) and then refused with one line, exit 2, the
// command still telling what was asked.
func TestParseUnsupported(t *testing.T) {
	tests := []struct {
		name    string
		args    string
		feature string
		msg     string
		check   func(t *testing.T, c *Command)
	}{
		{name: "add without method", args: "-a -t 1.2.3.4:80 -r 10.0.0.1", feature: "-g", msg: "use masquerading (-m)",
			check: func(t *testing.T, c *Command) {
				if c.Dest.Method != MethodUnset {
					t.Errorf("method = %v, want unset", c.Dest.Method)
				}
			}},
		{name: "gatewaying forces the port", args: "-a -t 1.2.3.4:80 -r 10.0.0.1:8080 -g", feature: "-g", msg: "gatewaying (-g) is not supported by xvs",
			check: func(t *testing.T, c *Command) {
				if c.Dest.Addr != ap("10.0.0.1:80") || c.Dest.Method != MethodRoute {
					t.Errorf("dest = %+v, want 10.0.0.1:80 Route", c.Dest)
				}
			}},
		{name: "edit with gatewaying", args: "-e -t 1.2.3.4:80 -r 10.0.0.1 -g -w 2", feature: "-g", msg: "gatewaying (-g)"},
		{name: "ipip", args: "-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type gue --tun-port 6080 --tun-csum", feature: "-i", msg: "ipip tunneling (-i)",
			check: func(t *testing.T, c *Command) {
				if c.Tunnel == nil || *c.Tunnel != (Tunnel{Type: "gue", Port: 6080, Csum: "csum"}) {
					t.Errorf("tunnel = %+v", c.Tunnel)
				}
			}},
		{name: "fwmark", args: "-A -f 1 -s rr", feature: "-f", msg: "firewall-mark services (-f)",
			check: func(t *testing.T, c *Command) {
				want := &Service{Proto: ProtoTCP, Addr: ap("0.0.0.0:0"), Scheduler: "rr", Netmask: 32, FwMark: 1}
				if !reflect.DeepEqual(c.Service, want) {
					t.Errorf("service = %+v, want %+v", c.Service, want)
				}
			}},
		{name: "fwmark ipv6", args: "-A -f 2 -6 -s rr", feature: "-f", msg: "firewall-mark",
			check: func(t *testing.T, c *Command) {
				if c.Service.Addr != ap("[::]:0") || c.Service.Netmask != 128 || c.Service.FwMark != 2 {
					t.Errorf("service = %+v", c.Service)
				}
			}},
		{name: "sctp", args: "-A --sctp-service 1.2.3.4:80", feature: "--sctp-service", msg: "SCTP services",
			check: func(t *testing.T, c *Command) {
				if c.Service.Proto != ProtoSCTP {
					t.Errorf("proto = %d", c.Service.Proto)
				}
			}},
		{name: "pe", args: "-A -t 1.2.3.4:80 -p --pe sip", feature: "--pe", msg: "persistence engines (--pe)",
			check: func(t *testing.T, c *Command) {
				if c.PE != "sip" {
					t.Errorf("pe = %q", c.PE)
				}
			}},
		{name: "ops", args: "-A -u 1.2.3.4:53 -o", feature: "-o", msg: "one-packet scheduling (-o)",
			check: func(t *testing.T, c *Command) {
				if !c.Service.OnePacket {
					t.Error("OnePacket not set")
				}
			}},
		{name: "list fwmark service", args: "-L -f 1", feature: "-f", msg: "firewall-mark"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.Fields(tt.args), newFakeResolver())
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error = %v, want *Error", err)
			}
			if e.Code != 2 || !strings.HasPrefix(e.Msg, "xvsadm: ") || !strings.Contains(e.Msg, tt.msg) ||
				!strings.Contains(e.Msg, "xvs") || strings.Contains(e.Msg, "\n") {
				t.Errorf("error = %#v, want code 2, one line naming %q", *e, tt.msg)
			}
			if c == nil {
				t.Fatal("command is nil, want what was asked")
			}
			if c.Unsupported != tt.feature {
				t.Errorf("Unsupported = %q, want %q", c.Unsupported, tt.feature)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestParseHelpers(t *testing.T) {
	atonTests := []struct {
		in   string
		want string // "" = invalid
	}{
		{"1.2.3.4", "1.2.3.4"}, {"10.1", "10.0.0.1"}, {"10", "0.0.0.10"}, {"1.2.3", "1.2.0.3"},
		{"0x7f.1", "127.0.0.1"}, {"010.0.0.1", "8.0.0.1"}, {"1.2.3.4 junk", "1.2.3.4"},
		{"1.2.3.256", ""}, {"256.1.1.1", ""}, {"1..2", ""}, {"1.2.3.", ""}, {"", ""}, {"0x", ""},
		{"09.1.1.1", ""}, {"1.2.3.4.5", ""}, {"a.b.c.d", ""}, {"1.16777216", ""}, {"1.65536", "1.1.0.0"}, {"1.65535", "1.0.255.255"},
	}
	for _, tt := range atonTests {
		got, ok := inetAton(tt.in)
		if tt.want == "" {
			if ok {
				t.Errorf("inetAton(%q) = %v, want invalid", tt.in, got)
			}
			continue
		}
		if !ok || got.String() != tt.want {
			t.Errorf("inetAton(%q) = %v %v, want %s", tt.in, got, ok, tt.want)
		}
	}
	numTests := []struct {
		in   string
		want int64
	}{
		{"5", 5}, {" 5", 5}, {"+5", 5}, {"-0", 0}, {"5 ", -1}, {"", -1}, {"0x10", -1}, {"65536", -1},
		{"99999999999999999999999", -1},
	}
	for _, tt := range numTests {
		if got := stringToNumber(tt.in, 0, 65535); got != tt.want {
			t.Errorf("stringToNumber(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
