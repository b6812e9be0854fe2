package ipvsadm

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// protoLabel is the protocol column of listings (kernel ip_vs_proto_name).
func protoLabel(p uint8) string {
	switch p {
	case 0:
		return "IP"
	case 1:
		return "ICMP"
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case 58:
		return "ICMPv6"
	case ProtoSCTP:
		return "SCTP"
	}
	return "IP_" + strconv.Itoa(int(p))
}

// isV6 tells the address family the way ipvsadm sees it (an IPv4-mapped
// IPv6 address is IPv6).
func isV6(a netip.Addr) bool { return a.Is6() }

// addrPortName is ipvsadm's addrport_to_anyname: numeric, or the reverse
// name and service name falling back to numbers; IPv6 in brackets.
func addrPortName(ap netip.AddrPort, proto uint8, numeric bool, r Resolver) string {
	a := ap.Addr()
	host := a.String()
	port := strconv.Itoa(int(ap.Port()))
	if !numeric && r != nil {
		if n, err := r.LookupAddr(a); err == nil && n != "" {
			host = n
		}
		if pn := protoName(proto); pn != "" {
			if n, err := r.LookupService(pn, ap.Port()); err == nil && n != "" {
				port = n
			}
		}
	}
	if isV6(a) {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// svcName is the service column of a listing ("TCP  1.2.3.4:80", cut to 33 for IPv4).
func svcName(s *Service, opt ListOptions, r Resolver) string {
	if s.FwMark != 0 {
		if isV6(s.Addr.Addr()) {
			return fmt.Sprintf("FWM  %d IPv6", s.FwMark)
		}
		return fmt.Sprintf("FWM  %d", s.FwMark)
	}
	name := fmt.Sprintf("%-4s %s", protoLabel(s.Proto), addrPortName(s.Addr, s.Proto, opt.Numeric, r))
	if !isV6(s.Addr.Addr()) {
		name = cut(name, 33)
	}
	return name
}

// destName is the dest column of a listing (cut to 28 for IPv4).
func destName(d *Dest, proto uint8, opt ListOptions, r Resolver) string {
	name := addrPortName(d.Addr, proto, opt.Numeric, r)
	if !isV6(d.Addr.Addr()) {
		name = cut(name, 28)
	}
	return name
}

// schedFlags is ipvsadm's print_sched_flags (without the parentheses).
func schedFlags(s *Service) string {
	var f []string
	switch s.Scheduler {
	case "sh", "mh":
		if s.Flags&FlagSched1 != 0 {
			f = append(f, s.Scheduler+"-fallback")
		}
		if s.Flags&FlagSched2 != 0 {
			f = append(f, s.Scheduler+"-port")
		}
	default:
		if s.Flags&FlagSched1 != 0 {
			f = append(f, "flag-1")
		}
		if s.Flags&FlagSched2 != 0 {
			f = append(f, "flag-2")
		}
		if s.Flags&FlagSched3 != 0 {
			f = append(f, "flag-3")
		}
	}
	return strings.Join(f, ",")
}

const schedFlagMask = FlagSched1 | FlagSched2 | FlagSched3

// maskText is the persistence mask as printed, "" when it is the full mask.
func maskText(s *Service) string {
	if isV6(s.Addr.Addr()) {
		if s.Netmask != 128 {
			return strconv.Itoa(s.Netmask)
		}
		return ""
	}
	if s.Netmask != 32 {
		return prefixToMask(s.Netmask)
	}
	return ""
}

// printLargenum is ipvsadm's print_largenum: 9 columns including the
// leading blank, K/M/G/T suffixes unless exact.
func printLargenum(b *strings.Builder, v uint64, exact bool) {
	if exact {
		w := 9
		if n := len(strconv.FormatUint(v, 10)); n > 8 {
			w = n + 1
		}
		fmt.Fprintf(b, "%*d", w, v)
		return
	}
	switch {
	case v < 100000000:
		fmt.Fprintf(b, "%9d", v)
	case v < 1000000000:
		fmt.Fprintf(b, "%8dK", v/1000)
	case v < 100000000000:
		fmt.Fprintf(b, "%8dM", v/1000000)
	case v < 100000000000000:
		fmt.Fprintf(b, "%8dG", v/1000000000)
	default:
		fmt.Fprintf(b, "%8dT", v/1000000000000)
	}
}

func printStats(b *strings.Builder, s Stats, exact bool) {
	for _, v := range []uint64{s.Conns, s.InPkts, s.OutPkts, s.InBytes, s.OutBytes} {
		printLargenum(b, v, exact)
	}
}

type variant int

const (
	varDefault variant = iota
	varStats
	varRate
	varThresholds
	varPersist
	varTunInfo
)

// listVariant applies ipvsadm's precedence of listing variants.
func listVariant(opt ListOptions) variant {
	switch {
	case opt.Stats:
		return varStats
	case opt.Rate:
		return varRate
	case opt.Thresholds:
		return varThresholds
	case opt.PersistConn:
		return varPersist
	case opt.TunInfo:
		return varTunInfo
	}
	return varDefault
}

func printTitle(b *strings.Builder, v variant) {
	switch v {
	case varStats:
		fmt.Fprintf(b, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n",
			"Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
	case varRate:
		fmt.Fprintf(b, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n",
			"Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	case varThresholds:
		fmt.Fprintf(b, "%-33s %-10s %-10s %-10s %-10s\n  -> RemoteAddress:Port\n",
			"Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn")
	case varPersist:
		fmt.Fprintf(b, "%-33s %-9s %-11s %-10s %-10s\n  -> RemoteAddress:Port\n",
			"Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn")
	case varTunInfo:
		b.WriteString("Prot LocalAddress:Port Scheduler Flags\n" +
			"  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n")
	default:
		b.WriteString("Prot LocalAddress:Port Scheduler Flags\n" +
			"  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
}

func printServiceEntry(b *strings.Builder, se *ServiceEntry, v variant, opt ListOptions, r Resolver) {
	s := &se.Service
	name := svcName(s, opt, r)
	switch v {
	case varStats:
		fmt.Fprintf(b, "%-33s", name)
		printStats(b, se.Stats, opt.Exact)
	case varRate:
		fmt.Fprintf(b, "%-33s", name)
		printStats(b, se.Rate, opt.Exact)
	default:
		fmt.Fprintf(b, "%s %s", name, s.Scheduler)
		if s.Flags&schedFlagMask != 0 {
			fmt.Fprintf(b, " (%s)", schedFlags(s))
		}
		if s.Persistent {
			fmt.Fprintf(b, " persistent %d", s.Timeout)
			if m := maskText(s); m != "" {
				b.WriteString(" mask " + m)
			}
		}
		if s.OnePacket {
			b.WriteString(" ops")
		}
	}
	b.WriteString("\n")

	dests := se.Dests
	if !opt.NoSort {
		dests = sortedDests(dests)
	}
	for i := range dests {
		e := &dests[i]
		dn := destName(&e.Dest, s.Proto, opt, r)
		switch v {
		case varStats:
			fmt.Fprintf(b, "  -> %-28s", dn)
			printStats(b, e.Stats, opt.Exact)
			b.WriteString("\n")
		case varRate:
			fmt.Fprintf(b, "  -> %-28s %8d %8d %8d", dn, e.Rate.Conns, e.Rate.InPkts, e.Rate.OutPkts)
			printLargenum(b, e.Rate.InBytes, opt.Exact)
			printLargenum(b, e.Rate.OutBytes, opt.Exact)
			b.WriteString("\n")
		case varThresholds:
			fmt.Fprintf(b, "  -> %-28s %-10d %-10d %-10d %-10d\n", dn,
				e.UThreshold, e.LThreshold, e.ActiveConns, e.InactConns)
		case varPersist:
			fmt.Fprintf(b, "  -> %-28s %-9d %-11d %-10d %-10d\n", dn,
				e.Weight, e.PersistConns, e.ActiveConns, e.InactConns)
		case varTunInfo:
			fmt.Fprintf(b, "  -> %-28s %-7s %-13s %-6d %-10d %-10d\n", dn,
				e.Method, "n/a", e.Weight, e.ActiveConns, e.InactConns)
		default:
			fmt.Fprintf(b, "  -> %-28s %-7s %-6d %-10d %-10d\n", dn,
				e.Method, e.Weight, e.ActiveConns, e.InactConns)
		}
	}
}

// WriteList prints a service listing (-L and its variants, reference 2.1-2.4):
// the version line (unless opt.OneService), the title, then each service
// with its dests. Services and dests are sorted as ipvsadm sorts them
// unless opt.NoSort. svcs is not modified.
func WriteList(w io.Writer, info Info, svcs []ServiceEntry, opt ListOptions, r Resolver) error {
	var b strings.Builder
	if !opt.OneService {
		fmt.Fprintf(&b, "XDP Virtual Server version %s (size=%d)\n", info.Version, info.ConnTableSize)
	}
	if !opt.NoSort {
		svcs = sortedServices(svcs)
	}
	v := listVariant(opt)
	printTitle(&b, v)
	for i := range svcs {
		printServiceEntry(&b, &svcs[i], v, opt, r)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write listing: %w", err)
	}
	return nil
}

// WriteConns prints -L -c (reference 2.5), in the order given.
func WriteConns(w io.Writer, conns []ConnEntry, opt ListOptions, r Resolver) error {
	var b strings.Builder
	b.WriteString("IPVS connection entries\n")
	if opt.PersistConn {
		fmt.Fprintf(&b, "pro expire %-11s %-18s %-18s %-18s %-16s %s\n",
			"state", "source", "virtual", "destination", "pe name", "pe_data")
	} else {
		fmt.Fprintf(&b, "pro expire %-11s %-18s %-18s %s\n",
			"state", "source", "virtual", "destination")
	}
	for i := range conns {
		c := &conns[i]
		// ipvsadm knows service names for these protocols only.
		proto := c.Proto
		if proto != ProtoTCP && proto != ProtoUDP && proto != ProtoSCTP {
			proto = 0
		}
		secs := int64(c.Expires / time.Second)
		if secs < 0 {
			secs = 0
		}
		expire := fmt.Sprintf("%02d:%02d", secs/60, secs%60)
		fmt.Fprintf(&b, "%-3s %-6s %-11s %-18s %-18s %s\n",
			protoLabel(c.Proto), expire, c.State,
			addrPortName(c.Client, proto, opt.Numeric, r),
			addrPortName(c.Virtual, proto, opt.Numeric, r),
			addrPortName(c.Dest, proto, opt.Numeric, r))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write connections: %w", err)
	}
	return nil
}

// WriteTimeout prints -L --timeout (reference 2.6).
func WriteTimeout(w io.Writer, t Timeouts) error {
	if _, err := fmt.Fprintf(w, "Timeout (tcp tcpfin udp): %d %d %d\n", t.TCP, t.TCPFin, t.UDP); err != nil {
		return fmt.Errorf("write timeouts: %w", err)
	}
	return nil
}
