package tests

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xvs/testutil"
)

// Case 13 sends hand-made frames from an AF_PACKET socket in the client
// namespace straight at the director's external interface and watches, with
// an AF_PACKET socket on every real server, what comes out on the other
// side. Every frame carries a marker in the IPv4 ID field (a NAT rewrite
// does not change it), so the sniffers can tell test frames from the rest.

const markerBase = 0xBA00

type badFrame struct {
	name string
	id   uint16 // IPv4 ID marker, 0 for a frame without an IP header
	// malformed frames must never reach a real server; well-formed ones
	// (fragments, IP options) may, but only correctly rewritten.
	malformed bool
	frames    [][]byte // the Ethernet payloads (one, or the fragments)
}

var (
	cliIP = [4]byte{202, 103, 106, 100}
	vipIP = [4]byte{202, 103, 106, 5}
)

// ip4 builds an IPv4 header (with options) followed by payload. totLen 0
// means the real length; the header checksum is computed over the header
// bytes present.
func ip4(ihl int, totLen int, id uint16, frag uint16, proto byte, opts, payload []byte) []byte {
	h := make([]byte, 20+len(opts))
	h[0] = 0x40 | byte(ihl&0x0f)
	if totLen == 0 {
		totLen = len(h) + len(payload)
	}
	binary.BigEndian.PutUint16(h[2:], uint16(totLen))
	binary.BigEndian.PutUint16(h[4:], id)
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8] = 64
	h[9] = proto
	copy(h[12:], cliIP[:])
	copy(h[16:], vipIP[:])
	copy(h[20:], opts)
	binary.BigEndian.PutUint16(h[10:], csum(h, 0))
	return append(h, payload...)
}

// tcpSyn builds a SYN from the client to the VIP with a valid checksum;
// doff 0 means 5.
func tcpSyn(sport, dport uint16, doff int) []byte {
	if doff == 0 {
		doff = 5
	}
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], 0x01020304)
	b[12] = byte(doff << 4)
	b[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(b[14:], 64240)
	binary.BigEndian.PutUint16(b[16:], l4csum(cliIP, vipIP, unix.IPPROTO_TCP, b))
	return b
}

func udpDgram(sport, dport uint16, length int, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(length))
	copy(b[8:], payload)
	return b
}

// csum is the Internet checksum of b added to a partial sum.
func csum(b []byte, sum uint32) uint16 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// l4csum is the TCP/UDP checksum over the IPv4 pseudo-header and seg.
func l4csum(src, dst [4]byte, proto byte, seg []byte) uint16 {
	var sum uint32
	for _, a := range [][4]byte{src, dst} {
		sum += uint32(binary.BigEndian.Uint16(a[0:])) + uint32(binary.BigEndian.Uint16(a[2:]))
	}
	sum += uint32(proto) + uint32(len(seg))
	return csum(seg, sum)
}

func badFrames() []badFrame {
	id := func(i int) uint16 { return uint16(markerBase + i) }
	syn := tcpSyn(40000, 80, 0)
	fragSyn := tcpSyn(40013, 80, 0)
	nops := []byte{1, 1, 1, 1}
	return []badFrame{
		{name: "ethernet header only", malformed: true, frames: [][]byte{{}}},
		{name: "ip header truncated", id: id(1), malformed: true, frames: [][]byte{ip4(5, 0, id(1), 0, unix.IPPROTO_TCP, nil, syn)[:12]}},
		{name: "ihl below 5", id: id(2), malformed: true, frames: [][]byte{ip4(4, 0, id(2), 0, unix.IPPROTO_TCP, nil, syn)}},
		{name: "ihl beyond packet", id: id(3), malformed: true, frames: [][]byte{ip4(15, 0, id(3), 0, unix.IPPROTO_TCP, nil, syn)}},
		{name: "total length beyond frame", id: id(4), malformed: true, frames: [][]byte{ip4(5, 1000, id(4), 0, unix.IPPROTO_TCP, nil, syn)}},
		{name: "total length below header", id: id(5), malformed: true, frames: [][]byte{ip4(5, 16, id(5), 0, unix.IPPROTO_TCP, nil, syn)}},
		{name: "tcp header truncated", id: id(6), malformed: true, frames: [][]byte{ip4(5, 0, id(6), 0, unix.IPPROTO_TCP, nil, syn[:8])}},
		{name: "tcp data offset below 5", id: id(7), malformed: true, frames: [][]byte{ip4(5, 0, id(7), 0, unix.IPPROTO_TCP, nil, tcpSyn(40007, 80, 4))}},
		{name: "tcp data offset beyond packet", id: id(8), malformed: true, frames: [][]byte{ip4(5, 0, id(8), 0, unix.IPPROTO_TCP, nil, tcpSyn(40008, 80, 15))}},
		{name: "ip version 6 in an ipv4 frame", id: id(9), malformed: true, frames: [][]byte{func() []byte {
			b := ip4(5, 0, id(9), 0, unix.IPPROTO_TCP, nil, tcpSyn(40009, 80, 0))
			b[0] = 0x65
			return b
		}()}},
		{name: "udp length beyond packet", id: id(10), malformed: true, frames: [][]byte{ip4(5, 0, id(10), 0, unix.IPPROTO_UDP, nil, udpDgram(40010, 53, 200, []byte("short")))}},
		{name: "udp length below 8", id: id(11), malformed: true, frames: [][]byte{ip4(5, 0, id(11), 0, unix.IPPROTO_UDP, nil, udpDgram(40011, 53, 4, []byte("short")))}},
		// A frame with one 802.1Q tag is not bad traffic: the datapath
		// handles one tag (issue 2) and forwards it like an untagged one.
		{name: "syn in two fragments", id: id(13), frames: [][]byte{
			ip4(5, 0, id(13), 0x2000, unix.IPPROTO_TCP, nil, fragSyn[:8]), // MF, offset 0
			ip4(5, 0, id(13), 1, unix.IPPROTO_TCP, nil, fragSyn[8:]),      // offset 8 bytes
		}},
		{name: "lone later fragment", id: id(14), frames: [][]byte{ip4(5, 0, id(14), 100, unix.IPPROTO_TCP, nil, make([]byte, 64))}},
		{name: "syn with ip options", id: id(15), frames: [][]byte{ip4(6, 0, id(15), 0, unix.IPPROTO_TCP, nops, tcpSyn(40015, 80, 0))}},
	}
}

// sniffed is a frame with a marker seen on a real server.
type sniffed struct {
	server string
	frame  []byte // from the Ethernet header on
}

// sniffer captures incoming frames on a real server's interface.
type sniffer struct {
	fd   int
	name string
	mu   sync.Mutex
	got  []sniffed
	stop chan struct{}
	done chan struct{}
}

func startSniffer(t *testing.T, ns *testutil.NetNS, name string) *sniffer {
	t.Helper()
	s := &sniffer{name: name, stop: make(chan struct{}), done: make(chan struct{})}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(testutil.HostIf)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket: %w", err)
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		s.fd = fd
		return nil
	})
	if err != nil {
		t.Fatalf("sniffer in %s: %v", ns.Name, err)
	}
	go func() {
		defer close(s.done)
		defer unix.Close(s.fd)
		buf := make([]byte, 65536)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			n, from, err := unix.Recvfrom(s.fd, buf, 0)
			if err != nil {
				continue // timeout: look at stop again
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if _, ok := markerOf(buf[:n]); ok {
				s.mu.Lock()
				s.got = append(s.got, sniffed{server: name, frame: slices.Clone(buf[:n])})
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *sniffer) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

func (s *sniffer) frames() []sniffed {
	s.close()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

// markerOf returns the IPv4 ID of a frame from the client that carries a
// test marker, looking through one VLAN tag.
func markerOf(f []byte) (uint16, bool) {
	ip, ok := ipOf(f)
	if !ok || len(ip) < 20 || !slices.Equal(ip[12:16], cliIP[:]) {
		return 0, false
	}
	id := binary.BigEndian.Uint16(ip[4:])
	return id, id >= markerBase && id < markerBase+0x20
}

func ipOf(f []byte) ([]byte, bool) {
	if len(f) < 14 {
		return nil, false
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case unix.ETH_P_IP:
		return f[14:], true
	case unix.ETH_P_8021Q:
		if len(f) >= 18 && binary.BigEndian.Uint16(f[16:]) == unix.ETH_P_IP {
			return f[18:], true
		}
	}
	return nil, false
}

// rewrittenCorrectly says why a well-formed test frame that reached a real
// server is not a correct NAT of what the client sent, or "" if it is.
func rewrittenCorrectly(f []byte, servers []netip.Addr) string {
	if binary.BigEndian.Uint16(f[12:]) != unix.ETH_P_IP {
		return "not an untagged IPv4 frame"
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[0]>>4 != 4 || ihl < 20 || tot < ihl || tot > len(ip) {
		return "malformed IPv4 header"
	}
	if csum(ip[:ihl], 0) != 0 {
		return "bad IPv4 header checksum"
	}
	dst, _ := netip.AddrFromSlice(ip[16:20])
	if !slices.Contains(servers, dst) {
		return fmt.Sprintf("destination %s is not a real server", dst)
	}
	frag := binary.BigEndian.Uint16(ip[6:])
	if frag&0x3fff == 0 && ip[9] == unix.IPPROTO_TCP { // a whole TCP segment
		seg := ip[ihl:tot]
		var src, d4 [4]byte
		copy(src[:], ip[12:16])
		copy(d4[:], ip[16:20])
		if len(seg) < 20 || l4csum(src, d4, unix.IPPROTO_TCP, seg) != 0 {
			return "bad TCP checksum"
		}
		if binary.BigEndian.Uint16(seg[2:]) != 80 {
			return "destination port not rewritten to the real server's"
		}
	}
	return ""
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// 13. Bad traffic: truncated, malformed and fragmented packets sent to the
// VIP from a raw socket are not forwarded wrongly, xvsd keeps running, and
// the service still works afterwards.
func TestBadTraffic(t *testing.T) {
	forModes(t, xdpOnly, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		startWeb(t, tp, ":80")
		for i, ns := range tp.Servers {
			testutil.StartUDPEcho(t, ns, ":53", testutil.ServerName(i))
		}
		d := startDaemon(t, tp, mode)
		seedConfig(d)
		udpSvc := vip + ":53"
		d.must("-A", "-u", udpSvc, "-s", "rr")
		d.must("-a", "-u", udpSvc, "-r", rs1+":53", "-m")
		d.must("-a", "-u", udpSvc, "-r", rs2+":53", "-m")
		c := testutil.NewHTTPClient(tp.Client, netip.Addr{})
		getNodes(ctx, t, c, "http://"+vip+"/", 2) // the service works before

		var sniffers []*sniffer
		for i, ns := range tp.Servers {
			sniffers = append(sniffers, startSniffer(t, ns, testutil.ServerName(i)))
		}

		// Send every frame from the client straight to the director's MAC.
		var dirMAC net.HardwareAddr
		if err := tp.Director.Do(func() error {
			ifi, err := net.InterfaceByName(testutil.DirectorExtIf)
			if err == nil {
				dirMAC = ifi.HardwareAddr
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		frames := badFrames()
		err := tp.Client.Do(func() error {
			ifi, err := net.InterfaceByName(testutil.HostIf)
			if err != nil {
				return err
			}
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("packet socket: %w", err)
			}
			defer unix.Close(fd)
			for _, bf := range frames {
				for _, payload := range bf.frames {
					etype := uint16(unix.ETH_P_IP)
					eth := make([]byte, 14, 14+len(payload))
					copy(eth[0:], dirMAC)
					copy(eth[6:], ifi.HardwareAddr)
					binary.BigEndian.PutUint16(eth[12:], etype)
					to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Protocol: htons(etype)}
					copy(to.Addr[:], dirMAC)
					if err := unix.Sendto(fd, append(eth, payload...), 0, to); err != nil {
						t.Logf("send %q: %v (the client's kernel refused it)", bf.name, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // let anything forwarded arrive

		malformed := map[uint16]string{}
		for _, bf := range frames {
			if bf.id != 0 && bf.malformed {
				malformed[bf.id] = bf.name
			}
		}
		names := map[uint16]string{}
		for _, bf := range frames {
			names[bf.id] = bf.name
		}
		for _, s := range sniffers {
			for _, got := range s.frames() {
				id, _ := markerOf(got.frame)
				if name, bad := malformed[id]; bad {
					t.Errorf("%s received the malformed frame %q: % x", got.server, name, got.frame)
					continue
				}
				if why := rewrittenCorrectly(got.frame, tp.V4.Servers); why != "" {
					t.Errorf("%s received %q wrongly forwarded: %s: % x", got.server, names[id], why, got.frame)
				} else {
					t.Logf("%s received %q, correctly rewritten", got.server, names[id])
				}
			}
		}

		if !d.alive() {
			t.Fatalf("xvsd exited after the bad traffic: %v", d.err)
		}
		d.must("-L", "-n")
		got := getNodes(ctx, t, c, "http://"+vip+"/", 4)
		if !slices.Contains(got, "node1") || !slices.Contains(got, "node2") {
			t.Errorf("after the bad traffic: %v, want both real servers", got)
		}
		for i := range 2 {
			reply, from, err := testutil.UDPExchange(ctx, tp.Client, netip.Addr{}, netip.MustParseAddrPort(udpSvc), []byte("after"))
			if err != nil || from != netip.MustParseAddrPort(udpSvc) || len(reply) == 0 {
				t.Errorf("udp exchange %d after the bad traffic: %q from %s, %v", i+1, reply, from, err)
			}
		}
	})
}
