package loader

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// frame builds an Ethernet frame; vlan 0 means untagged. IP checksums are
// irrelevant to ParseFrame and left zero.
type frameSpec struct {
	vlan     uint16
	src, dst netip.AddrPort
	proto    uint8
	flags    uint8 // TCP flags
	ihl      int   // IPv4 header length in bytes, default 20
	frag     uint16
	payload  int
}

func (s frameSpec) build() []byte {
	b := make([]byte, 12, 128)
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 2})
	if s.vlan != 0 {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, s.vlan)
	}
	var l4 []byte
	switch s.proto {
	case unix.IPPROTO_TCP:
		l4 = make([]byte, 20)
		l4[12] = 5 << 4
		l4[13] = s.flags
	case unix.IPPROTO_UDP:
		l4 = make([]byte, 8)
	default:
		l4 = make([]byte, 8)
	}
	binary.BigEndian.PutUint16(l4[0:2], s.src.Port())
	binary.BigEndian.PutUint16(l4[2:4], s.dst.Port())
	l4 = append(l4, make([]byte, s.payload)...)
	if s.src.Addr().Is4() {
		ihl := s.ihl
		if ihl == 0 {
			ihl = 20
		}
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		ip := make([]byte, ihl)
		ip[0] = 0x40 | byte(ihl/4)
		binary.BigEndian.PutUint16(ip[2:4], uint16(ihl+len(l4)))
		binary.BigEndian.PutUint16(ip[6:8], s.frag)
		ip[8] = 64
		ip[9] = s.proto
		src, dst := s.src.Addr().As4(), s.dst.Addr().As4()
		copy(ip[12:16], src[:])
		copy(ip[16:20], dst[:])
		b = append(b, ip...)
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:6], uint16(len(l4)))
		ip[6] = s.proto
		ip[7] = 64
		src, dst := s.src.Addr().As16(), s.dst.Addr().As16()
		copy(ip[8:24], src[:])
		copy(ip[24:40], dst[:])
		b = append(b, ip...)
	}
	return append(b, l4...)
}

var (
	cli4 = netip.MustParseAddrPort("198.51.100.7:40000")
	vip4 = netip.MustParseAddrPort("202.103.106.5:80")
	cli6 = netip.MustParseAddrPort("[2001:db8:1::7]:53000")
	vip6 = netip.MustParseAddrPort("[2001:db8::5]:53")
)

const (
	synFlag = 0x02
	ackFlag = 0x10
)

func TestParseFrame(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Frame
		wantErr error
	}{{
		name: "tcp syn v4",
		in:   frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_TCP, flags: synFlag}.build(),
		want: Frame{Proto: unix.IPPROTO_TCP, Src: cli4, Dst: vip4, Family: unix.AF_INET, TCPFlags: synFlag},
	}, {
		name: "udp v4 with payload",
		in:   frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_UDP, payload: 100}.build(),
		want: Frame{Proto: unix.IPPROTO_UDP, Src: cli4, Dst: vip4, Family: unix.AF_INET},
	}, {
		name: "tcp v4 with ip options",
		in:   frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_TCP, flags: synFlag | ackFlag, ihl: 24}.build(),
		want: Frame{Proto: unix.IPPROTO_TCP, Src: cli4, Dst: vip4, Family: unix.AF_INET, TCPFlags: synFlag | ackFlag},
	}, {
		name: "tcp v4 in vlan",
		in:   frameSpec{vlan: 100, src: cli4, dst: vip4, proto: unix.IPPROTO_TCP, flags: synFlag}.build(),
		want: Frame{Proto: unix.IPPROTO_TCP, Src: cli4, Dst: vip4, Family: unix.AF_INET, TCPFlags: synFlag},
	}, {
		name: "udp v6",
		in:   frameSpec{src: cli6, dst: vip6, proto: unix.IPPROTO_UDP}.build(),
		want: Frame{Proto: unix.IPPROTO_UDP, Src: cli6, Dst: vip6, Family: unix.AF_INET6},
	}, {
		name: "tcp syn v6 in vlan",
		in:   frameSpec{vlan: 7, src: cli6, dst: vip6, proto: unix.IPPROTO_TCP, flags: synFlag}.build(),
		want: Frame{Proto: unix.IPPROTO_TCP, Src: cli6, Dst: vip6, Family: unix.AF_INET6, TCPFlags: synFlag},
	}, {
		name:    "empty",
		in:      nil,
		wantErr: ErrTruncated,
	}, {
		name:    "arp",
		in:      append(append(make([]byte, 12), 0x08, 0x06), make([]byte, 28)...),
		wantErr: ErrUnsupported,
	}, {
		name:    "icmp v4",
		in:      frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_ICMP}.build(),
		wantErr: ErrUnsupported,
	}, {
		name:    "v6 extension header",
		in:      frameSpec{src: cli6, dst: vip6, proto: 0 /* hop-by-hop */}.build(),
		wantErr: ErrUnsupported,
	}, {
		name:    "v4 first fragment",
		in:      frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_UDP, frag: 0x2000}.build(),
		wantErr: ErrUnsupported,
	}, {
		name:    "v4 later fragment",
		in:      frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_UDP, frag: 0x0010}.build(),
		wantErr: ErrUnsupported,
	}, {
		name:    "v4 ihl below 5",
		in:      setByte(frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_TCP}.build(), 14, 0x44),
		wantErr: ErrUnsupported,
	}, {
		name:    "v4 header says v6",
		in:      setByte(frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_TCP}.build(), 14, 0x65),
		wantErr: ErrUnsupported,
	}, {
		name:    "tcp data offset below 5",
		in:      setByte(frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_TCP}.build(), 14+20+12, 0x40),
		wantErr: ErrUnsupported,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFrame(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseFrame error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ParseFrame\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestParseFrameTruncations cuts valid frames at every length short of the
// end of their L4 header: each must fail as truncated, never panic.
func TestParseFrameTruncations(t *testing.T) {
	tests := []struct {
		name  string
		frame frameSpec
		l4End int // offset where the TCP/UDP header ends
	}{
		{name: "tcp v4", frame: frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_TCP}, l4End: 14 + 20 + 20},
		{name: "udp v4 options", frame: frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_UDP, ihl: 60}, l4End: 14 + 60 + 8},
		{name: "tcp v6 vlan", frame: frameSpec{vlan: 5, src: cli6, dst: vip6, proto: unix.IPPROTO_TCP}, l4End: 18 + 40 + 20},
		{name: "udp v6", frame: frameSpec{src: cli6, dst: vip6, proto: unix.IPPROTO_UDP}, l4End: 14 + 40 + 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			full := tt.frame.build()
			if _, err := ParseFrame(full[:tt.l4End]); err != nil {
				t.Fatalf("frame ending with its L4 header: %v", err)
			}
			for n := range tt.l4End {
				if _, err := ParseFrame(full[:n]); !errors.Is(err, ErrTruncated) {
					t.Fatalf("cut at %d of %d: error %v, want ErrTruncated", n, tt.l4End, err)
				}
			}
		})
	}
}

func FuzzParseFrame(f *testing.F) {
	f.Add(frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_TCP, flags: synFlag}.build())
	f.Add(frameSpec{vlan: 3, src: cli6, dst: vip6, proto: unix.IPPROTO_UDP}.build())
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err == nil && (fr.Proto != unix.IPPROTO_TCP && fr.Proto != unix.IPPROTO_UDP) {
			t.Fatalf("accepted protocol %d", fr.Proto)
		}
	})
}

func TestSetDstMAC(t *testing.T) {
	mac := net.HardwareAddr{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	b := frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_TCP}.build()
	orig := append([]byte(nil), b...)
	SetDstMAC(b, mac)
	if string(b[:6]) != string(mac) || string(b[6:]) != string(orig[6:]) {
		t.Errorf("SetDstMAC changed %x -> %x", orig[:14], b[:14])
	}
	short := []byte{1, 2, 3}
	SetDstMAC(short, mac)
	if string(short) != "\x01\x02\x03" {
		t.Errorf("short frame changed: %x", short)
	}
}

func setByte(b []byte, i int, v byte) []byte {
	b[i] = v
	return b
}

func TestParseLinkPin(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		mode   Mode
		ifname string
		ok     bool
	}{
		{name: "xdp", file: linkPinName(ModeXDP, "eth0"), mode: ModeXDP, ifname: "eth0", ok: true},
		{name: "generic with underscore", file: linkPinName(ModeXDPGeneric, "my_if"), mode: ModeXDPGeneric, ifname: "my_if", ok: true},
		{name: "tc", file: linkPinName(ModeTC, "xvs0"), mode: ModeTC, ifname: "xvs0", ok: true},
		{name: "map pin", file: "xvs_conns"},
		{name: "unknown mode", file: "link_foo_eth0"},
		{name: "no ifname", file: "link_tc_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mode, ifname, ok := parseLinkPin(tt.file)
			if ok != tt.ok || mode != tt.mode || ifname != tt.ifname {
				t.Errorf("parseLinkPin(%q) = %q, %q, %v", tt.file, mode, ifname, ok)
			}
		})
	}
}
