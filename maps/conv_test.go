package maps

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"xvs/bpf"
)

// memOf returns the bytes the kernel would see for v.
func memOf[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

func TestSvcKeyRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		key      SvcKey
		wantAddr [16]byte
		wantPort [2]byte
		wantFam  uint8
	}{{
		name:     "tcp v4",
		key:      SvcKey{Proto: unix.IPPROTO_TCP, Addr: netip.MustParseAddrPort("202.103.106.5:80")},
		wantAddr: [16]byte{202, 103, 106, 5},
		wantPort: [2]byte{0, 80},
		wantFam:  2,
	}, {
		name:     "udp v6 high port",
		key:      SvcKey{Proto: unix.IPPROTO_UDP, Addr: netip.MustParseAddrPort("[2001:db8::5]:65534")},
		wantAddr: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 5},
		wantPort: [2]byte{0xff, 0xfe},
		wantFam:  10,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bk, err := svcKeyToBPF(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			mem := memOf(&bk)
			if got := [16]byte(mem[:16]); got != tt.wantAddr {
				t.Errorf("addr bytes %x, want %x", got, tt.wantAddr)
			}
			if got := [2]byte(mem[16:18]); got != tt.wantPort {
				t.Errorf("port bytes %x, want %x", got, tt.wantPort)
			}
			if bk.Proto != tt.key.Proto || bk.Family != tt.wantFam {
				t.Errorf("proto/family %d/%d, want %d/%d", bk.Proto, bk.Family, tt.key.Proto, tt.wantFam)
			}
			back, err := svcKeyFromBPF(bk)
			if err != nil {
				t.Fatal(err)
			}
			if back != tt.key {
				t.Errorf("round trip %+v, want %+v", back, tt.key)
			}
		})
	}
}

func TestMappedV4IsV4(t *testing.T) {
	k, err := svcKeyToBPF(SvcKey{Proto: 6, Addr: netip.MustParseAddrPort("[::ffff:10.0.0.1]:80")})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := svcKeyToBPF(SvcKey{Proto: 6, Addr: netip.MustParseAddrPort("10.0.0.1:80")})
	if k != want {
		t.Errorf("mapped key %+v, want %+v", k, want)
	}
}

func TestConnRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		conn Conn
		// wantClientKey/wantServerKey are the exact key bytes (40).
		wantClientKey []byte
		wantServerKey []byte
	}{{
		name: "tcp v4",
		conn: Conn{
			Proto:    unix.IPPROTO_TCP,
			Client:   netip.MustParseAddrPort("198.51.100.7:40000"),
			VIP:      netip.MustParseAddrPort("202.103.106.5:80"),
			Dest:     netip.MustParseAddrPort("172.16.0.2:8080"),
			State:    uint8(bpf.XvsTcpStateSTATE_ESTABLISHED),
			Flags:    uint8(bpf.XvsConnFlagsCONN_F_NEW),
			SvcID:    3,
			DestID:   65535,
			LastSeen: 123456789 * time.Microsecond,
		},
		wantClientKey: concat(
			[]byte{198, 51, 100, 7}, make([]byte, 12),
			[]byte{202, 103, 106, 5}, make([]byte, 12),
			[]byte{0x9c, 0x40, 0, 80, 6, 2, 0, 0}),
		wantServerKey: concat(
			[]byte{172, 16, 0, 2}, make([]byte, 12),
			[]byte{198, 51, 100, 7}, make([]byte, 12),
			[]byte{0x1f, 0x90, 0x9c, 0x40, 6, 2, 0, 0}),
	}, {
		name: "udp v6",
		conn: Conn{
			Proto:  unix.IPPROTO_UDP,
			Client: netip.MustParseAddrPort("[2001:db8:1::7]:53000"),
			VIP:    netip.MustParseAddrPort("[2001:db8::5]:53"),
			Dest:   netip.MustParseAddrPort("[fd00::2]:5353"),
			SvcID:  4095,
			DestID: 1,
		},
		wantClientKey: concat(
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7},
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5},
			[]byte{0xcf, 0x08, 0, 53, 17, 10, 0, 0}),
		wantServerKey: concat(
			[]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2},
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7},
			[]byte{0x14, 0xe9, 0xcf, 0x08, 17, 10, 0, 0}),
	}}
	m, _ := newTestMaps(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setDests(t, m, tt.conn)
			ck, sk, v, err := m.connToBPF(tt.conn)
			if err != nil {
				t.Fatal(err)
			}
			if got := memOf(&ck); string(got) != string(tt.wantClientKey) {
				t.Errorf("client key\n got %x\nwant %x", got, tt.wantClientKey)
			}
			if got := memOf(&sk); string(got) != string(tt.wantServerKey) {
				t.Errorf("server key\n got %x\nwant %x", got, tt.wantServerKey)
			}
			vm := memOf(&v)
			if port := [2]byte(vm[0:2]); port != [2]byte{byte(tt.conn.Dest.Port() >> 8), byte(tt.conn.Dest.Port())} {
				t.Errorf("dest port bytes %x", port)
			}
			back, err := m.connFromBPF(ck, v)
			if err != nil {
				t.Fatal(err)
			}
			if back != tt.conn {
				t.Errorf("round trip\n got %+v\nwant %+v", back, tt.conn)
			}
			if msk, ok := m.serverKeyOf(ck, v); !ok || sk != msk {
				t.Errorf("serverKeyOf = %+v, %v; connToBPF's %+v", msk, ok, sk)
			}
			if rv := rconnOf(ck, v); rv.SvcId != tt.conn.SvcID || portHost(rv.Vport) != tt.conn.VIP.Port() {
				t.Errorf("rconnOf = %+v", rv)
			}
			k2, err := connKeyToBPF(tt.conn.Proto, tt.conn.Client, tt.conn.VIP)
			if err != nil || k2 != ck {
				t.Errorf("connKeyToBPF = %+v, %v; want %+v", k2, err, ck)
			}
		})
	}
}

func TestConvErrors(t *testing.T) {
	v4 := netip.MustParseAddrPort("10.0.0.1:80")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:80")
	tests := []struct {
		name string
		conn Conn
	}{
		{name: "client v6 vip v4", conn: Conn{Proto: 6, Client: v6, VIP: v4, Dest: v4}},
		{name: "dest v6 vip v4", conn: Conn{Proto: 6, Client: v4, VIP: v4, Dest: v6}},
		{name: "zero client", conn: Conn{Proto: 6, VIP: v4, Dest: v4}},
		{name: "zoned client", conn: Conn{Proto: 6, Client: netip.MustParseAddrPort("[fe80::1%eth0]:1"), VIP: v6, Dest: v6}},
		// xvs_dests[1] is 10.0.0.1, [2] has no address, [3] is v6.
		{name: "dest not xvs_dests'", conn: Conn{Proto: 6, Client: v4, VIP: v4, Dest: netip.MustParseAddrPort("10.0.0.2:80"), DestID: 1}},
		{name: "dest without address", conn: Conn{Proto: 6, Client: v4, VIP: v4, Dest: v4, DestID: 2}},
		{name: "dest of another family", conn: Conn{Proto: 6, Client: v4, VIP: v4, Dest: v4, DestID: 3}},
		{name: "dest id out of range", conn: Conn{Proto: 6, Client: v4, VIP: v4, Dest: v4, DestID: 1 << 20}},
	}
	m, _ := newTestMaps(t)
	setDests(t, m, Conn{Dest: v4, DestID: 1}, Conn{Dest: v6, DestID: 3})
	if err := m.ResetDest(2); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := m.connToBPF(tt.conn); err == nil {
				t.Errorf("m.connToBPF(%+v) succeeded", tt.conn)
			}
		})
	}
	if _, err := addrFromBytes([16]byte{}, 7); err == nil {
		t.Error("addrFromBytes accepted family 7")
	}
	if _, err := svcKeyToBPF(SvcKey{Proto: 6}); err == nil {
		t.Error("svcKeyToBPF accepted a zero address")
	}
}

func TestPortBE(t *testing.T) {
	for _, p := range []uint16{0, 1, 80, 0x1234, 0xff00, 65535} {
		be := portBE(p)
		mem := memOf(&be)
		if mem[0] != byte(p>>8) || mem[1] != byte(p) {
			t.Errorf("portBE(%#x) memory %x", p, mem)
		}
		if got := portHost(be); got != p {
			t.Errorf("portHost(portBE(%#x)) = %#x", p, got)
		}
	}
}

func TestReasonName(t *testing.T) {
	seen := map[string]bool{}
	for r := range bpf.XvsReasonREASON_MAX {
		n := ReasonName(r)
		if n == "" || seen[n] || strings.HasPrefix(n, "reason_") {
			t.Errorf("reason %d: name %q empty, duplicate or missing from reasonNames", r, n)
		}
		seen[n] = true
	}
	for r, want := range map[bpf.XvsReason]string{
		bpf.XvsReasonREASON_FWD_IN:        "fwd_in",
		bpf.XvsReasonREASON_PUNT:          "punt",
		bpf.XvsReasonREASON_PASS_FRAGMENT: "pass_fragment",
		bpf.XvsReasonREASON_DROP_REDIRECT: "drop_redirect",
		bpf.XvsReasonREASON_MAX:           fmt.Sprintf("reason_%d", bpf.XvsReasonREASON_MAX),
	} {
		if got := ReasonName(r); got != want {
			t.Errorf("ReasonName(%d) = %q, want %q", r, got, want)
		}
	}
}

func TestActive(t *testing.T) {
	active := map[bpf.XvsTcpState]bool{
		bpf.XvsTcpStateSTATE_ESTABLISHED: true, bpf.XvsTcpStateSTATE_SYN_SENT: true,
		bpf.XvsTcpStateSTATE_SYN_RECV: true, bpf.XvsTcpStateSTATE_SYNACK: true,
	}
	for s := range bpf.XvsTcpStateSTATE_MAX {
		if got := Active(uint8(s)); got != active[s] {
			t.Errorf("Active(%d) = %v, want %v", s, got, active[s])
		}
	}
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
