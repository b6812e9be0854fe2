package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"xvs/testutil"
)

// Package bpf's datapath tests: every case runs on both entries (XDP and
// TC) through BPF_PROG_TEST_RUN, inside a namespace with real routes and
// neighbours, so bpf_fib_lookup is the real one.

var payload = []byte("GET / HTTP/1.0\r\n\r\n")

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// frame is a TCP or UDP frame src -> dst with the given MACs.
func frame(src, dst netip.AddrPort, proto, flags uint8, smac, dmac []byte) testutil.Frame {
	f := testutil.Frame{SrcMAC: smac, DstMAC: dmac, Src: src.Addr(), Dst: dst.Addr(),
		Proto: proto, SrcPort: src.Port(), DstPort: dst.Port(), TTL: 64, ID: 0x1234,
		Seq: 1000, Ack: 2000, Payload: payload}
	if proto == testutil.ProtoTCP {
		f.TCPFlags = flags
	}
	return f
}

type dpCase struct {
	name    string
	in      []byte
	ingress int
	want    verdict
	wantTC  *verdict // when TC differs (no XDP_TX; bpf_redirect needs no devmap)
	out     []byte   // nil: the input unchanged
	outTC   []byte   // when TC's output differs
	reason  XvsReason
	reasonT *XvsReason // when TC's reason differs
}

func vp(v verdict) *verdict     { return &v }
func rp(r XvsReason) *XvsReason { return &r }

// famAddrs are the addresses of one family.
type famAddrs struct {
	name                         string
	cli, vip, rs, local, noNeigh netip.Addr
	other                        netip.Addr
}

var families = []famAddrs{
	{name: "ipv4", cli: cli4, vip: vip4, rs: rs4, local: local4, noNeigh: noNeigh4, other: other4},
	{name: "ipv6", cli: cli6, vip: vip6, rs: rs6, local: local6, noNeigh: noNeigh6, other: other6},
}

var protos = []struct {
	name  string
	proto uint8
}{{"tcp", testutil.ProtoTCP}, {"udp", testutil.ProtoUDP}}

// Dest and service ids of the test conns, IPv4 ones; an IPv6 conn's are
// v6IDs more (a dest id names one address, a service id one VIP).
const (
	v6IDs      = 10
	destRS     = 1
	destLocal  = 2
	destNoNgh  = 3
	destGone   = 4
	destMTU    = 5
	destOth    = 6
	svcTCPID   = 1
	svcUDPID   = 2
	firstCport = 40000
)

// setupConns installs the services and conns the cases use; client ports
// are cport+0 (rs), +1 (local rs on ext0), +2 (no neighbour), +3 (dest
// gone), +4 (behind a small MTU), +5 (egress not in xvs_tx).
func setupConns(e *env) {
	for _, id := range []uint32{destRS, destLocal, destNoNgh, destMTU, destOth} {
		e.putDest(id, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
		e.putDest(id+v6IDs, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	}
	e.putDest(destGone, XvsDest{})
	e.putDest(destGone+v6IDs, XvsDest{})
	for fi, fa := range families {
		for pi, pr := range protos {
			svc := uint32(svcTCPID)
			if pr.proto == testutil.ProtoUDP {
				svc = svcUDPID
			}
			svc += uint32(fi * v6IDs)
			dest := func(id uint32) uint32 { return id + uint32(fi*v6IDs) }
			e.addSvc(fa.vip, vport, pr.proto, svc)
			cport := cportOf(fi, pi)
			vip := ap(fa.vip, vport)
			e.addConn(ap(fa.cli, cport), vip, ap(fa.rs, rport), pr.proto, svc, dest(destRS))
			e.addConn(ap(fa.cli, cport+1), vip, ap(fa.local, rport), pr.proto, svc, dest(destLocal))
			e.addConn(ap(fa.cli, cport+2), vip, ap(fa.noNeigh, rport), pr.proto, svc, dest(destNoNgh))
			e.addConn(ap(fa.cli, cport+3), vip, ap(fa.rs, rport+1), pr.proto, svc, dest(destGone))
			if fa.cli.Is4() {
				e.addConn(ap(fa.cli, cport+4), vip, ap(rsMTU4, rport), pr.proto, svc, dest(destMTU))
				e.addConn(ap(fa.cli, cport+5), vip, ap(rsOth4, rport), pr.proto, svc, dest(destOth))
			}
		}
	}
}

func cportOf(fi, pi int) uint16 { return uint16(firstCport + fi*1000 + pi*100) }

// dpCases builds the table for one family and protocol.
func dpCases(e *env, fi, pi int) []dpCase {
	fa, proto := families[fi], protos[pi].proto
	cport := cportOf(fi, pi)
	cli, vip, rs := ap(fa.cli, cport), ap(fa.vip, vport), ap(fa.rs, rport)
	data := testutil.TCPAck | testutil.TCPPsh
	in := func(c netip.AddrPort, flags uint8) testutil.Frame {
		return frame(c, vip, proto, flags, macCli, macExt)
	}
	// fwd is in() as rewritten towards real server to via next hop mac on egress emac.
	fwd := func(f testutil.Frame, to netip.AddrPort, mac, emac []byte) []byte {
		f.Dst, f.DstPort, f.TTL, f.DstMAC, f.SrcMAC = to.Addr(), to.Port(), f.TTL-1, mac, emac
		return f.Bytes()
	}
	fwdNoTx := func(f testutil.Frame, to netip.AddrPort) []byte {
		f.Dst, f.DstPort = to.Addr(), to.Port()
		return f.Bytes()
	}
	rev := frame(rs, cli, proto, data, macRS, macInt)
	revOut := rev
	revOut.Src, revOut.SrcPort, revOut.TTL, revOut.SrcMAC, revOut.DstMAC = vip.Addr(), vip.Port(), 63, macExt, macCli
	vlan := in(cli, data)
	vlan.VLAN, vlan.VLANID = true, 7
	ttl1 := in(cli, data)
	ttl1.TTL = 1
	revTTL1 := rev
	revTTL1.TTL = 1
	first := uint8(testutil.TCPSyn)
	newc := ap(fa.cli, cport+50)

	cs := []dpCase{
		{name: "forward hit", in: in(cli, data).Bytes(), ingress: e.ext.index, want: vRedirect,
			out: fwd(in(cli, data), rs, macRS, macInt), reason: XvsReasonREASON_FWD_IN},
		{name: "reverse hit", in: rev.Bytes(), ingress: e.intl.index, want: vRedirect,
			out: revOut.Bytes(), reason: XvsReasonREASON_FWD_OUT},
		{name: "vlan tag kept", in: vlan.Bytes(), ingress: e.ext.index, want: vRedirect,
			out: fwd(vlan, rs, macRS, macInt), reason: XvsReasonREASON_FWD_IN},
		{name: "ttl 1 answers time exceeded", in: ttl1.Bytes(), ingress: e.ext.index, want: vTX,
			wantTC: vp(vRedirect), out: icmpReply(ttl1, fa.vip, timeExceeded(fa.vip), 0, 0),
			reason: XvsReasonREASON_TX_TTL},
		{name: "reverse ttl 1 answers time exceeded", in: revTTL1.Bytes(), ingress: e.intl.index, want: vTX,
			wantTC: vp(vRedirect), out: icmpReply(revTTL1, fa.vip, timeExceeded(fa.vip), 0, 0),
			reason: XvsReasonREASON_TX_TTL},
		{name: "egress is ingress", in: in(ap(fa.cli, cport+1), data).Bytes(), ingress: e.ext.index,
			want: vTX, wantTC: vp(vRedirect), out: fwd(in(ap(fa.cli, cport+1), data), ap(fa.local, rport), macLocal, macExt),
			reason: XvsReasonREASON_FWD_IN},
		{name: "no neighbour passes rewritten", in: in(ap(fa.cli, cport+2), data).Bytes(), ingress: e.ext.index,
			want: vPass, out: fwdNoTx(in(ap(fa.cli, cport+2), data), ap(fa.noNeigh, rport)),
			reason: XvsReasonREASON_PASS_NO_NEIGH},
		{name: "dest gone drops", in: in(ap(fa.cli, cport+3), data).Bytes(), ingress: e.ext.index,
			want: vDrop, reason: XvsReasonREASON_DROP_NO_DEST},
		{name: "first packet punts", in: in(newc, first).Bytes(), ingress: e.ext.index, want: vRedirect,
			reason: XvsReasonREASON_PUNT},
		{name: "to other address passes", in: frame(newc, ap(fa.other, vport), proto, first, macCli, macExt).Bytes(),
			ingress: e.ext.index, want: vPass, reason: XvsReasonREASON_PASS_NO_SVC},
		{name: "to other vip port passes", in: frame(newc, ap(fa.vip, vport+1), proto, first, macCli, macExt).Bytes(),
			ingress: e.ext.index, want: vPass, reason: XvsReasonREASON_PASS_NO_SVC},
		{name: "written back hit forwards", in: in(cli, first).Bytes(), ingress: e.punt.index, want: vRedirect,
			out: fwd(in(cli, first), rs, macRS, macInt), reason: XvsReasonREASON_FWD_IN},
		{name: "written back miss drops", in: in(newc, first).Bytes(), ingress: e.punt.index, want: vDrop,
			reason: XvsReasonREASON_DROP_PUNT_MISS},
	}
	if proto == testutil.ProtoTCP {
		cs = append(cs,
			dpCase{name: "ack without conn passes", in: in(newc, testutil.TCPAck).Bytes(), ingress: e.ext.index,
				want: vPass, reason: XvsReasonREASON_PASS_NOT_FIRST},
			dpCase{name: "syn ack without conn passes", in: in(newc, testutil.TCPSyn|testutil.TCPAck).Bytes(),
				ingress: e.ext.index, want: vPass, reason: XvsReasonREASON_PASS_NOT_FIRST},
			dpCase{name: "syn rst without conn passes", in: in(newc, testutil.TCPSyn|testutil.TCPRst).Bytes(),
				ingress: e.ext.index, want: vPass, reason: XvsReasonREASON_PASS_NOT_FIRST},
		)
	}
	if proto == testutil.ProtoUDP {
		z := zeroSumUDP(in(cli, data), rs)
		cs = append(cs, dpCase{name: "udp checksum result 0 is sent as 0xffff", in: z.Bytes(),
			ingress: e.ext.index, want: vRedirect, out: fwd(z, rs, macRS, macInt), reason: XvsReasonREASON_FWD_IN})
	}
	if fa.cli.Is4() {
		opts := in(cli, data)
		opts.IPOptions = []byte{7, 7, 4, 0, 0, 0, 0} // record route, one slot
		big := in(ap(fa.cli, cport+4), data)
		big.Payload = make([]byte, 1000)
		oth := in(ap(fa.cli, cport+5), data)
		cs = append(cs,
			dpCase{name: "ipv4 options", in: opts.Bytes(), ingress: e.ext.index, want: vRedirect,
				out: fwd(opts, rs, macRS, macInt), reason: XvsReasonREASON_FWD_IN},
			dpCase{name: "too big for egress mtu", in: big.Bytes(), ingress: e.ext.index, want: vPass,
				out: fwdNoTx(big, ap(rsMTU4, rport)), reason: XvsReasonREASON_PASS_MTU},
			dpCase{name: "egress not in xvs_tx", in: oth.Bytes(), ingress: e.ext.index, want: vPass,
				out: fwdNoTx(oth, ap(rsOth4, rport)), reason: XvsReasonREASON_PASS_FIB,
				wantTC: vp(vRedirect), outTC: fwd(oth, ap(rsOth4, rport), macRSOth, macOth),
				reasonT: rp(XvsReasonREASON_FWD_IN)},
		)
		if proto == testutil.ProtoUDP {
			z := in(cli, data)
			z.UDPZeroCsum = true
			zr := rev
			zr.UDPZeroCsum = true
			zro := revOut
			zro.UDPZeroCsum = true
			cs = append(cs,
				dpCase{name: "udp checksum 0 stays 0", in: z.Bytes(), ingress: e.ext.index, want: vRedirect,
					out: fwd(z, rs, macRS, macInt), reason: XvsReasonREASON_FWD_IN},
				dpCase{name: "reverse udp checksum 0 stays 0", in: zr.Bytes(), ingress: e.intl.index,
					want: vRedirect, out: zro.Bytes(), reason: XvsReasonREASON_FWD_OUT})
		}
	}
	return cs
}

// protoCases are the cases that do not depend on the L4 protocol.
func protoCases(e *env) []dpCase {
	cli, vip := ap(cli4, firstCport), ap(vip4, vport)
	tcp := frame(cli, vip, testutil.ProtoTCP, testutil.TCPAck, macCli, macExt)
	arp := tcp
	arp.EtherType = testutil.EtherTypeARP
	icmp := tcp
	icmp.Proto = testutil.ProtoICMP
	icmp6 := frame(ap(cli6, firstCport), ap(vip6, vport), testutil.ProtoICMPv6, 0, macCli, macExt)
	frag6 := icmp6
	frag6.Proto = 44
	hbh6 := icmp6
	hbh6.Proto = 60 // destination options
	udp := frame(cli, vip, testutil.ProtoUDP, 0, macCli, macExt)

	mangle := func(b []byte, fn func(b []byte)) []byte {
		b = append([]byte(nil), b...)
		fn(b)
		return b
	}
	ihl4 := mangle(tcp.Bytes(), func(b []byte) { b[14] = 0x44 })
	ver := mangle(tcp.Bytes(), func(b []byte) { b[14] = 0x55 })
	totShort := mangle(tcp.Bytes(), func(b []byte) { binary.BigEndian.PutUint16(b[16:], 19) })
	totLong := mangle(tcp.Bytes(), func(b []byte) { binary.BigEndian.PutUint16(b[16:], uint16(len(b))) })
	doff := mangle(tcp.Bytes(), func(b []byte) { b[14+20+12] = 4 << 4 })
	doffBig := mangle(tcp.Bytes(), func(b []byte) { b[14+20+12] = 15 << 4 })
	ulen := mangle(udp.Bytes(), func(b []byte) { binary.BigEndian.PutUint16(b[14+20+4:], 4) })
	ulenBig := mangle(udp.Bytes(), func(b []byte) { binary.BigEndian.PutUint16(b[14+20+4:], 200) })
	plen6 := mangle(icmp6.Bytes(), func(b []byte) { binary.BigEndian.PutUint16(b[14+4:], 500) })
	// Ethernet padding after a valid datagram is fine (still a hit).
	padded := append(tcp.Bytes(), make([]byte, 6)...)
	paddedOut := tcp
	paddedOut.Dst, paddedOut.DstPort, paddedOut.TTL, paddedOut.DstMAC, paddedOut.SrcMAC = rs4, rport, 63, macRS, macInt
	mal := XvsReasonREASON_DROP_MALFORMED
	return []dpCase{
		{name: "arp passes", in: arp.Bytes(), ingress: e.ext.index, want: vPass, reason: XvsReasonREASON_PASS_NOT_IP},
		{name: "icmp passes", in: icmp.Bytes(), ingress: e.ext.index, want: vPass, reason: XvsReasonREASON_PASS_NOT_L4},
		{name: "icmpv6 passes", in: icmp6.Bytes(), ingress: e.ext.index, want: vPass, reason: XvsReasonREASON_PASS_NOT_L4},
		{name: "ipv6 later fragment of nothing passes", in: frag6.Bytes(), ingress: e.ext.index, want: vPass, reason: XvsReasonREASON_PASS_FRAGMENT},
		{name: "ipv6 destination options pass", in: hbh6.Bytes(), ingress: e.ext.index, want: vPass, reason: XvsReasonREASON_PASS_IPV6EXT},
		{name: "ihl 4 drops", in: ihl4, ingress: e.ext.index, want: vDrop, reason: mal},
		{name: "ip version 5 drops", in: ver, ingress: e.ext.index, want: vDrop, reason: mal},
		{name: "total length below header drops", in: totShort, ingress: e.ext.index, want: vDrop, reason: mal},
		{name: "total length beyond frame drops", in: totLong, ingress: e.ext.index, want: vDrop, reason: mal},
		{name: "tcp doff 4 drops", in: doff, ingress: e.ext.index, want: vDrop, reason: mal},
		{name: "tcp doff beyond payload drops", in: doffBig, ingress: e.ext.index, want: vDrop, reason: mal},
		{name: "udp length 4 drops", in: ulen, ingress: e.ext.index, want: vDrop, reason: mal},
		{name: "udp length beyond payload drops", in: ulenBig, ingress: e.ext.index, want: vDrop, reason: mal},
		{name: "ipv6 payload beyond frame drops", in: plen6, ingress: e.ext.index, want: vDrop, reason: mal},
		{name: "ethernet padding forwards", in: padded, ingress: e.ext.index, want: vRedirect,
			out: append(paddedOut.Bytes(), make([]byte, 6)...), reason: XvsReasonREASON_FWD_IN},
	}
}

// check runs c on entry en and compares verdict, output, checksums and the
// reason counters.
func (e *env) check(t *testing.T, en entry, c dpCase) {
	t.Helper()
	want, out, reason := c.want, c.out, c.reason
	if !en.xdp {
		if c.wantTC != nil {
			want = *c.wantTC
		}
		if c.outTC != nil {
			out = c.outTC
		}
		if c.reasonT != nil {
			reason = *c.reasonT
		}
	}
	if out == nil {
		out = c.in
	}
	e.resetReasons()
	got, data, err := e.run(en, c.in, c.ingress)
	if err != nil {
		t.Fatal(err)
	}
	if got != en.code(want) {
		t.Errorf("verdict %d, want %d (%v); reasons %v", got, en.code(want), want, e.reasons())
	}
	if !bytes.Equal(data, out) {
		t.Errorf("output differs\n got %x\nwant %x", data, out)
	}
	if !bytes.Equal(data, c.in) && want != vDrop {
		if err := testutil.VerifyChecksums(data); err != nil {
			t.Errorf("rewritten frame: %v", err)
		}
	}
	if r := e.reasons(); len(r) != 1 || r[reason] != 1 {
		t.Errorf("reasons %v, want only %v once", r, reason)
	}
}

func TestDatapath(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	for _, en := range entries {
		t.Run(en.name, func(t *testing.T) {
			for fi, fa := range families {
				for pi, pr := range protos {
					for _, c := range dpCases(e, fi, pi) {
						t.Run(fmt.Sprintf("%s/%s/%s", fa.name, pr.name, c.name), func(t *testing.T) {
							e.check(t, en, c)
						})
					}
				}
			}
			for _, c := range protoCases(e) {
				t.Run(c.name, func(t *testing.T) { e.check(t, en, c) })
			}
		})
	}
}

// TestStaleDaemon: with an old liveness stamp first packets are dropped,
// established flows still forward.
func TestStaleDaemon(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	cport := cportOf(0, 0)
	cli, vip := ap(cli4, cport), ap(vip4, vport)
	hit := frame(cli, vip, testutil.ProtoTCP, testutil.TCPAck, macCli, macExt)
	hitOut := hit
	hitOut.Dst, hitOut.DstPort, hitOut.TTL, hitOut.DstMAC, hitOut.SrcMAC = rs4, rport, 63, macRS, macInt
	syn := frame(ap(cli4, cport+50), vip, testutil.ProtoTCP, testutil.TCPSyn, macCli, macExt)
	udp := frame(ap(cli4, cport+50), vip, testutil.ProtoUDP, 0, macCli, macExt)
	stale := []dpCase{
		{name: "syn drops", in: syn.Bytes(), ingress: e.ext.index, want: vDrop, reason: XvsReasonREASON_DROP_PUNT_STALE},
		{name: "udp drops", in: udp.Bytes(), ingress: e.ext.index, want: vDrop, reason: XvsReasonREASON_DROP_PUNT_STALE},
		{name: "hit forwards", in: hit.Bytes(), ingress: e.ext.index, want: vRedirect, out: hitOut.Bytes(),
			reason: XvsReasonREASON_FWD_IN},
	}
	for _, en := range entries {
		t.Run(en.name+"/stale stamp", func(t *testing.T) {
			e.setStaleCfg()
			for _, c := range stale {
				t.Run(c.name, func(t *testing.T) { e.check(t, en, c) })
			}
		})
		t.Run(en.name+"/no punt device", func(t *testing.T) {
			e.setCfg(0, 1<<62)
			for _, c := range stale {
				t.Run(c.name, func(t *testing.T) { e.check(t, en, c) })
			}
		})
		t.Run(en.name+"/fresh stamp", func(t *testing.T) {
			e.setCfg(uint32(e.punt.index), 1<<62)
			e.check(t, en, dpCase{name: "syn punts", in: syn.Bytes(), ingress: e.ext.index, want: vRedirect,
				reason: XvsReasonREASON_PUNT})
		})
	}
}

// zeroIPLen sets the IP length of an untagged frame to 0 (BIG TCP) and
// fixes the IPv4 header checksum.
func zeroIPLen(b []byte) []byte {
	b = append([]byte(nil), b...)
	if binary.BigEndian.Uint16(b[12:]) == testutil.EtherTypeIPv6 {
		binary.BigEndian.PutUint16(b[14+4:], 0)
		return b
	}
	hl := int(b[14]&0xf) * 4
	binary.BigEndian.PutUint16(b[14+2:], 0)
	binary.BigEndian.PutUint16(b[14+10:], 0)
	binary.BigEndian.PutUint16(b[14+10:], testutil.Checksum(b[14:14+hl], 0))
	return b
}

// TestTCGSOZeroLength: a GSO skb with IP length 0 (BIG TCP) takes its
// length from the skb and forwards; without GSO the same frame is
// malformed.
func TestTCGSOZeroLength(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	tc := entries[1]
	for fi, fa := range families {
		cport := cportOf(fi, 0)
		in := frame(ap(fa.cli, cport), ap(fa.vip, vport), testutil.ProtoTCP, testutil.TCPAck, macCli, macExt)
		out := in
		out.Dst, out.DstPort, out.TTL, out.DstMAC, out.SrcMAC = fa.rs, rport, 63, macRS, macInt
		t.Run(fa.name, func(t *testing.T) {
			e.resetReasons()
			got, data, err := e.runGSO(tc, zeroIPLen(in.Bytes()), e.ext.index, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.code(vRedirect) {
				t.Fatalf("verdict %d, want redirect; reasons %v", got, e.reasons())
			}
			if want := zeroIPLen(out.Bytes()); !bytes.Equal(data, want) {
				t.Errorf("output differs\n got %x\nwant %x", data, want)
			}
			svc := e.stats(e.objs.XvsSvcStats, svcTCPID+uint32(fi*v6IDs))
			if svc.Inbytes == 0 {
				t.Errorf("no bytes counted")
			}
			got, _, err = e.run(tc, zeroIPLen(in.Bytes()), e.ext.index)
			if err != nil || got != tc.code(vDrop) {
				t.Errorf("without gso: verdict %d, %v; want drop", got, err)
			}
		})
	}
}

// zeroSumUDP returns f with a two-byte payload chosen so that, once its
// destination is rewritten to to, the UDP checksum computes to 0, which
// goes on the wire as 0xffff.
func zeroSumUDP(f testutil.Frame, to netip.AddrPort) testutil.Frame {
	f.Payload = []byte{0, 0}
	out := f
	out.Dst, out.DstPort = to.Addr(), to.Port()
	b := out.Bytes()
	p, err := testutil.ParseFrame(b)
	if err != nil {
		panic(err)
	}
	c := binary.BigEndian.Uint16(b[p.L4Off+6:])
	f.Payload = []byte{byte(c >> 8), byte(c)}
	out.Payload = f.Payload
	b = out.Bytes()
	if got := binary.BigEndian.Uint16(b[p.L4Off+6:]); got != 0xffff {
		panic(fmt.Sprintf("udp checksum %#04x, want 0xffff", got))
	}
	return f
}
