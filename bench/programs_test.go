package bench

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"xvs/testutil"
)

// XDP verdicts.
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

var (
	macGen = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	macExt = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	macInt = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x03}
	macRS  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x04}
)

// progNS is a namespace with lo (ifindex 1, the "external" side) and a
// veth d0 (ifindex 2, the "internal" side) for BPF_PROG_TEST_RUN contexts.
func progNS(t *testing.T) *testutil.NetNS {
	t.Helper()
	testutil.NeedRoot(t)
	ns := testutil.NewNetNS(t, testutil.RunPrefix("xvsbt"))
	if err := ns.IP("link", "add", "d0", "type", "veth", "peer", "name", "d1"); err != nil {
		t.Fatal(err)
	}
	if err := ns.IP("link", "set", "d0", "up"); err != nil {
		t.Fatal(err)
	}
	return ns
}

func runXDP(t *testing.T, ns *testutil.NetNS, p *ebpf.Program, in []byte, ifindex uint32) (uint32, []byte) {
	t.Helper()
	var ret uint32
	out := make([]byte, len(in)+256)
	err := ns.Do(func() error {
		// One CPU, so that per-CPU counters advance predictably.
		restore, err := pinCPU(0)
		if err != nil {
			return err
		}
		defer restore()
		opts := &ebpf.RunOptions{Data: in, DataOut: out,
			Context: &xdpMD{DataEnd: uint32(len(in)), IngressIfindex: ifindex}}
		ret, err = p.Run(opts)
		out = opts.DataOut
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ret, out
}

func TestRefXDP(t *testing.T) {
	ns := progNS(t)
	a := defaultAddrs()
	var objs *BenchObjects
	err := ns.Do(func() error {
		var err error
		objs, err = loadBench(func(s *BenchSpecs) error {
			return setVars(kv{s.RefVip, be32(a.VIP)}, kv{s.RefRs, be32(a.RS[0])}, kv{s.RefExtIdx, uint32(1)},
				kv{s.RefExtSrc, mac6(macExt)}, kv{s.RefExtDst, mac6(macGen)},
				kv{s.RefIntSrc, mac6(macInt)}, kv{s.RefIntDst, mac6(macRS)}, kv{s.GenFlows, uint32(1)})
		})
		if err != nil {
			return err
		}
		for k, idx := range []uint32{2, 1} {
			if err := objs.RefTx.Put(uint32(k), idx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })

	cli := a.Gen
	tests := []struct {
		name    string
		in      testutil.Frame
		ifindex uint32
		want    uint32
		out     testutil.Frame // expected output when rewritten
	}{
		{name: "tcp to vip goes to the real server", ifindex: 1, want: xdpRedirect,
			in:  testutil.Frame{SrcMAC: macGen, DstMAC: macExt, Src: cli, Dst: a.VIP, SrcPort: 40000, DstPort: 5201, TCPFlags: testutil.TCPAck, Payload: []byte("data")},
			out: testutil.Frame{SrcMAC: macInt, DstMAC: macRS, Src: cli, Dst: a.RS[0], SrcPort: 40000, DstPort: 5201, TCPFlags: testutil.TCPAck, Payload: []byte("data")}},
		{name: "udp to vip", ifindex: 1, want: xdpRedirect,
			in:  testutil.Frame{SrcMAC: macGen, DstMAC: macExt, Src: cli, Dst: a.VIP, Proto: testutil.ProtoUDP, SrcPort: 1024, DstPort: 9, Payload: []byte("x")},
			out: testutil.Frame{SrcMAC: macInt, DstMAC: macRS, Src: cli, Dst: a.RS[0], Proto: testutil.ProtoUDP, SrcPort: 1024, DstPort: 9, Payload: []byte("x")}},
		{name: "udp checksum 0 stays 0", ifindex: 1, want: xdpRedirect,
			in:  testutil.Frame{SrcMAC: macGen, DstMAC: macExt, Src: cli, Dst: a.VIP, Proto: testutil.ProtoUDP, UDPZeroCsum: true, SrcPort: 1024, DstPort: 9},
			out: testutil.Frame{SrcMAC: macInt, DstMAC: macRS, Src: cli, Dst: a.RS[0], Proto: testutil.ProtoUDP, UDPZeroCsum: true, SrcPort: 1024, DstPort: 9}},
		{name: "reply from the real server comes from the vip", ifindex: 2, want: xdpRedirect,
			in:  testutil.Frame{SrcMAC: macRS, DstMAC: macInt, Src: a.RS[0], Dst: cli, SrcPort: 5201, DstPort: 40000, TCPFlags: testutil.TCPAck | testutil.TCPPsh},
			out: testutil.Frame{SrcMAC: macExt, DstMAC: macGen, Src: a.VIP, Dst: cli, SrcPort: 5201, DstPort: 40000, TCPFlags: testutil.TCPAck | testutil.TCPPsh}},
		{name: "vip address arriving inside passes", ifindex: 2, want: xdpPass,
			in: testutil.Frame{Src: cli, Dst: a.VIP, SrcPort: 1, DstPort: 2}},
		{name: "other destination passes", ifindex: 1, want: xdpPass,
			in: testutil.Frame{Src: cli, Dst: a.DirInt, SrcPort: 1, DstPort: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in.Bytes()
			ret, out := runXDP(t, ns, objs.RefXdp, in, tt.ifindex)
			if ret != tt.want {
				t.Fatalf("verdict %d, want %d", ret, tt.want)
			}
			want := in
			if tt.want == xdpRedirect {
				want = tt.out.Bytes()
				if err := testutil.VerifyChecksums(out); err != nil {
					t.Errorf("checksums: %v", err)
				}
			}
			if !bytes.Equal(out, want) {
				t.Fatalf("frame\n got %x\nwant %x", out, want)
			}
		})
	}
}

func TestGenXDP(t *testing.T) {
	ns := progNS(t)
	a := defaultAddrs()
	dst := netip.AddrPortFrom(a.VIP, udpPort)
	tp := &Topo{GenMAC: macGen, ExtMAC: macExt, Gen: ns, GenIdx: 1, Addrs: a}
	tests := []struct {
		name      string
		cfg       GenConfig
		wantSrc   []netip.Addr
		wantPort  []uint16
		wantFlood uint64
	}{
		{name: "established flows cycle over source ports", cfg: GenConfig{Flows: 3, Sport: 20000},
			wantSrc: []netip.Addr{a.Gen, a.Gen, a.Gen, a.Gen}, wantPort: []uint16{20000, 20001, 20002, 20000}},
		// Flow numbers are salt + 64 * frame + cpu: 0x7fc0, then 0x8000,
		// where the port wraps and the address goes up.
		{name: "new flows vary port and address", cfg: GenConfig{NewFlows: true, Salt: 0x7fc0},
			wantSrc:  []netip.Addr{netip.MustParseAddr("198.18.128.0"), netip.MustParseAddr("198.18.128.1")},
			wantPort: []uint16{1024 + 0x7fc0, 1024}},
		// Every third frame (the 1st, the 4th) a new flow: flood flow
		// numbers count only the flood's frames (0, then 64).
		{name: "established flows with a flood mixed in", cfg: GenConfig{Flows: 2, Sport: 20000, FloodEvery: 3},
			wantSrc:  []netip.Addr{netip.MustParseAddr("198.18.128.0"), a.Gen, a.Gen, netip.MustParseAddr("198.18.128.0")},
			wantPort: []uint16{1024, 20001, 20000, 1024 + 64}, wantFlood: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGenerator(tp, tt.cfg, a.Gen, dst)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			// A frame rewritten by a director on its way comes back
			// into the page pool: every run restores the headers.
			in := udpFrame(macInt, macRS, a.Gen, netip.AddrPortFrom(a.RS[1], 7))
			for i := range tt.wantPort {
				ret, out := runXDP(t, ns, g.objs.GenXdp, in, 1)
				if ret != xdpTX {
					t.Fatalf("frame %d: verdict %d, want XDP_TX", i, ret)
				}
				p, err := testutil.ParseFrame(out)
				if err != nil {
					t.Fatal(err)
				}
				if err := testutil.VerifyChecksums(out); err != nil {
					t.Errorf("frame %d: checksums: %v", i, err)
				}
				sport := uint16(out[p.L4Off])<<8 | uint16(out[p.L4Off+1])
				if p.Src != tt.wantSrc[i] || sport != tt.wantPort[i] || p.Dst != a.VIP ||
					!bytes.Equal(out[0:6], macExt) || !bytes.Equal(out[6:12], macGen) {
					t.Fatalf("frame %d: %s:%d -> %s, macs %x; want %s:%d -> %s", i, p.Src, sport, p.Dst, out[0:12], tt.wantSrc[i], tt.wantPort[i], a.VIP)
				}
			}
			if n, err := g.Sent(); err != nil || n != uint64(len(tt.wantPort)) {
				t.Fatalf("Sent() = %d, %v; want %d", n, err, len(tt.wantPort))
			}
			if n, err := g.FloodSent(); err != nil || n != tt.wantFlood {
				t.Fatalf("FloodSent() = %d, %v; want %d", n, err, tt.wantFlood)
			}
		})
	}
}

// TestGenXDPPaced: a paced generator drops the frames that are early, so
// that they never reach the veth; at a pace it cannot reach it sends all.
func TestGenXDPPaced(t *testing.T) {
	ns := progNS(t)
	a := defaultAddrs()
	dst := netip.AddrPortFrom(a.VIP, udpPort)
	tp := &Topo{GenMAC: macGen, ExtMAC: macExt, Gen: ns, GenIdx: 1, Addrs: a}
	tests := []struct {
		name     string
		pps      uint64
		wantSent uint64
	}{
		{name: "one a second: the first frame, then none", pps: 1, wantSent: 1},
		{name: "a billion a second: every frame", pps: 1e9, wantSent: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := NewGenerator(tp, GenConfig{Flows: 3, Sport: 20000, PPS: tt.pps}, a.Gen, dst)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			in := udpFrame(macGen, macExt, a.Gen, dst)
			var sent uint64
			for i := range 10 {
				ret, _ := runXDP(t, ns, g.objs.GenXdp, in, 1)
				switch ret {
				case xdpTX:
					sent++
				case xdpDrop:
				default:
					t.Fatalf("frame %d: verdict %d, want XDP_TX or XDP_DROP", i, ret)
				}
			}
			if sent != tt.wantSent {
				t.Errorf("%d frames sent, want %d", sent, tt.wantSent)
			}
			if n, err := g.Sent(); err != nil || n != tt.wantSent {
				t.Errorf("Sent() = %d, %v; want %d", n, err, tt.wantSent)
			}
		})
	}
}

func TestSinkXDP(t *testing.T) {
	ns := progNS(t)
	a := defaultAddrs()
	objs, err := loadBench(func(s *BenchSpecs) error {
		return setVars(kv{s.SinkPort, uint16(udpPort)}, kv{s.GenFlows, uint32(1)})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	tests := []struct {
		name  string
		in    testutil.Frame
		want  uint32
		count uint64 // counter after this case
	}{
		{name: "udp to the port is counted and dropped", want: xdpDrop, count: 1,
			in: testutil.Frame{Src: a.Gen, Dst: a.RS[0], Proto: testutil.ProtoUDP, SrcPort: 1, DstPort: udpPort}},
		{name: "other udp port passes", want: xdpPass, count: 1,
			in: testutil.Frame{Src: a.Gen, Dst: a.RS[0], Proto: testutil.ProtoUDP, SrcPort: 1, DstPort: 53}},
		{name: "tcp to the port passes", want: xdpPass, count: 1,
			in: testutil.Frame{Src: a.Gen, Dst: a.RS[0], SrcPort: 1, DstPort: udpPort}},
		{name: "again counted", want: xdpDrop, count: 2,
			in: testutil.Frame{Src: a.Gen, Dst: a.RS[1], Proto: testutil.ProtoUDP, UDPZeroCsum: true, SrcPort: 2, DstPort: udpPort}},
	}
	sink := &Sink{objs: objs}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ret, _ := runXDP(t, ns, objs.SinkXdp, tt.in.Bytes(), 1)
			if ret != tt.want {
				t.Fatalf("verdict %d, want %d", ret, tt.want)
			}
			if n, err := sink.Count(); err != nil || n != tt.count {
				t.Fatalf("Count() = %d, %v; want %d", n, err, tt.count)
			}
		})
	}
}
