package ipvsadm

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// ruleSvc is the service part of a save line ("-t 1.2.3.4:80", "-f 1 -6").
func ruleSvc(s *Service, numeric bool, r Resolver) string {
	if s.FwMark != 0 {
		if isV6(s.Addr.Addr()) {
			return fmt.Sprintf("-f %d -6", s.FwMark)
		}
		return fmt.Sprintf("-f %d", s.FwMark)
	}
	opt := "-t"
	switch s.Proto {
	case ProtoUDP:
		opt = "-u"
	case ProtoSCTP:
		opt = "--sctp-service"
	}
	return opt + " " + ruleAddr(s.Addr, s.Proto, numeric, r)
}

// ruleAddr is an address in a save line. IPv6 hosts stay numeric even in
// name mode: ipvsadm writes "[name]:port" there, which its own restore
// (gethostbyname, IPv4 only) cannot read back; xvs's -S output must restore.
func ruleAddr(ap netip.AddrPort, proto uint8, numeric bool, r Resolver) string {
	if isV6(ap.Addr()) && !numeric && r != nil {
		return addrPortName(ap, proto, false, portOnly{r})
	}
	return addrPortName(ap, proto, numeric, r)
}

// portOnly resolves service names but no host names.
type portOnly struct{ Resolver }

func (portOnly) LookupAddr(netip.Addr) (string, error) { return "", errNotFound }

// methodSwitch is the save-format option of a method (Local saves as -g).
func methodSwitch(m Method) string {
	switch m {
	case MethodMasq:
		return "-m"
	case MethodTunnel:
		return "-i"
	}
	return "-g"
}

// saveSchedFlags is the -b value of a save line. Unlike the listing it
// keeps flag-3 on sh/mh services, so that the line restores.
func saveSchedFlags(s *Service) string {
	f := schedFlags(s)
	if (s.Scheduler == "sh" || s.Scheduler == "mh") && s.Flags&FlagSched3 != 0 {
		if f != "" {
			f += ","
		}
		f += "flag-3"
	}
	return f
}

// WriteSave prints the services in ipvsadm's save format (-S, reference
// 3.1), sorted as ipvsadm sorts them; with numeric false, addresses and
// ports are written as names where they resolve. Thresholds are not saved.
func WriteSave(w io.Writer, svcs []ServiceEntry, numeric bool, r Resolver) error {
	var b strings.Builder
	for _, se := range sortedServices(svcs) {
		s := &se.Service
		name := ruleSvc(s, numeric, r)
		fmt.Fprintf(&b, "-A %s -s %s", name, s.Scheduler)
		if s.Persistent {
			fmt.Fprintf(&b, " -p %d", s.Timeout)
			if m := maskText(s); m != "" {
				b.WriteString(" -M " + m)
			}
		}
		if s.OnePacket {
			b.WriteString(" -o")
		}
		if s.Flags&schedFlagMask != 0 {
			b.WriteString(" -b " + saveSchedFlags(s))
		}
		b.WriteString("\n")
		for _, d := range sortedDests(se.Dests) {
			fmt.Fprintf(&b, "-a %s -r %s %s -w %d\n", name,
				ruleAddr(d.Addr, s.Proto, numeric, r), methodSwitch(d.Method), d.Weight)
		}
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write rules: %w", err)
	}
	return nil
}
