package testutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// IP protocol numbers used by the builders.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// TCP flag bits (byte 13 of the TCP header).
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
)

// IPv4 flags/fragment-offset field bits.
const (
	IPv4DF uint16 = 0x4000
	IPv4MF uint16 = 0x2000
)

// EtherTypes.
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeIPv6 uint16 = 0x86dd
	EtherTypeARP  uint16 = 0x0806
	EtherTypeVLAN uint16 = 0x8100
)

// Frame describes an Ethernet frame carrying an IPv4 or IPv6 packet for
// datapath tests. Bytes builds it with correct checksums, computed in full,
// so the frame a test expects out of a rewrite is the input Frame with the
// rewritten fields changed.
type Frame struct {
	DstMAC, SrcMAC net.HardwareAddr // nil: all zero
	VLAN           bool             // add one 802.1Q tag with VLANID
	VLANID         uint16
	EtherType      uint16 // 0: from the IP version of Src

	Src, Dst  netip.Addr // both IPv4 or both IPv6
	TTL       uint8      // TTL or hop limit; 0 means 64
	TOS       uint8
	ID        uint16 // IPv4 identification
	FragOff   uint16 // IPv4 flags and fragment offset (IPv4DF, IPv4MF, offset)
	IPOptions []byte // IPv4 options, padded with zeros to a multiple of 4
	Proto     uint8  // IP protocol / IPv6 next header; 0 means TCP

	SrcPort, DstPort uint16
	TCPFlags         uint8
	Seq, Ack         uint32
	Window           uint16 // 0 means 65535
	TCPOptions       []byte // padded with zeros to a multiple of 4
	UDPZeroCsum      bool   // send UDP checksum 0 (no checksum)

	// ICMP, with Proto ProtoICMP or ProtoICMPv6, adds an ICMP header before
	// Payload, with its checksum (ICMPv6: pseudo-header included).
	ICMP *ICMPHeader
	// Frag6 adds an IPv6 fragment header (next header: Proto) before the
	// L4 header. The L4 checksum is still computed over what the frame
	// holds; see Fragments for real fragments of a datagram.
	Frag6 *IPv6Frag

	// Payload follows the TCP/UDP or ICMP header, or the IP header for any
	// other protocol.
	Payload []byte
}

// ICMPHeader is the 8-byte ICMP or ICMPv6 header: Info is bytes 4..7 (the
// next-hop MTU of fragmentation needed in its low 16 bits, the MTU of
// packet too big, 0 for most errors).
type ICMPHeader struct {
	Type, Code uint8
	Info       uint32
}

// IPv6Frag is an IPv6 fragment header.
type IPv6Frag struct {
	Offset uint16 // in 8-byte units
	More   bool
	ID     uint32
}

// ICMP types used by the datapath tests.
const (
	ICMPDestUnreach   uint8 = 3
	ICMPSourceQuench  uint8 = 4
	ICMPTimeExceeded  uint8 = 11
	ICMPEcho          uint8 = 8
	ICMPFragNeeded    uint8 = 4 // code of ICMPDestUnreach
	ICMPPortUnreach   uint8 = 3 // code of ICMPDestUnreach
	ICMP6DestUnreach  uint8 = 1
	ICMP6PacketTooBig uint8 = 2
	ICMP6TimeExceeded uint8 = 3
	ICMP6EchoRequest  uint8 = 128
)

// IP returns the frame's IP packet (no Ethernet header).
func (f Frame) IP() []byte {
	b := f.Bytes()
	p, err := ParseFrame(b)
	if err != nil {
		panic(fmt.Sprintf("testutil: frame does not parse: %v", err))
	}
	return b[p.L3Off:]
}

// Bytes returns the frame on the wire.
func (f Frame) Bytes() []byte {
	proto := f.Proto
	if proto == 0 {
		proto = ProtoTCP
	}
	l4 := f.l4(proto)
	var l3 []byte
	et := f.EtherType
	if f.Src.Is4() {
		l3 = f.ipv4(proto, len(l4))
		if et == 0 {
			et = EtherTypeIPv4
		}
	} else {
		ext := 0
		if f.Frag6 != nil {
			ext = 8
		}
		l3 = f.ipv6(proto, ext+len(l4))
		if f.Frag6 != nil {
			l3[6] = 44
			fh := make([]byte, 8)
			fh[0] = proto
			off := f.Frag6.Offset << 3
			if f.Frag6.More {
				off |= 1
			}
			binary.BigEndian.PutUint16(fh[2:], off)
			binary.BigEndian.PutUint32(fh[4:], f.Frag6.ID)
			l3 = append(l3, fh...)
		}
		if et == 0 {
			et = EtherTypeIPv6
		}
	}
	switch {
	case proto == ProtoTCP || proto == ProtoUDP:
		setL4Checksum(f.Src, f.Dst, proto, l4, f.UDPZeroCsum)
	case f.ICMP != nil && proto == ProtoICMP:
		binary.BigEndian.PutUint16(l4[2:], Checksum(l4, 0))
	case f.ICMP != nil && proto == ProtoICMPv6:
		binary.BigEndian.PutUint16(l4[2:], Checksum(l4, pseudoSum(f.Src, f.Dst, proto, len(l4))))
	}
	out := make([]byte, 0, 18+len(l3)+len(l4))
	out = append(out, mac(f.DstMAC)...)
	out = append(out, mac(f.SrcMAC)...)
	if f.VLAN {
		out = binary.BigEndian.AppendUint16(out, EtherTypeVLAN)
		out = binary.BigEndian.AppendUint16(out, f.VLANID&0x0fff)
	}
	out = binary.BigEndian.AppendUint16(out, et)
	out = append(out, l3...)
	return append(out, l4...)
}

func mac(m net.HardwareAddr) []byte {
	if len(m) == 6 {
		return m
	}
	return make([]byte, 6)
}

func pad4(b []byte) []byte {
	out := append([]byte(nil), b...)
	for len(out)%4 != 0 {
		out = append(out, 0)
	}
	return out
}

func (f Frame) ttl() uint8 {
	if f.TTL == 0 {
		return 64
	}
	return f.TTL
}

func (f Frame) ipv4(proto uint8, l4len int) []byte {
	opts := pad4(f.IPOptions)
	h := make([]byte, 20+len(opts))
	h[0] = 0x40 | uint8(len(h)/4)
	h[1] = f.TOS
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)+l4len))
	binary.BigEndian.PutUint16(h[4:], f.ID)
	binary.BigEndian.PutUint16(h[6:], f.FragOff)
	h[8] = f.ttl()
	h[9] = proto
	s, d := f.Src.As4(), f.Dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	copy(h[20:], opts)
	binary.BigEndian.PutUint16(h[10:], Checksum(h, 0))
	return h
}

func (f Frame) ipv6(proto uint8, l4len int) []byte {
	h := make([]byte, 40)
	binary.BigEndian.PutUint32(h, 6<<28|uint32(f.TOS)<<20)
	binary.BigEndian.PutUint16(h[4:], uint16(l4len))
	h[6] = proto
	h[7] = f.ttl()
	s, d := f.Src.As16(), f.Dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return h
}

// l4 returns the L4 header and payload with a zero checksum.
func (f Frame) l4(proto uint8) []byte {
	switch proto {
	case ProtoTCP:
		opts := pad4(f.TCPOptions)
		h := make([]byte, 20+len(opts), 20+len(opts)+len(f.Payload))
		binary.BigEndian.PutUint16(h[0:], f.SrcPort)
		binary.BigEndian.PutUint16(h[2:], f.DstPort)
		binary.BigEndian.PutUint32(h[4:], f.Seq)
		binary.BigEndian.PutUint32(h[8:], f.Ack)
		h[12] = uint8(len(h)/4) << 4
		h[13] = f.TCPFlags
		w := f.Window
		if w == 0 {
			w = 65535
		}
		binary.BigEndian.PutUint16(h[14:], w)
		copy(h[20:], opts)
		return append(h, f.Payload...)
	case ProtoUDP:
		h := make([]byte, 8, 8+len(f.Payload))
		binary.BigEndian.PutUint16(h[0:], f.SrcPort)
		binary.BigEndian.PutUint16(h[2:], f.DstPort)
		binary.BigEndian.PutUint16(h[4:], uint16(8+len(f.Payload)))
		return append(h, f.Payload...)
	}
	if f.ICMP != nil {
		h := make([]byte, 8, 8+len(f.Payload))
		h[0], h[1] = f.ICMP.Type, f.ICMP.Code
		binary.BigEndian.PutUint32(h[4:], f.ICMP.Info)
		return append(h, f.Payload...)
	}
	return append([]byte(nil), f.Payload...)
}

func setL4Checksum(src, dst netip.Addr, proto uint8, l4 []byte, udpZero bool) {
	off := 16
	if proto == ProtoUDP {
		off = 6
		if udpZero && src.Is4() {
			return
		}
	}
	sum := Checksum(l4, pseudoSum(src, dst, proto, len(l4)))
	if proto == ProtoUDP && sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], sum)
}

// pseudoSum is the unfolded sum of the TCP/UDP pseudo-header.
func pseudoSum(src, dst netip.Addr, proto uint8, l4len int) uint32 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	sum += uint32(proto)
	sum += uint32(l4len)
	return sum
}

// Checksum returns the Internet checksum (RFC 1071) of b, starting from the
// unfolded partial sum initial.
func Checksum(b []byte, initial uint32) uint16 {
	sum := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ErrNotIP reports a frame that carries neither IPv4 nor IPv6.
var ErrNotIP = errors.New("not an IP frame")

// Packet is what ParseFrame finds in a frame.
type Packet struct {
	L3Off, L4Off int
	Src, Dst     netip.Addr
	Proto        uint8
	TTL          uint8
	Fragment     bool // IPv4 MF or offset; IPv6 fragment header with M or offset
	IPLen        int  // IP total length (IPv6: payload + 40)
}

// ParseFrame reads the Ethernet (optionally one 802.1Q tag) and IP headers
// of frame, checking that the lengths are consistent.
func ParseFrame(frame []byte) (Packet, error) {
	var p Packet
	if len(frame) < 14 {
		return p, fmt.Errorf("frame of %d bytes: %w", len(frame), ErrNotIP)
	}
	et := binary.BigEndian.Uint16(frame[12:])
	p.L3Off = 14
	if et == EtherTypeVLAN {
		if len(frame) < 18 {
			return p, fmt.Errorf("truncated vlan tag: %w", ErrNotIP)
		}
		et = binary.BigEndian.Uint16(frame[16:])
		p.L3Off = 18
	}
	ip := frame[p.L3Off:]
	switch et {
	case EtherTypeIPv4:
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[0]&0xf < 5 {
			return p, errors.New("bad ipv4 header")
		}
		hl := int(ip[0]&0xf) * 4
		p.IPLen = int(binary.BigEndian.Uint16(ip[2:]))
		if p.IPLen < hl || p.IPLen > len(ip) {
			return p, fmt.Errorf("ipv4 total length %d, header %d, frame has %d", p.IPLen, hl, len(ip))
		}
		p.Src = netip.AddrFrom4([4]byte(ip[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(ip[16:20]))
		p.Proto, p.TTL = ip[9], ip[8]
		p.Fragment = binary.BigEndian.Uint16(ip[6:])&(IPv4MF|0x1fff) != 0
		p.L4Off = p.L3Off + hl
	case EtherTypeIPv6:
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return p, errors.New("bad ipv6 header")
		}
		p.IPLen = 40 + int(binary.BigEndian.Uint16(ip[4:]))
		if p.IPLen > len(ip) {
			return p, fmt.Errorf("ipv6 length %d, frame has %d", p.IPLen, len(ip))
		}
		p.Src = netip.AddrFrom16([16]byte(ip[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(ip[24:40]))
		p.Proto, p.TTL = ip[6], ip[7]
		p.L4Off = p.L3Off + 40
		if p.Proto == 44 {
			if p.IPLen < 48 {
				return p, errors.New("truncated ipv6 fragment header")
			}
			p.Proto = ip[40]
			p.Fragment = binary.BigEndian.Uint16(ip[42:])&0xfff9 != 0
			p.L4Off += 8
		}
	default:
		return p, fmt.Errorf("ethertype %#04x: %w", et, ErrNotIP)
	}
	return p, nil
}

// VerifyChecksums recomputes, over the whole packet, the IPv4 header
// checksum and the TCP, UDP, ICMP or ICMPv6 checksum (pseudo-header
// included where the protocol has one) of frame and reports any mismatch.
// An IPv4 UDP checksum of 0 (none) is accepted; an IPv6 one is not.
// Fragments get the IP check only. For an ICMP error (IPv4 types 3, 4, 11;
// ICMPv6 1, 2, 3) the quoted packet is checked too: its IPv4 header
// checksum if the header is quoted whole, its TCP/UDP checksum if the whole
// quoted datagram is.
func VerifyChecksums(frame []byte) error {
	p, err := ParseFrame(frame)
	if err != nil {
		return err
	}
	if p.Src.Is4() {
		hl := p.L4Off - p.L3Off
		if s := Checksum(frame[p.L3Off:p.L3Off+hl], 0); s != 0 {
			return fmt.Errorf("ipv4 header checksum off by %#04x", s)
		}
	}
	if p.Fragment {
		return nil
	}
	if p.L4Off > p.L3Off+p.IPLen {
		return errors.New("l4 offset beyond the ip packet")
	}
	l4 := frame[p.L4Off : p.L3Off+p.IPLen]
	switch {
	case p.Proto == ProtoICMP && p.Src.Is4(), p.Proto == ProtoICMPv6 && p.Src.Is6():
		return verifyICMP(p, l4)
	case p.Proto != ProtoTCP && p.Proto != ProtoUDP:
		return nil
	}
	return verifyL4(p.Src, p.Dst, p.Proto, l4)
}

// verifyL4 checks the TCP or UDP checksum of segment l4 from src to dst.
func verifyL4(src, dst netip.Addr, proto uint8, l4 []byte) error {
	switch {
	case proto == ProtoTCP && len(l4) < 20, proto == ProtoUDP && len(l4) < 8:
		return fmt.Errorf("truncated l4 header (%d bytes)", len(l4))
	case proto == ProtoUDP && binary.BigEndian.Uint16(l4[6:]) == 0:
		if src.Is4() {
			return nil
		}
		return errors.New("ipv6 udp checksum 0")
	}
	if s := Checksum(l4, pseudoSum(src, dst, proto, len(l4))); s != 0 {
		return fmt.Errorf("l4 checksum (proto %d) off by %#04x", proto, s)
	}
	return nil
}

// verifyICMP checks an ICMP or ICMPv6 message and, for an error, its quote.
func verifyICMP(p Packet, msg []byte) error {
	if len(msg) < 8 {
		return fmt.Errorf("truncated icmp header (%d bytes)", len(msg))
	}
	var init uint32
	if p.Src.Is6() {
		init = pseudoSum(p.Src, p.Dst, ProtoICMPv6, len(msg))
	}
	if s := Checksum(msg, init); s != 0 {
		return fmt.Errorf("icmp checksum off by %#04x", s)
	}
	t := msg[0]
	if p.Src.Is4() && t != ICMPDestUnreach && t != ICMPSourceQuench && t != ICMPTimeExceeded {
		return nil
	}
	if p.Src.Is6() && t != ICMP6DestUnreach && t != ICMP6PacketTooBig && t != ICMP6TimeExceeded {
		return nil
	}
	return verifyQuote(p.Src.Is4(), msg[8:])
}

// verifyQuote checks what can be checked of the quoted packet q.
func verifyQuote(v4 bool, q []byte) error {
	var src, dst netip.Addr
	var proto uint8
	var hl, tot int
	switch {
	case v4 && len(q) >= 20 && q[0]>>4 == 4:
		hl = int(q[0]&0xf) * 4
		if hl < 20 || len(q) < hl {
			return nil
		}
		if s := Checksum(q[:hl], 0); s != 0 {
			return fmt.Errorf("quoted ipv4 header checksum off by %#04x", s)
		}
		if binary.BigEndian.Uint16(q[6:])&(IPv4MF|0x1fff) != 0 {
			return nil
		}
		src, dst = netip.AddrFrom4([4]byte(q[12:16])), netip.AddrFrom4([4]byte(q[16:20]))
		proto, tot = q[9], int(binary.BigEndian.Uint16(q[2:]))
	case !v4 && len(q) >= 40 && q[0]>>4 == 6:
		hl = 40
		src, dst = netip.AddrFrom16([16]byte(q[8:24])), netip.AddrFrom16([16]byte(q[24:40]))
		proto, tot = q[6], 40+int(binary.BigEndian.Uint16(q[4:]))
	default:
		return nil
	}
	if (proto != ProtoTCP && proto != ProtoUDP) || tot < hl || tot > len(q) {
		return nil
	}
	if err := verifyL4(src, dst, proto, q[hl:tot]); err != nil {
		return fmt.Errorf("quoted packet: %w", err)
	}
	return nil
}

// Fragments splits the unfragmented IPv4 or IPv6 frame (no VLAN tag) into
// fragments whose data parts (the L4 header and payload) are at most size
// bytes, size a multiple of 8. IPv4 fragments keep the frame's
// identification and DF bit, set MF and the offset and get a new header
// checksum; IPv6 fragments get a fragment header with id. The L4 checksum
// is the whole datagram's, in the first fragment, as on the wire.
func Fragments(frame []byte, size int, id uint32) ([][]byte, error) {
	p, err := ParseFrame(frame)
	if err != nil {
		return nil, err
	}
	if p.L3Off != 14 || p.Fragment || size%8 != 0 || size <= 0 {
		return nil, errors.New("fragments: want an untagged, unfragmented frame and size a multiple of 8")
	}
	hdr, data := frame[:p.L4Off], frame[p.L4Off:p.L3Off+p.IPLen]
	var out [][]byte
	for off := 0; off < len(data); off += size {
		end := min(off+size, len(data))
		more := end < len(data)
		var b []byte
		if p.Src.Is4() {
			b = append(append([]byte(nil), hdr...), data[off:end]...)
			ip := b[p.L3Off:]
			binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
			fo := binary.BigEndian.Uint16(ip[6:])&IPv4DF | uint16(off/8)
			if more {
				fo |= IPv4MF
			}
			binary.BigEndian.PutUint16(ip[6:], fo)
			binary.BigEndian.PutUint16(ip[10:], 0)
			binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:p.L4Off-p.L3Off], 0))
		} else {
			fh := make([]byte, 8)
			fh[0] = p.Proto
			fo := uint16(off/8) << 3
			if more {
				fo |= 1
			}
			binary.BigEndian.PutUint16(fh[2:], fo)
			binary.BigEndian.PutUint32(fh[4:], id)
			b = append(append(append([]byte(nil), hdr...), fh...), data[off:end]...)
			ip := b[p.L3Off:]
			ip[6] = 44
			binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
		}
		out = append(out, b)
	}
	return out, nil
}
