package connsync

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// hexBytes decodes a hex dump: on each line, hex digits and spaces up to
// an optional "|" that starts a comment.
func hexBytes(t testing.TB, s string) []byte {
	t.Helper()
	var h strings.Builder
	for line := range strings.Lines(s) {
		line, _, _ = strings.Cut(line, "|")
		h.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(h.String())
	if err != nil {
		t.Fatalf("bad hex: %v", err)
	}
	return b
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// Golden messages, written field by field from reference 8.2.
const (
	// One IPv4 TCP ESTABLISHED conn, syncid 5.
	goldenTCP4 = `
		00 05 002c 01 01 0000                 | header: reserved, syncid 5, size 44, 1 conn, version 1, spare
		00 06 0024 00000000 0001              | type v4, proto TCP, ver 0 len 36, flags MASQ, state ESTABLISHED
		9c40 0050 1f90                        | cport 40000, vport 80, dport 8080
		00000000 00000384                     | fwmark 0, timeout 900
		c000020a c6336401 0a000002            | 192.0.2.10, 198.51.100.1, 10.0.0.2`

	// One IPv6 UDP conn, syncid 0.
	goldenUDP6 = `
		00 00 0050 01 01 0000                 | header: size 80, 1 conn
		01 11 0048 00000100 0000              | type v6, proto UDP, len 72, flags INACTIVE, state 0
		14e9 0035 0035                        | cport 5353, vport 53, dport 53
		00000000 0000012c                     | fwmark 0, timeout 300
		20010db8000000000000000000000010      | 2001:db8::10
		20010db8000000000000000000000001      | 2001:db8::1
		fd000000000000000000000000000002      | fd00::2`

	// A TCP conn with the sequence option, padded, then a fwmark
	// persistence template (flags 0x1000, protocol 0, vaddr = the mark).
	goldenSeqTemplate = `
		00 01 006c 02 01 0000                 | header: syncid 1, size 108, 2 conns
		00 06 003e 00000600 0001              | proto TCP, len 62, flags IN_SEQ|OUT_SEQ, ESTABLISHED
		9c41 0015 0015 00000000 00000384      | ports 40001 21 21, fwmark 0, timeout 900
		c000020b c6336401 0a000002            | 192.0.2.11, 198.51.100.1, 10.0.0.2
		01 18                                 | option 1 (seq data), 24 bytes
		11111111 00000010 00000008            | in_seq: init, delta, previous delta
		22222222 fffffff0 00000000            | out_seq
		0000                                  | padding to 4 bytes
		00 00 0024 00001000 0000              | proto 0, len 36, flags TEMPLATE, state NONE
		0000 0000 0000 00000007 00000168      | ports 0, fwmark 7, timeout 360
		c0000200 00000007 0a000003            | 192.0.2.0, 0.0.0.7, 10.0.0.3`

	// A UDP conn with persistence-engine data and name; the last record is
	// not padded.
	goldenPE = `
		00 00 0036 01 01 0000                 | header: size 54, 1 conn
		00 11 002e 00000100 0000              | proto UDP, len 46, flags INACTIVE
		13c4 13c4 13c4 00000000 0000012c      | ports 5060, timeout 300
		c000020c c6336401 0a000002            | 192.0.2.12, 198.51.100.1, 10.0.0.2
		02 03 616263                          | option 2 (pe data) "abc"
		03 03 736970                          | option 3 (pe name) "sip"`

	// A kernel version 0 datagram (sync_version=0) as an x86 master sends
	// it: sequence data in little-endian host order.
	goldenV0 = `
		02 03 004c                            | 2 conns, syncid 3, size 76
		00 06 9c40 0050 1f90                  | reserved, TCP, ports 40000 80 8080
		c000020a c6336401 0a000002 0000 0001  | addresses, flags MASQ, ESTABLISHED
		00 06 9c41 0015 0015                  | TCP, ports 40001 21 21
		c000020b c6336401 0a000002 0600 0004  | addresses, flags IN_SEQ|OUT_SEQ, FIN_WAIT
		11111111 10000000 08000000            | in_seq, host order
		22222222 f0ffffff 00000000            | out_seq, host order`
)

var (
	connTCP4 = Conn{
		Proto: ProtoTCP, Flags: FlagMasq, State: TCPEstablished,
		Client: ap("192.0.2.10:40000"), VIP: ap("198.51.100.1:80"), Dest: ap("10.0.0.2:8080"),
		Timeout: 900,
	}
	connUDP6 = Conn{
		Proto: ProtoUDP, Flags: FlagInactive, State: UDPNormal,
		Client: ap("[2001:db8::10]:5353"), VIP: ap("[2001:db8::1]:53"), Dest: ap("[fd00::2]:53"),
		Timeout: 300,
	}
	testSeq  = &SeqData{In: Seq{0x11111111, 0x10, 0x8}, Out: Seq{0x22222222, 0xfffffff0, 0}}
	connSeq4 = Conn{
		Proto: ProtoTCP, Flags: FlagSeqMask, State: TCPEstablished,
		Client: ap("192.0.2.11:40001"), VIP: ap("198.51.100.1:21"), Dest: ap("10.0.0.2:21"),
		Timeout: 900, Seq: testSeq,
	}
	connTemplate = Conn{
		Proto: ProtoNone, Flags: FlagTemplate, State: TemplateNone,
		Client: ap("192.0.2.0:0"), VIP: ap("0.0.0.7:0"), Dest: ap("10.0.0.3:0"),
		FwMark: 7, Timeout: 360,
	}
	connPE = Conn{
		Proto: ProtoUDP, Flags: FlagInactive, State: UDPNormal,
		Client: ap("192.0.2.12:5060"), VIP: ap("198.51.100.1:5060"), Dest: ap("10.0.0.2:5060"),
		Timeout: 300, PEData: []byte("abc"), PEName: "sip",
	}
)

var goldens = []struct {
	name   string
	hex    string
	syncid uint8
	conns  []Conn
}{
	{name: "ipv4 tcp established", hex: goldenTCP4, syncid: 5, conns: []Conn{connTCP4}},
	{name: "ipv6 udp", hex: goldenUDP6, syncid: 0, conns: []Conn{connUDP6}},
	{name: "seq option then template", hex: goldenSeqTemplate, syncid: 1, conns: []Conn{connSeq4, connTemplate}},
	{name: "pe data and name", hex: goldenPE, syncid: 0, conns: []Conn{connPE}},
}

func TestEncodeGolden(t *testing.T) {
	for _, tt := range goldens {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := Encode(tt.syncid, tt.conns, 1472)
			if err != nil {
				t.Fatal(err)
			}
			want := hexBytes(t, tt.hex)
			if len(msgs) != 1 || !bytes.Equal(msgs[0], want) {
				t.Fatalf("encode:\n got % x\nwant % x", msgs, want)
			}
		})
	}
}

func TestDecodeGolden(t *testing.T) {
	for _, tt := range goldens {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeMessage(hexBytes(t, tt.hex), tt.syncid)
			if err != nil {
				t.Fatal(err)
			}
			if m.Version != 1 || m.SyncID != tt.syncid || len(m.Skipped) != 0 {
				t.Errorf("version %d syncid %d skipped %v", m.Version, m.SyncID, m.Skipped)
			}
			if !reflect.DeepEqual(m.Conns, tt.conns) {
				t.Errorf("decode:\n got %+v\nwant %+v", m.Conns, tt.conns)
			}
		})
	}
}

func littleEndianHost() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

func TestDecodeV0Golden(t *testing.T) {
	if !littleEndianHost() {
		t.Skip("the golden v0 datagram carries little-endian host-order sequence data")
	}
	b := hexBytes(t, goldenV0)
	m, err := DecodeMessage(b, 3)
	if err != nil {
		t.Fatal(err)
	}
	c1 := connTCP4
	c1.Timeout = 0 // v0 carries none
	c2 := connSeq4
	c2.Timeout, c2.State = 0, TCPFinWait
	want := []Conn{c1, c2}
	if m.Version != 0 || m.SyncID != 3 || !reflect.DeepEqual(m.Conns, want) {
		t.Fatalf("decode v0: version %d syncid %d\n got %+v\nwant %+v", m.Version, m.SyncID, m.Conns, want)
	}
	// The v0 encoder (for tests against old masters) writes the same bytes.
	enc, err := EncodeV0(3, want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, b) {
		t.Errorf("EncodeV0:\n got % x\nwant % x", enc, b)
	}
	if got := DefaultTimeout(c2.Proto, c2.State, c2.Flags); got.Seconds() != 120 {
		t.Errorf("default FIN_WAIT timeout = %v, want 120s", got)
	}
}

func TestSyncIDFilter(t *testing.T) {
	b := hexBytes(t, goldenTCP4) // syncid 5
	for _, tt := range []struct {
		name    string
		own     uint8
		wantErr error
	}{
		{name: "zero accepts all", own: 0},
		{name: "same syncid", own: 5},
		{name: "other syncid", own: 6, wantErr: ErrSyncID},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conns, err := Decode(b, tt.own)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && len(conns) != 1 {
				t.Fatalf("got %d conns", len(conns))
			}
		})
	}
}

// withOptions appends raw option bytes to the (only or last) record of a
// version 1 message and fixes its record length and the message size.
func withOptions(t testing.TB, msg []byte, recOff int, opts ...byte) []byte {
	t.Helper()
	b := append(append([]byte(nil), msg...), opts...)
	n := binary.BigEndian.Uint16(b[recOff+2:])
	binary.BigEndian.PutUint16(b[recOff+2:], n+uint16(len(opts)))
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

func setSize(b []byte) []byte {
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

func TestDecodeRejects(t *testing.T) {
	tcp4 := hexBytes(t, goldenTCP4)
	two := hexBytes(t, goldenSeqTemplate)
	pe := hexBytes(t, goldenPE)
	v0 := hexBytes(t, goldenV0)
	mod := func(src []byte, f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), src...))
	}
	tests := []struct {
		name    string
		in      []byte
		wantErr error
		wantMsg string // substring of the error, when it matters
		own     uint8  // the backup's syncid
	}{
		{name: "empty", in: nil, wantErr: ErrShort},
		{name: "three bytes", in: []byte{0, 0, 0}, wantErr: ErrShort},
		{name: "size larger than datagram", in: mod(tcp4, func(b []byte) []byte { b[3]++; return b }), wantErr: ErrSize},
		{name: "size smaller than datagram", in: mod(tcp4, func(b []byte) []byte { b[3]--; return b }), wantErr: ErrSize},
		{name: "truncated record", in: mod(tcp4, func(b []byte) []byte { return setSize(b[:40]) }), wantErr: ErrRecord},
		{name: "count past end", in: mod(tcp4, func(b []byte) []byte { b[4] = 2; return b }), wantErr: ErrRecord},
		{name: "record length past end", in: mod(tcp4, func(b []byte) []byte { b[8+3] = 40; return b }), wantErr: ErrRecord},
		{name: "record length below fixed part", in: mod(tcp4, func(b []byte) []byte { b[8+3] = 32; return b }), wantErr: ErrRecord},
		{name: "record version nonzero", in: mod(tcp4, func(b []byte) []byte { b[8+2] = 0x10; return b }), wantErr: ErrRecord},
		{name: "ipv6 type on ipv4 length", in: mod(tcp4, func(b []byte) []byte { b[8] = 1; return b }), wantErr: ErrRecord},
		{name: "unknown type bits", in: mod(tcp4, func(b []byte) []byte { b[8] = 2; return b }), wantErr: ErrRecord},
		{name: "nonzero padding", in: mod(two, func(b []byte) []byte { b[8+62] = 1; return b }), wantErr: ErrRecord},
		{name: "trailing record-sized bytes", in: setSize(append(append([]byte(nil), tcp4...), 0, 0, 0, 0)), wantErr: ErrSize},
		{name: "trailing garbage", in: setSize(append(append([]byte(nil), pe...), 0xff, 0xff)), wantErr: ErrSize},
		{name: "option header cut", in: withOptions(t, tcp4, 8, 0x02), wantErr: ErrOption},
		{name: "option of length zero", in: withOptions(t, tcp4, 8, 0x02, 0x00), wantErr: ErrOption},
		{name: "option past record end", in: withOptions(t, tcp4, 8, 0x02, 0x05, 'a'), wantErr: ErrOption},
		{name: "seq option wrong length", in: withOptions(t, tcp4, 8, 0x01, 0x04, 0, 0, 0, 0), wantErr: ErrOption},
		{name: "seq option twice", in: withOptions(t, two[:8+62], 8, append([]byte{0x01, 24}, make([]byte, 24)...)...), wantErr: ErrOption},
		{name: "pe name too long", in: withOptions(t, tcp4, 8, append([]byte{0x03, 17}, bytes.Repeat([]byte{'x'}, 17)...)...), wantErr: ErrOption},
		{name: "pe data twice", in: withOptions(t, pe, 8, 0x02, 0x01, 'x'), wantErr: ErrOption},
		{name: "unknown protocol", in: mod(tcp4, func(b []byte) []byte { b[8+1] = 1; return b }), wantErr: ErrProto},
		{name: "protocol 0 without template", in: mod(tcp4, func(b []byte) []byte { b[8+1] = 0; return b }), wantErr: ErrProto},
		{name: "template of unknown protocol", in: mod(two, func(b []byte) []byte { b[8+64+1] = 47; return b }), wantErr: ErrProto},
		{name: "tcp state past SYNACK", in: mod(tcp4, func(b []byte) []byte { b[8+9] = 11; return b }), wantErr: ErrState},
		{name: "udp state 1", in: mod(pe, func(b []byte) []byte { b[8+9] = 1; return b }), wantErr: ErrState},
		{name: "template state 2", in: mod(two, func(b []byte) []byte { b[8+64+9] = 2; return b }), wantErr: ErrState},
		{name: "bad second record rejects the first too", in: mod(two, func(b []byte) []byte { b[8+64+1] = 99; return b }), wantErr: ErrProto},
		{name: "wrong syncid", in: mod(tcp4, func(b []byte) []byte { b[1] = 9; return b }), own: 5, wantErr: ErrSyncID},
		// Not version 1 (reserved, version or spare): parsed as version 0.
		{name: "nonzero reserved parsed as v0", in: mod(tcp4, func(b []byte) []byte { b[0] = 1; return b }), wantErr: ErrRecord, wantMsg: "version 0"},
		{name: "version 2 parsed as v0", in: mod(tcp4, func(b []byte) []byte { b[5] = 2; return b }), wantErr: ErrSize, wantMsg: "version 0"},
		{name: "nonzero spare parsed as v0", in: mod(tcp4, func(b []byte) []byte { b[7] = 1; return b }), wantErr: ErrSize, wantMsg: "version 0"},
		{name: "v0 record past end", in: mod(v0, func(b []byte) []byte { return setSize(b[:20]) }), wantErr: ErrRecord},
		{name: "v0 seq data past end", in: mod(v0, func(b []byte) []byte { return setSize(b[:len(b)-10]) }), wantErr: ErrRecord},
		{name: "v0 reserved byte", in: mod(v0, func(b []byte) []byte { b[4] = 1; return b }), wantErr: ErrRecord},
		{name: "v0 unknown protocol", in: mod(v0, func(b []byte) []byte { b[4+1] = 2; return b }), wantErr: ErrProto},
		{name: "v0 bad state", in: mod(v0, func(b []byte) []byte { b[4+23] = 200; return b }), wantErr: ErrState},
		{name: "v0 trailing bytes", in: setSize(append(append([]byte(nil), v0...), 0)), wantErr: ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeMessage(tt.in, tt.own)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to mention %q", err, tt.wantMsg)
			}
			if m.Conns != nil {
				t.Errorf("rejected datagram still gave conns %+v", m.Conns)
			}
		})
	}
}

func TestDecodeSkipsRecords(t *testing.T) {
	tcp4 := hexBytes(t, goldenTCP4)
	pe := hexBytes(t, goldenPE)
	noName := pe[:len(pe)-5] // drop the pe name option
	binary.BigEndian.PutUint16(noName[8+2:], 41)
	setSize(noName)
	tests := []struct {
		name        string
		in          []byte
		wantConns   int
		wantSkipped error
	}{
		{name: "unknown mandatory option skips the record", in: withOptions(t, tcp4, 8, 0x05, 0x01, 0), wantSkipped: ErrUnknownOption},
		{name: "unknown optional option is ignored", in: withOptions(t, tcp4, 8, 0x45, 0x01, 0), wantConns: 1},
		{name: "optional flag on a known option still parses it", in: withOptions(t, tcp4, 8, 0x43, 0x01, 'x'), wantConns: 1},
		{name: "pe data without engine name", in: noName, wantSkipped: ErrPEData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeMessage(tt.in, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Conns) != tt.wantConns {
				t.Errorf("%d conns, want %d", len(m.Conns), tt.wantConns)
			}
			if tt.wantSkipped == nil && len(m.Skipped) != 0 || tt.wantSkipped != nil && (len(m.Skipped) != 1 || !errors.Is(m.Skipped[0], tt.wantSkipped)) {
				t.Errorf("skipped %v, want %v", m.Skipped, tt.wantSkipped)
			}
		})
	}
}

func TestDecodeToleratesFinalPadding(t *testing.T) {
	b := setSize(append(hexBytes(t, goldenPE), 0, 0)) // 54 -> 56 bytes
	conns, err := Decode(b, 0)
	if err != nil || !reflect.DeepEqual(conns, []Conn{connPE}) {
		t.Fatalf("Decode = %+v, %v", conns, err)
	}
}

func manyConns(n int) []Conn {
	var out []Conn
	for i := range n {
		c := Conn{
			Proto: ProtoTCP, State: TCPEstablished, Timeout: 900,
			Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, byte(2 + i/250), byte(1 + i%250)}), uint16(1024+i)),
			VIP:    ap("198.51.100.1:80"),
			Dest:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(2 + i%3)}), 80),
		}
		switch i % 5 {
		case 1:
			c.Proto, c.State, c.Timeout, c.Flags = ProtoUDP, UDPNormal, 300, FlagInactive
			c.Client = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}), uint16(i))
			c.VIP, c.Dest = ap("[2001:db8::1]:53"), ap("[fd00::2]:53")
		case 2:
			c.Flags, c.Seq = FlagSeqMask, &SeqData{In: Seq{uint32(i), 1, 2}, Out: Seq{3, 4, uint32(i)}}
		case 3:
			c.Flags, c.Proto, c.State, c.Timeout = FlagTemplate, ProtoTCP, TemplateAssured, 360
			c.Client = netip.AddrPortFrom(c.Client.Addr(), 0)
		case 4:
			c.Proto, c.State = ProtoSCTP, SCTPEstablished
			c.PEData, c.PEName = []byte{byte(i), 1, 2}, "sip"
		}
		out = append(out, c)
	}
	return out
}

func decodeAll(t testing.TB, msgs [][]byte) []Conn {
	t.Helper()
	var out []Conn
	for i, m := range msgs {
		conns, err := Decode(m, 0)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		out = append(out, conns...)
	}
	return out
}

func TestEncodeSplits(t *testing.T) {
	tests := []struct {
		name     string
		conns    []Conn
		maxLen   int
		wantMsgs int
	}{
		{name: "one conn", conns: manyConns(1), maxLen: 1472, wantMsgs: 1},
		{name: "mixed records", conns: manyConns(300), maxLen: 1472},
		{name: "maxlen below one record", conns: manyConns(7), maxLen: 10, wantMsgs: 7},
		{name: "count capped at 255", conns: manyConns(300), maxLen: 65507},
		{name: "empty", conns: nil, maxLen: 1472, wantMsgs: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := Encode(9, tt.conns, tt.maxLen)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantMsgs != 0 || len(tt.conns) == 0 {
				if len(msgs) != tt.wantMsgs {
					t.Errorf("%d messages, want %d", len(msgs), tt.wantMsgs)
				}
			}
			for i, m := range msgs {
				if m[4] == 0 {
					t.Errorf("message %d is empty", i)
				}
				if m[4] > 1 && len(m) > tt.maxLen {
					t.Errorf("message %d: %d bytes > maxlen %d with %d records", i, len(m), tt.maxLen, m[4])
				}
				if m[1] != 9 {
					t.Errorf("message %d: syncid %d", i, m[1])
				}
			}
			if got := decodeAll(t, msgs); !reflect.DeepEqual(got, tt.conns) && len(tt.conns) > 0 {
				t.Errorf("round trip lost conns: got %d, want %d", len(got), len(tt.conns))
			}
		})
	}
	// Exact split of plain IPv4 records: (1472-8)/36 = 40 per message.
	var plain []Conn
	for _, c := range manyConns(500) {
		if c.Proto == ProtoTCP && c.Flags == 0 {
			plain = append(plain, c)
		}
	}
	plain = plain[:100]
	msgs, err := Encode(0, plain, 1472)
	if err != nil {
		t.Fatal(err)
	}
	var counts []int
	for _, m := range msgs {
		counts = append(counts, int(m[4]))
	}
	if !reflect.DeepEqual(counts, []int{40, 40, 20}) || len(msgs[0]) != 8+40*36 {
		t.Errorf("split %v (first %d bytes), want [40 40 20] of 1448 bytes", counts, len(msgs[0]))
	}
	// 300 conns with room for all: 255 then 45.
	msgs, err = Encode(0, manyConns(300), 65507)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0][4] != 255 || msgs[1][4] != 45 {
		t.Errorf("count cap: %d messages", len(msgs))
	}
}

func TestEncodeRefuses(t *testing.T) {
	mixed := connTCP4
	mixed.Dest = ap("[fd00::2]:80")
	longData := connPE
	longData.PEData = make([]byte, 256)
	longName := connPE
	longName.PEName = strings.Repeat("n", 17)
	badProto := connTCP4
	badProto.Proto = 47
	badState := connTCP4
	badState.State = 42
	zero := Conn{Proto: ProtoTCP}
	for _, tt := range []struct {
		name    string
		c       Conn
		wantErr error
	}{
		{name: "mixed families", c: mixed, wantErr: ErrAddr},
		{name: "zero addresses", c: zero, wantErr: ErrAddr},
		{name: "pe data too long", c: longData, wantErr: ErrOption},
		{name: "pe name too long", c: longName, wantErr: ErrOption},
		{name: "unknown protocol", c: badProto, wantErr: ErrProto},
		{name: "bad state", c: badState, wantErr: ErrState},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := Encode(0, []Conn{connTCP4, tt.c}, 1472)
			if !errors.Is(err, tt.wantErr) || msgs != nil {
				t.Fatalf("Encode = %d messages, %v; want %v", len(msgs), err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "conn 1") {
				t.Errorf("error %q does not name the conn", err)
			}
		})
	}
}

func TestRoundTripHashedCleared(t *testing.T) {
	c := connTCP4
	c.Flags |= FlagHashed | FlagNoOutput
	msgs, err := Encode(0, []Conn{c}, 1472)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeAll(t, msgs)
	if len(got) != 1 || got[0].Flags != FlagNoOutput {
		t.Fatalf("flags %#x, want %#x", got[0].Flags, FlagNoOutput)
	}
}

func BenchmarkEncode(b *testing.B) {
	conns := manyConns(1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(0, conns, 1472); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(conns)), "ns/conn")
}

func BenchmarkDecode(b *testing.B) {
	conns := manyConns(1000)
	msgs, err := Encode(0, conns, 1472)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range msgs {
			if _, err := Decode(m, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(conns)), "ns/conn")
}
