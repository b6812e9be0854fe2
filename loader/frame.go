package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Frame is what the daemon needs of a punted first packet to schedule it.
type Frame struct {
	Proto    uint8 // unix.IPPROTO_TCP or unix.IPPROTO_UDP
	Src, Dst netip.AddrPort
	Family   uint8 // unix.AF_INET or unix.AF_INET6
	TCPFlags uint8 // byte 13 of the TCP header; 0 for UDP
}

var (
	// ErrTruncated means a header ends before the frame does.
	ErrTruncated = errors.New("truncated frame")
	// ErrUnsupported means a frame the datapath never punts: not IP,
	// not TCP/UDP, a fragment, or IPv6 extension headers.
	ErrUnsupported = errors.New("unsupported frame")
)

const (
	ethHdrLen  = 14
	vlanHdrLen = 4
	ip4HdrLen  = 20
	ip6HdrLen  = 40
	tcpHdrLen  = 20
	udpHdrLen  = 8

	ethPIP     = 0x0800
	ethPIPv6   = 0x86dd
	ethP8021Q  = 0x8100
	ethP8021AD = 0x88a8
)

// ParseFrame reads the flow of an Ethernet frame (one optional VLAN tag,
// IPv4 or IPv6, TCP or UDP), checking every bound. It accepts what the
// datapath punts and rejects the rest.
func ParseFrame(b []byte) (Frame, error) {
	var f Frame
	if len(b) < ethHdrLen {
		return f, fmt.Errorf("ethernet header: %w", ErrTruncated)
	}
	proto := binary.BigEndian.Uint16(b[12:14])
	off := ethHdrLen
	if proto == ethP8021Q || proto == ethP8021AD {
		if len(b) < off+vlanHdrLen {
			return f, fmt.Errorf("vlan header: %w", ErrTruncated)
		}
		proto = binary.BigEndian.Uint16(b[off+2 : off+4])
		off += vlanHdrLen
	}

	var l4 uint8
	switch proto {
	case ethPIP:
		h := b[off:]
		if len(h) < ip4HdrLen {
			return f, fmt.Errorf("ipv4 header: %w", ErrTruncated)
		}
		if h[0]>>4 != 4 {
			return f, fmt.Errorf("ipv4 version %d: %w", h[0]>>4, ErrUnsupported)
		}
		ihl := int(h[0]&0x0f) * 4
		if ihl < ip4HdrLen {
			return f, fmt.Errorf("ipv4 header length %d: %w", ihl, ErrUnsupported)
		}
		if len(h) < ihl {
			return f, fmt.Errorf("ipv4 options: %w", ErrTruncated)
		}
		if frag := binary.BigEndian.Uint16(h[6:8]); frag&0x3fff != 0 { // MF or offset
			return f, fmt.Errorf("ipv4 fragment: %w", ErrUnsupported)
		}
		l4 = h[9]
		f.Family = unix.AF_INET
		f.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(h[12:16])), 0)
		f.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(h[16:20])), 0)
		off += ihl
	case ethPIPv6:
		h := b[off:]
		if len(h) < ip6HdrLen {
			return f, fmt.Errorf("ipv6 header: %w", ErrTruncated)
		}
		if h[0]>>4 != 6 {
			return f, fmt.Errorf("ipv6 version %d: %w", h[0]>>4, ErrUnsupported)
		}
		l4 = h[6]
		f.Family = unix.AF_INET6
		f.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(h[8:24])), 0)
		f.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(h[24:40])), 0)
		off += ip6HdrLen
	default:
		return f, fmt.Errorf("ethertype %#04x: %w", proto, ErrUnsupported)
	}

	h := b[off:]
	switch l4 {
	case unix.IPPROTO_TCP:
		if len(h) < tcpHdrLen {
			return f, fmt.Errorf("tcp header: %w", ErrTruncated)
		}
		if doff := int(h[12]>>4) * 4; doff < tcpHdrLen {
			return f, fmt.Errorf("tcp data offset %d: %w", doff, ErrUnsupported)
		}
		f.TCPFlags = h[13]
	case unix.IPPROTO_UDP:
		if len(h) < udpHdrLen {
			return f, fmt.Errorf("udp header: %w", ErrTruncated)
		}
	default:
		return f, fmt.Errorf("ip protocol %d: %w", l4, ErrUnsupported)
	}
	f.Proto = l4
	f.Src = netip.AddrPortFrom(f.Src.Addr(), binary.BigEndian.Uint16(h[0:2]))
	f.Dst = netip.AddrPortFrom(f.Dst.Addr(), binary.BigEndian.Uint16(h[2:4]))
	return f, nil
}

// SetDstMAC points a frame at mac (the tap's), so that the kernel would
// accept it as PACKET_HOST if the datapath passed it on. Frames shorter
// than a MAC address are left alone.
func SetDstMAC(b []byte, mac net.HardwareAddr) {
	if len(b) >= 6 && len(mac) == 6 {
		copy(b[:6], mac)
	}
}
