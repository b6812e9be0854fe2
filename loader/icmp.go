package loader

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Unreachable answers first packets that found no usable real server with
// ICMP destination unreachable / port unreachable (ICMPv6 port
// unreachable), sent from the VIP as IPVS's ip_vs_leave does, so clients
// see "connection refused" instead of a timeout. It sends through raw
// sockets of the daemon's network namespace, where the kernel routes the
// reply to the client.
type Unreachable struct {
	fd4, fd6 int
}

// Sizes of what an ICMP error quotes of the original datagram: IPv4 as
// Linux, up to 576 bytes in all (RFC 1812); IPv6 up to the minimum MTU.
const (
	icmp4Quote = 576 - ip4HdrLen - 8
	icmp6Quote = 1280 - ip6HdrLen - 8
)

// NewUnreachable opens the raw sockets.
func NewUnreachable() (*Unreachable, error) {
	fd4, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return nil, fmt.Errorf("icmp socket: %w", privileged(err))
	}
	fd6, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		unix.Close(fd4)
		return nil, fmt.Errorf("icmpv6 socket: %w", privileged(err))
	}
	// The VIP need not be a local address: let the source be any address.
	_ = unix.SetsockoptInt(fd4, unix.SOL_IP, unix.IP_TRANSPARENT, 1)
	_ = unix.SetsockoptInt(fd6, unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
	return &Unreachable{fd4: fd4, fd6: fd6}, nil
}

// Close closes the sockets.
func (u *Unreachable) Close() error {
	unix.Close(u.fd6)
	return unix.Close(u.fd4)
}

// Send answers the punted frame b.
func (u *Unreachable) Send(b []byte) error {
	msg, src, dst, err := PortUnreachable(b)
	if err != nil {
		return err
	}
	if src.Is4() {
		info := unix.Inet4Pktinfo{Spec_dst: src.As4()}
		oob := unix.PktInfo4(&info)
		err = unix.Sendmsg(u.fd4, msg, oob, &unix.SockaddrInet4{Addr: dst.As4()}, 0)
	} else {
		info := unix.Inet6Pktinfo{Addr: src.As16()}
		oob := unix.PktInfo6(&info)
		err = unix.Sendmsg(u.fd6, msg, oob, &unix.SockaddrInet6{Addr: dst.As16()}, 0)
	}
	if err != nil {
		return fmt.Errorf("send port unreachable to %v: %w", dst, err)
	}
	return nil
}

// PortUnreachable builds the ICMP message (without the IP header) that
// answers the IPv4 or IPv6 packet in frame b, and says from and to whom it
// goes: from the packet's destination (the VIP) to its source. ICMPv6's
// checksum is left 0: the kernel fills it in for raw ICMPv6 sockets.
func PortUnreachable(b []byte) (msg []byte, src, dst netip.Addr, err error) {
	f, err := ParseFrame(b)
	if err != nil {
		return nil, src, dst, err
	}
	ip := ipOffset(b)
	quote := b[ip:]
	if f.Src.Addr().Is4() {
		tot := int(binary.BigEndian.Uint16(quote[2:4]))
		quote = quote[:min(len(quote), tot, icmp4Quote)]
		msg = make([]byte, 8+len(quote))
		msg[0], msg[1] = 3, 3 // destination unreachable, port unreachable
		copy(msg[8:], quote)
		binary.BigEndian.PutUint16(msg[2:4], inetChecksum(msg))
	} else {
		plen := ip6HdrLen + int(binary.BigEndian.Uint16(quote[4:6]))
		quote = quote[:min(len(quote), plen, icmp6Quote)]
		msg = make([]byte, 8+len(quote))
		msg[0], msg[1] = 1, 4 // destination unreachable, port unreachable
		copy(msg[8:], quote)
	}
	return msg, f.Dst.Addr(), f.Src.Addr(), nil
}

// ipOffset is where the IP header of an Ethernet frame starts (ParseFrame
// has checked the frame).
func ipOffset(b []byte) int {
	if p := binary.BigEndian.Uint16(b[12:14]); p == ethP8021Q || p == ethP8021AD {
		return ethHdrLen + vlanHdrLen
	}
	return ethHdrLen
}

// inetChecksum is the Internet checksum (RFC 1071) of b.
func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
