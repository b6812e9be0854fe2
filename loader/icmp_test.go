package loader

import (
	"bytes"
	"net/netip"
	"testing"

	"xvs/testutil"
)

func TestPortUnreachable(t *testing.T) {
	tests := []struct {
		name      string
		frame     testutil.Frame
		wantType  byte
		wantCode  byte
		wantQuote int
	}{
		{
			name:     "ipv4 tcp syn",
			frame:    testutil.Frame{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("10.0.0.1"), SrcPort: 40000, DstPort: 80, TCPFlags: testutil.TCPSyn},
			wantType: 3, wantCode: 3, wantQuote: 40,
		},
		{
			name:     "ipv4 udp, long payload is cut",
			frame:    testutil.Frame{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("10.0.0.1"), Proto: testutil.ProtoUDP, SrcPort: 5353, DstPort: 53, Payload: make([]byte, 1000)},
			wantType: 3, wantCode: 3, wantQuote: icmp4Quote,
		},
		{
			name:     "ipv6 udp in a vlan",
			frame:    testutil.Frame{VLAN: true, VLANID: 7, Src: netip.MustParseAddr("2001:db8:1::2"), Dst: netip.MustParseAddr("2001:db8::5"), Proto: testutil.ProtoUDP, SrcPort: 5353, DstPort: 53, Payload: []byte("q")},
			wantType: 1, wantCode: 4, wantQuote: 40 + 8 + 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.frame.Bytes()
			msg, src, dst, err := PortUnreachable(b)
			if err != nil {
				t.Fatal(err)
			}
			if src != tt.frame.Dst || dst != tt.frame.Src {
				t.Errorf("from %v to %v, want from the VIP %v to the client %v", src, dst, tt.frame.Dst, tt.frame.Src)
			}
			if msg[0] != tt.wantType || msg[1] != tt.wantCode {
				t.Errorf("type %d code %d, want %d %d", msg[0], msg[1], tt.wantType, tt.wantCode)
			}
			if got := len(msg) - 8; got != tt.wantQuote {
				t.Errorf("quotes %d bytes, want %d", got, tt.wantQuote)
			}
			if !bytes.Equal(msg[8:], b[ipOffset(b):ipOffset(b)+len(msg)-8]) {
				t.Error("quote is not the start of the original datagram")
			}
			if src.Is4() && inetChecksum(msg) != 0 {
				t.Error("ICMP checksum does not verify")
			}
		})
	}
	if _, _, _, err := PortUnreachable([]byte{1, 2, 3}); err == nil {
		t.Error("truncated frame accepted")
	}
}
