package ipvsadm

import (
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// strtol10 is strtol(s, &end, 10) requiring the whole string to be
// consumed, as ipvsadm's string_to_number does: leading blanks and a sign
// are allowed, ok is false on junk, no digits or overflow.
func strtol10(s string) (int64, bool) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	var n uint64
	overflow := false
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		n = n*10 + uint64(s[i]-'0')
		if n > math.MaxInt64 {
			overflow = true
			n = math.MaxInt64 + 1 // keep it from wrapping
		}
		i++
	}
	if i == start || i != len(s) || overflow {
		return 0, false
	}
	if neg {
		return -int64(n), true
	}
	return int64(n), true
}

// stringToNumber is ipvsadm's string_to_number: -1 unless s is a whole
// decimal number in [min, max].
func stringToNumber(s string, min, max int64) int64 {
	n, ok := strtol10(s)
	if !ok || n < min || n > max {
		return -1
	}
	return n
}

// atoi is C's atoi (no error, stops at the first non-digit).
func atoi(s string) int64 {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	var n int64
	for i < len(s) && s[i] >= '0' && s[i] <= '9' && n < math.MaxInt32*10 {
		n = n*10 + int64(s[i]-'0')
		i++
	}
	if neg {
		return -n
	}
	return n
}

// strIsDigit is ipvsadm's str_is_digit (true for the empty string too).
func strIsDigit(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// inetAton is glibc's inet_aton: one to four parts in C notation (0x hex,
// leading 0 octal), the last part filling the remaining bytes; anything
// after a blank is ignored.
func inetAton(s string) (netip.Addr, bool) {
	if i := strings.IndexFunc(s, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) }); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" {
			return netip.Addr{}, false
		}
		base := 10
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base = 16
			p = p[2:]
		case len(p) > 1 && p[0] == '0':
			base = 8
			p = p[1:]
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var a uint64
	n := len(vals)
	for i := 0; i < n-1; i++ {
		if vals[i] > 0xff {
			return netip.Addr{}, false
		}
		a |= vals[i] << (24 - 8*i)
	}
	last := vals[n-1]
	if last > (uint64(1)<<(8*(5-n)))-1 {
		return netip.Addr{}, false
	}
	a |= last
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), true
}

// inetPton6 is inet_pton(AF_INET6): only IPv6 text, no zone.
func inetPton6(s string) (netip.Addr, bool) {
	if !strings.Contains(s, ":") || strings.Contains(s, "%") {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() {
		return netip.Addr{}, false
	}
	return a, true
}

// protoName is the getservbyname protocol of a service protocol ("" = none).
func protoName(proto uint8) string {
	switch proto {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoSCTP:
		return "sctp"
	}
	return ""
}

// hostToAddr is gethostbyname limited to IPv4, first address.
func hostToAddr(name string, r Resolver) (netip.Addr, bool) {
	if r == nil || name == "" {
		return netip.Addr{}, false
	}
	a, err := r.LookupHost(name)
	if err != nil || !a.Unmap().Is4() {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// parseService is ipvsadm's parse_service. It returns the address, the
// port (0 when none was given), whether a port was given, and ok.
func parseService(buf string, proto uint8, r Resolver) (netip.Addr, uint16, bool, bool) {
	if strIsDigit(buf) {
		return netip.Addr{}, 0, false, false
	}
	var port *string
	if buf[0] == '[' {
		buf = buf[1:]
		i := strings.IndexByte(buf, ']')
		if i < 0 {
			return netip.Addr{}, 0, false, false
		}
		rest := buf[i+1:]
		buf = buf[:i]
		if !strings.HasPrefix(rest, ":") {
			return netip.Addr{}, 0, false, false
		}
		p := rest[1:]
		port = &p
	}
	var addr netip.Addr
	if a, ok := inetPton6(buf); ok {
		addr = a
	} else {
		// ipvsadm looks for the last colon again inside what is left, so
		// "[1.2.3.4]:80" loses its port: reproduce that.
		port = nil
		if i := strings.LastIndexByte(buf, ':'); i >= 0 {
			p := buf[i+1:]
			port = &p
			buf = buf[:i]
		}
		if a, ok := inetAton(buf); ok {
			addr = a
		} else if a, ok := hostToAddr(buf, r); ok {
			addr = a
		} else {
			return netip.Addr{}, 0, false, false
		}
	}
	if port == nil {
		return addr, 0, false, true
	}
	if n := stringToNumber(*port, 0, 65535); n != -1 {
		return addr, uint16(n), true, true
	}
	pn := protoName(proto)
	if pn == "" || r == nil || *port == "" {
		return netip.Addr{}, 0, false, false
	}
	p, err := r.LookupPort(pn, *port)
	if err != nil {
		return netip.Addr{}, 0, false, false
	}
	return addr, p, true, true
}

// maskToPrefix turns a dotted IPv4 mask into a prefix length; ok is false
// for a non-contiguous mask, which xvs cannot represent.
func maskToPrefix(a netip.Addr) (int, bool) {
	b := a.As4()
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for n < 32 && m&(1<<(31-n)) != 0 {
		n++
	}
	if n < 32 && m<<n != 0 {
		return 0, false
	}
	return n, true
}

// prefixToMask is the dotted IPv4 mask of a prefix length.
func prefixToMask(n int) string {
	if n < 0 {
		n = 0
	}
	if n > 32 {
		n = 32
	}
	m := uint32(0)
	if n > 0 {
		m = ^uint32(0) << (32 - n)
	}
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}).String()
}
