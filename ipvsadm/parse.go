package ipvsadm

import (
	"fmt"
	"net/netip"
	"strings"
)

// Option slots, in ipvsadm 1.31's order (the order matters: it decides
// which option a "conflicts with" message names first).
const (
	optNumeric = iota
	optConnection
	optService
	optScheduler
	optPersistent
	optNetmask
	optServer
	optForward
	optWeight
	optUThreshold
	optLThreshold
	optMcast
	optTimeout
	optDaemon
	optStats
	optRate
	optThresholds
	optPersistentConn
	optNoSort
	optSyncID
	optExact
	optOnePacket
	optPE
	optSchedFlags
	optMcastGroup
	optMcastPort
	optMcastTTL
	optSyncMaxLen
	optTunInfo
	optTunType
	optTunPort
	optTunNoCsum
	optTunCsum
	optTunRemCsum
	numOpts
)

var optNames = [numOpts]string{
	"numeric", "connection", "service-address", "scheduler", "persistent",
	"netmask", "real-server", "forwarding-method", "weight", "u-threshold",
	"l-threshold", "mcast-interface", "timeout", "daemon", "stats", "rate",
	"thresholds", "persistent-conn", "nosort", "syncid", "exact", "ops", "pe",
	"sched-flags", "mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen",
	"tun-info", "tun-type", "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum",
}

// legality is ipvsadm's commands_v_options: '+' required, 'x' illegal,
// '1' at most one of the '1' options, ' ' optional; one column per slot.
var legality = map[Kind]string{
	CmdAddService:  "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
	CmdEditService: "xx+   xxxxxxxxxxxxxxx   xxxxxxxxxx",
	CmdDelService:  "xx+xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdFlush:       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdList:        " 11xxxxxxxxx11       xxxxxxx xxxxx",
	CmdAddDest:     "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
	CmdDelDest:     "xx+xxx+xxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdEditDest:    "xx+xxx+    xxxxxxxxxxxxxxxxxx     ",
	CmdSet:         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdStartDaemon: "xxxxxxxxxxx xxxxxxx xxxx    xxxxxx",
	CmdStopDaemon:  "xxxxxxxxxxxxxxxxxxx xxxxxxxxxxxxxx",
	CmdRestore:     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdSave:        " xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	CmdZero:        "xx xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
}

// tunLegality is ipvsadm's tunnel_types_v_options over
// tun-port, tun-nocsum, tun-csum, tun-remcsum.
var tunLegality = map[string]string{
	"ipip": "xxxx",
	"gue":  "+111",
	"gre":  "x11x",
}

const maxTimeout = 86400 * 31

// netmaskV4 in parser.netmask means "the dotted mask in parser.mask4".
const netmaskV4 = -2

func fail(format string, a ...any) *Error {
	return &Error{Code: 2, Msg: fmt.Sprintf(format, a...)}
}

func tryHelp() *Error {
	return &Error{Code: 255, Msg: fmt.Sprintf("Try `%s -h' or '%s --help' for more information.", ProgName, ProgName)}
}

// parser holds what ipvsadm keeps in its ipvs_command_entry while parsing.
type parser struct {
	r    Resolver
	kind Kind
	opts uint64

	proto     uint8
	svcAddr   netip.Addr
	svcPort   uint16
	svc6      bool
	fwmark    uint32
	netmask   int // -1 = default (32 or 128), netmaskV4 = mask4
	mask4     netip.Addr
	sched     string
	persist   bool
	timeout   uint32
	onePacket bool
	flagsArg  string
	flagsBits uint32
	pe        string

	destAddr netip.Addr
	destPort uint16
	method   Method
	weight   int32
	uthresh  uint32
	lthresh  uint32
	tun      Tunnel

	daemon DaemonOptions
	list   ListOptions
	times  Timeouts
}

func (p *parser) setOption(o int) *Error {
	if p.opts&(1<<o) != 0 {
		return fail("multiple '%s' options specified", optNames[o])
	}
	p.opts |= 1 << o
	return nil
}

func (p *parser) has(o int) bool { return p.opts&(1<<o) != 0 }

// Parse parses one ipvsadm command line (args without the program name).
// No arguments means -L. Errors are *Error with ipvsadm's message and
// exit code. A command that is valid ipvsadm but asks for something xvs
// does not support is returned together with an *Error of code 2; its
// Unsupported field names the feature.
func Parse(args []string, r Resolver) (*Command, error) {
	if len(args) == 0 {
		return &Command{Kind: CmdList}, nil
	}
	cmd, err := parse(args, r)
	if err != nil {
		// cmd is non-nil only for a valid command xvs refuses.
		return cmd, err
	}
	return cmd, nil
}

func parse(args []string, r Resolver) (*Command, *Error) {
	pp := &popt{args: args}
	p := &parser{r: r, netmask: -1, weight: 1, method: MethodUnset}

	ev, perr := pp.nextOpt()
	if perr != nil || ev == nil {
		return nil, tryHelp()
	}
	switch ev.spec.long {
	case "add-service":
		p.kind = CmdAddService
	case "edit-service":
		p.kind = CmdEditService
	case "delete-service":
		p.kind = CmdDelService
	case "clear":
		p.kind = CmdFlush
	case "list":
		p.kind = CmdList
	case "zero":
		p.kind = CmdZero
	case "add-server":
		p.kind = CmdAddDest
	case "edit-server":
		p.kind = CmdEditDest
	case "delete-server":
		p.kind = CmdDelDest
	case "set":
		p.kind = CmdSet
	case "restore":
		p.kind = CmdRestore
	case "save":
		p.kind = CmdSave
	case "start-daemon", "stop-daemon":
		p.kind = CmdStartDaemon
		msg := "illegal start-daemon parameter specified"
		if ev.spec.long == "stop-daemon" {
			p.kind = CmdStopDaemon
			msg = "illegal start_daemon specified" // sic
		}
		if ev.arg != "master" && ev.arg != "backup" {
			return nil, fail("%s", msg)
		}
		p.daemon.State = ev.arg
	case "help":
		// ipvsadm prints the usage at once, whatever follows.
		return &Command{Kind: CmdHelp}, nil
	case "version":
		return &Command{Kind: CmdVersion}, nil
	default:
		return nil, tryHelp()
	}

	for {
		ev, perr := pp.nextOpt()
		if perr != nil {
			return nil, perr
		}
		if ev == nil {
			break
		}
		if err := p.option(ev); err != nil {
			return nil, err
		}
	}

	if p.kind == CmdSet {
		if len(pp.leftovers) < 3 {
			return nil, fail("--set option requires 3 timeout values")
		}
		var t [3]uint32
		for i := range t {
			v, err := parseTimeout(pp.leftovers[i], 0)
			if err != nil {
				return nil, err
			}
			t[i] = v
		}
		p.times = Timeouts{TCP: t[0], TCPFin: t[1], UDP: t[2]}
		pp.leftovers = pp.leftovers[3:]
	}
	if len(pp.leftovers) > 0 {
		return nil, fail("unexpected argument %s", pp.leftovers[0])
	}
	if p.has(optSchedFlags) {
		f, err := parseSchedFlags(p.sched, p.flagsArg)
		if err != nil {
			return nil, err
		}
		p.flagsBits = f
	}
	if err := p.genericOptCheck(); err != nil {
		return nil, err
	}
	if err := p.semanticChecks(); err != nil {
		return nil, err
	}
	cmd := p.command()
	if feat, msg := p.unsupported(); feat != "" {
		cmd.Unsupported = feat
		return cmd, &Error{Code: 2, Msg: ProgName + ": " + msg}
	}
	return cmd, nil
}

func parseTimeout(s string, min int64) (uint32, *Error) {
	n := stringToNumber(s, min, maxTimeout)
	if n == -1 {
		return 0, fail("invalid timeout value `%s' specified", s)
	}
	return uint32(n), nil
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// option handles one option after the command, as ipvsadm's option loop.
func (p *parser) option(ev *poptEvent) *Error {
	arg := ev.arg
	switch ev.spec.long {
	case "tcp-service", "udp-service", "sctp-service":
		if err := p.setOption(optService); err != nil {
			return err
		}
		p.proto = map[string]uint8{"tcp-service": ProtoTCP, "udp-service": ProtoUDP, "sctp-service": ProtoSCTP}[ev.spec.long]
		a, port, hasPort, ok := parseService(arg, p.proto, p.r)
		if !ok {
			return fail("illegal virtual server address[:port] specified")
		}
		p.svcAddr = a
		p.svc6 = a.Is6()
		if p.svc6 {
			p.netmask = 128
		}
		if hasPort {
			p.svcPort = port
		}
	case "fwmark-service":
		if err := p.setOption(optService); err != nil {
			return err
		}
		p.svc6 = false
		p.proto = ProtoTCP
		n, ok := strtol10(arg)
		if !ok || n <= 0 || n > 0xffffffff {
			return fail("invalid fwmark value `%s' specified", arg)
		}
		p.fwmark = uint32(n)
	case "scheduler":
		if err := p.setOption(optScheduler); err != nil {
			return err
		}
		p.sched = cut(arg, 15)
	case "persistent":
		if err := p.setOption(optPersistent); err != nil {
			return err
		}
		p.persist = true
		p.timeout = DefaultPersistTimeout
		if ev.hasArg {
			t, err := parseTimeout(arg, 1)
			if err != nil {
				return err
			}
			p.timeout = t
		}
	case "netmask":
		if err := p.setOption(optNetmask); err != nil {
			return err
		}
		if !p.svc6 {
			m, ok := inetAton(arg)
			if !ok {
				m, ok = hostToAddr(arg, p.r)
			}
			if !ok {
				return fail("illegal virtual server persistent mask specified")
			}
			// Converted to a prefix at the end: a later -t [v6] drops it.
			p.mask4 = m
			p.netmask = netmaskV4
		} else {
			n := atoi(arg)
			if n < 1 || n > 128 {
				return fail("illegal ipv6 netmask specified")
			}
			p.netmask = int(n)
		}
	case "real-server":
		if err := p.setOption(optServer); err != nil {
			return err
		}
		a, port, hasPort, ok := parseService(arg, p.proto, p.r)
		if !ok {
			return fail("illegal real server address[:port] specified")
		}
		p.destAddr = a
		p.destPort = p.svcPort
		if hasPort {
			p.destPort = port
		}
	case "masquerading", "ipip", "gatewaying":
		if err := p.setOption(optForward); err != nil {
			return err
		}
		p.method = map[string]Method{"masquerading": MethodMasq, "ipip": MethodTunnel, "gatewaying": MethodRoute}[ev.spec.long]
	case "weight":
		if err := p.setOption(optWeight); err != nil {
			return err
		}
		n := stringToNumber(arg, 0, 65535)
		if n == -1 {
			return fail("illegal weight specified")
		}
		p.weight = int32(n)
	case "u-threshold":
		if err := p.setOption(optUThreshold); err != nil {
			return err
		}
		n := stringToNumber(arg, 0, 2147483647)
		if n == -1 {
			return fail("illegal u_threshold specified")
		}
		p.uthresh = uint32(n)
	case "l-threshold":
		if err := p.setOption(optLThreshold); err != nil {
			return err
		}
		n := stringToNumber(arg, 0, 2147483647)
		if n == -1 {
			return fail("illegal l_threshold specified")
		}
		p.lthresh = uint32(n)
	case "connection":
		p.list.Conns = true
		return p.setOption(optConnection)
	case "numeric":
		p.list.Numeric = true
		return p.setOption(optNumeric)
	case "mcast-interface":
		if err := p.setOption(optMcast); err != nil {
			return err
		}
		p.daemon.McastInterface = cut(arg, 15)
	case "syncid":
		if err := p.setOption(optSyncID); err != nil {
			return err
		}
		n := stringToNumber(arg, 0, 255)
		if n == -1 {
			return fail("illegal syncid specified")
		}
		p.daemon.SyncID = int(n)
	case "timeout":
		p.list.Timeout = true
		return p.setOption(optTimeout)
	case "daemon":
		p.list.Daemon = true
		return p.setOption(optDaemon)
	case "stats":
		p.list.Stats = true
		return p.setOption(optStats)
	case "rate":
		p.list.Rate = true
		return p.setOption(optRate)
	case "thresholds":
		p.list.Thresholds = true
		return p.setOption(optThresholds)
	case "persistent-conn":
		p.list.PersistConn = true
		return p.setOption(optPersistentConn)
	case "nosort":
		p.list.NoSort = true
		return p.setOption(optNoSort)
	case "sort":
		// Sorting is the default; a no-op kept for compatibility.
	case "exact":
		p.list.Exact = true
		return p.setOption(optExact)
	case "tun-info":
		p.list.TunInfo = true
		return p.setOption(optTunInfo)
	case "ipv6":
		if p.fwmark == 0 {
			return fail("-6 used before -f\n")
		}
		p.svc6 = true
		p.netmask = 128
	case "ops":
		p.onePacket = true
		return p.setOption(optOnePacket)
	case "pe":
		if err := p.setOption(optPE); err != nil {
			return err
		}
		p.pe = cut(arg, 15)
	case "sched-flags":
		if err := p.setOption(optSchedFlags); err != nil {
			return err
		}
		p.flagsArg = cut(arg, 127)
	case "mcast-group":
		if err := p.setOption(optMcastGroup); err != nil {
			return err
		}
		if strings.Contains(arg, ":") {
			a, ok := inetPton6(arg)
			if !ok || !a.IsMulticast() {
				return fail("invalid IPv6 mcast-group `%s'", arg)
			}
			p.daemon.McastGroup = a
		} else {
			a, err := netip.ParseAddr(arg)
			if err != nil || !a.Is4() || !a.IsMulticast() {
				return fail("invalid IPv4 mcast-group `%s'", arg)
			}
			p.daemon.McastGroup = a
		}
	case "mcast-port":
		if err := p.setOption(optMcastPort); err != nil {
			return err
		}
		n := stringToNumber(arg, 1, 65535)
		if n == -1 {
			return fail("illegal mcast-port specified")
		}
		p.daemon.McastPort = uint16(n)
	case "mcast-ttl":
		if err := p.setOption(optMcastTTL); err != nil {
			return err
		}
		n := stringToNumber(arg, 1, 255)
		if n == -1 {
			return fail("illegal mcast-ttl specified")
		}
		p.daemon.McastTTL = uint8(n)
	case "sync-maxlen":
		if err := p.setOption(optSyncMaxLen); err != nil {
			return err
		}
		n := stringToNumber(arg, 1, 65535-20-8)
		if n == -1 {
			return fail("illegal sync-maxlen specified")
		}
		p.daemon.SyncMaxLen = uint16(n)
	case "tun-type":
		if err := p.setOption(optTunType); err != nil {
			return err
		}
		if _, ok := tunLegality[arg]; !ok {
			return fail("illegal tunnel type specified")
		}
		p.tun.Type = arg
	case "tun-port":
		if err := p.setOption(optTunPort); err != nil {
			return err
		}
		n := stringToNumber(arg, 1, 65535)
		if n == -1 {
			return fail("illegal tunnel port specified")
		}
		p.tun.Port = uint16(n)
	case "tun-nocsum":
		p.tun.Csum = "nocsum"
		return p.setOption(optTunNoCsum)
	case "tun-csum":
		p.tun.Csum = "csum"
		return p.setOption(optTunCsum)
	case "tun-remcsum":
		p.tun.Csum = "remcsum"
		return p.setOption(optTunRemCsum)
	default:
		// A command letter after the command.
		return fail("invalid option `%s'", ev.word)
	}
	return nil
}

// parseSchedFlags is ipvsadm's parse_sched_flags, checked against the
// scheduler given with -s (or the default).
func parseSchedFlags(sched, arg string) (uint32, *Error) {
	if sched == "" {
		sched = DefaultScheduler
	}
	var flags uint32
	words := strings.FieldsFunc(arg, func(r rune) bool { return r == ',' })
	if len(words) == 0 {
		return 0, fail("invalid scheduler flag `%s'", arg)
	}
	for _, w := range words {
		need := ""
		switch w {
		case "flag-1":
			flags |= FlagSched1
		case "flag-2":
			flags |= FlagSched2
		case "flag-3":
			flags |= FlagSched3
		case "sh-fallback":
			flags |= FlagSched1
			need = "sh"
		case "sh-port":
			flags |= FlagSched2
			need = "sh"
		case "mh-fallback":
			flags |= FlagSched1
			need = "mh"
		case "mh-port":
			flags |= FlagSched2
			need = "mh"
		default:
			return 0, fail("invalid scheduler flag `%s'", w)
		}
		if need != "" && sched != need {
			return 0, fail("incompatible scheduler flag `%s'", w)
		}
	}
	return flags, nil
}

// genericOptCheck is ipvsadm's generic_opt_check over the legality table.
func (p *parser) genericOptCheck() *Error {
	row := legality[p.kind]
	last, count := 0, 0
	for j := 0; j < numOpts; j++ {
		if !p.has(j) {
			if row[j] == '+' {
				return fail("You need to supply the '%s' option for the '%s' command", optNames[j], p.kind)
			}
			continue
		}
		switch row[j] {
		case 'x':
			return fail("Illegal '%s' option with the '%s' command", optNames[j], p.kind)
		case '1':
			count++
			if count == 1 {
				last = j
				continue
			}
			return fail("The option '%s' conflicts with the '%s' option in the '%s' command", optNames[j], optNames[last], p.kind)
		}
	}
	return nil
}

// semanticChecks are the checks ipvsadm's process_options makes after
// the legality table (reference 1.6 and the list conflicts of 1.4).
func (p *parser) semanticChecks() *Error {
	if p.netmask == netmaskV4 {
		// xvs keeps masks as prefix lengths, so a non-contiguous mask
		// (which ipvsadm would pass on) is refused with ipvsadm's message.
		n, ok := maskToPrefix(p.mask4)
		if !ok {
			return fail("illegal virtual server persistent mask specified")
		}
		p.netmask = n
	}
	switch p.kind {
	case CmdAddService, CmdEditService:
		if p.fwmark == 0 && p.svcPort == 0 && !p.persist {
			return fail("Zero port specified for non-persistent service")
		}
		if p.onePacket && p.fwmark == 0 && p.proto != ProtoUDP {
			return fail("One-Packet Scheduling is only for UDP virtual services")
		}
		if p.sched == "" {
			p.sched = DefaultScheduler
		}
	case CmdStartDaemon:
		if p.daemon.McastInterface == "" {
			p.daemon.McastInterface = "eth0"
		}
	case CmdAddDest, CmdEditDest:
		// ipvsadm's default method is direct routing.
		fwd := p.method
		if fwd == MethodUnset {
			fwd = MethodRoute
		}
		// -e without a method keeps the current method in xvs, so the
		// port is only forced when -g or -i was actually given.
		if p.fwmark == 0 && (p.method == MethodTunnel || p.method == MethodRoute) {
			p.destPort = p.svcPort
		}
		if p.destAddr.Is6() != p.svc6 && fwd != MethodTunnel {
			return fail("Different address family is allowed only for tunneling servers")
		}
		tunOpts := p.has(optTunType) || p.has(optTunPort) || p.has(optTunNoCsum) || p.has(optTunCsum) || p.has(optTunRemCsum)
		if tunOpts && fwd != MethodTunnel {
			return fail("Tunnel options conflict with forward method")
		}
		if fwd == MethodTunnel {
			if err := p.tunnelOptCheck(); err != nil {
				return err
			}
		}
	case CmdList:
		if (p.has(optConnection) || p.has(optTimeout) || p.has(optDaemon)) &&
			(p.has(optStats) || p.has(optRate) || p.has(optThresholds)) ||
			(p.has(optTimeout) || p.has(optDaemon)) && p.has(optPersistentConn) {
			return fail("options conflicts in the list command")
		}
	}
	return nil
}

func (p *parser) tunnelOptCheck() *Error {
	typ := p.tun.Type
	if typ == "" {
		typ = "ipip"
	}
	row := tunLegality[typ]
	slots := [4]int{optTunPort, optTunNoCsum, optTunCsum, optTunRemCsum}
	last, count := 0, 0
	for j, o := range slots {
		if !p.has(o) {
			if row[j] == '+' {
				return fail("You need to supply the '%s' option for the '%s' tunnel type", optNames[o], typ)
			}
			continue
		}
		switch row[j] {
		case 'x':
			return fail("Illegal '%s' option with the '%s' tunnel type", optNames[o], typ)
		case '1':
			count++
			if count == 1 {
				last = o
				continue
			}
			return fail("The option '%s' conflicts with the '%s' option in the '%s' tunnel type", optNames[o], optNames[last], typ)
		}
	}
	return nil
}

// command builds the result.
func (p *parser) command() *Command {
	c := &Command{Kind: p.kind, Timeouts: p.times, List: p.list, PE: p.pe}
	if p.has(optService) {
		s := &Service{Proto: p.proto, FwMark: p.fwmark}
		addr := p.svcAddr
		if p.fwmark != 0 {
			addr = netip.IPv4Unspecified()
			if p.svc6 {
				addr = netip.IPv6Unspecified()
			}
		}
		s.Addr = netip.AddrPortFrom(addr, p.svcPort)
		s.Netmask = p.netmask
		if s.Netmask < 0 {
			s.Netmask = 32
			if p.svc6 {
				s.Netmask = 128
			}
		}
		if p.kind == CmdAddService || p.kind == CmdEditService {
			s.Scheduler = p.sched
			s.Flags = p.flagsBits
			s.Persistent = p.persist
			s.Timeout = p.timeout
			s.OnePacket = p.onePacket
		}
		c.Service = s
	}
	if p.kind == CmdList && c.Service != nil {
		c.List.OneService = true
	}
	switch p.kind {
	case CmdAddDest, CmdEditDest, CmdDelDest:
		c.Dest = &Dest{
			Addr:       netip.AddrPortFrom(p.destAddr, p.destPort),
			Method:     p.method,
			Weight:     p.weight,
			UThreshold: p.uthresh,
			LThreshold: p.lthresh,
		}
	}
	if p.kind == CmdStartDaemon || p.kind == CmdStopDaemon {
		d := p.daemon
		c.Daemon = &d
	}
	if p.tun != (Tunnel{}) {
		t := p.tun
		if t.Type == "" {
			t.Type = "ipip"
		}
		c.Tunnel = &t
	}
	return c
}

// unsupported names the first thing asked for that xvs refuses, with the
// one-line message saying so (reference 0.3).
func (p *parser) unsupported() (feature, msg string) {
	switch {
	case p.fwmark != 0:
		return "-f", "firewall-mark services (-f) are not supported by xvs"
	case p.proto == ProtoSCTP && p.has(optService):
		return "--sctp-service", "SCTP services (--sctp-service) are not supported by xvs"
	case p.pe != "":
		return "--pe", "persistence engines (--pe) are not supported by xvs"
	case p.onePacket:
		return "-o", "one-packet scheduling (-o) is not supported by xvs"
	}
	if p.kind == CmdAddDest || p.kind == CmdEditDest {
		switch p.method {
		case MethodRoute:
			return "-g", "gatewaying (-g) is not supported by xvs, use masquerading (-m)"
		case MethodTunnel:
			return "-i", "ipip tunneling (-i) is not supported by xvs, use masquerading (-m)"
		case MethodUnset:
			if p.kind == CmdAddDest {
				return "-g", "no forwarding method given and ipvsadm's default, gatewaying (-g), is not supported by xvs: use masquerading (-m)"
			}
		}
	}
	return "", ""
}
