package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"xvs/testutil"
)

// Edge cases of the datapath: TCP port reuse, ICMP errors in both
// directions, the ICMP answers the datapath builds (time exceeded,
// fragmentation needed / packet too big), IP fragments and the
// first-packet budget. Every case runs on both entries with exact bytes.

// icmpProto is the ICMP protocol of a's family.
func icmpProto(a netip.Addr) uint8 {
	if a.Is4() {
		return testutil.ProtoICMP
	}
	return testutil.ProtoICMPv6
}

func timeExceeded(a netip.Addr) uint8 {
	if a.Is4() {
		return testutil.ICMPTimeExceeded
	}
	return testutil.ICMP6TimeExceeded
}

// icmpReply is the answer the datapath builds to in (as received): from
// from to in's sender, MACs swapped, quoting in's IP packet cut so that
// the answer is at most 576 (IPv4) or 1280 (IPv6) bytes.
func icmpReply(in testutil.Frame, from netip.Addr, typ, code uint8, info uint32) []byte {
	q := in.IP()
	limit := 576 - 28
	out := testutil.Frame{SrcMAC: in.DstMAC, DstMAC: in.SrcMAC, VLAN: in.VLAN, VLANID: in.VLANID,
		Src: from, Dst: in.Src, TTL: 64, Proto: icmpProto(from),
		ICMP: &testutil.ICMPHeader{Type: typ, Code: code, Info: info}}
	if from.Is4() {
		out.TOS = 0xc0
	} else {
		limit = 1280 - 48
	}
	if len(q) > limit {
		q = q[:limit]
	}
	out.Payload = q
	return out.Bytes()
}

// icmpReplyTC is icmpReply as the TC entry builds it: a quote cut short
// of its datagram gets its last whole L4 word changed so that a pending
// CHECKSUM_PARTIAL completion over the quoted L4 header would write back
// the quoted checksum unchanged (reply.h, reply_partial).
func icmpReplyTC(in testutil.Frame, from netip.Addr, typ, code uint8, info uint32) []byte {
	b := icmpReply(in, from, typ, code, info)
	hdr := 28
	if from.Is6() {
		hdr = 48
	}
	q := b[14+hdr:]
	hl, proto := 40, q[6]
	if from.Is4() {
		hl, proto = int(q[0]&0xf)*4, q[9]
	}
	fo := map[uint8]int{testutil.ProtoTCP: 16, testutil.ProtoUDP: 6}[proto]
	l4 := q[hl:]
	wo := len(l4)&^1 - 2
	if wo < fo+2 {
		return b
	}
	// one's complement sum of l4 in 16-bit big-endian words
	sum := func(x []byte) uint32 { return uint32(^testutil.Checksum(x, 0)) }
	fold := func(v uint32) uint16 {
		for v>>16 != 0 {
			v = v&0xffff + v>>16
		}
		return uint16(v)
	}
	f, w := binary.BigEndian.Uint16(l4[fo:]), binary.BigEndian.Uint16(l4[wo:])
	t := sum(l4)
	nw := fold(uint32(^f) + uint32(w) + uint32(^uint16(t)))
	binary.BigEndian.PutUint16(l4[wo:], nw)
	// the ICMP checksum again
	ic := b[14+hdr-8:]
	binary.BigEndian.PutUint16(ic[2:], 0)
	p, _ := testutil.ParseFrame(b)
	var init uint32
	if from.Is6() {
		init = pseudo6(p.Src, p.Dst, len(ic))
	}
	binary.BigEndian.PutUint16(ic[2:], testutil.Checksum(ic, init))
	return b
}

// pseudo6 is the ICMPv6 pseudo-header sum.
func pseudo6(src, dst netip.Addr, n int) uint32 {
	var s uint32
	for _, a := range [][16]byte{src.As16(), dst.As16()} {
		for i := 0; i < 16; i += 2 {
			s += uint32(binary.BigEndian.Uint16(a[i:]))
		}
	}
	return s + uint32(n) + uint32(testutil.ProtoICMPv6)
}

// icmpErr is an ICMP error frame src -> dst quoting q.
func icmpErr(src, dst netip.Addr, typ, code uint8, info uint32, q []byte, smac, dmac []byte) testutil.Frame {
	return testutil.Frame{SrcMAC: smac, DstMAC: dmac, Src: src, Dst: dst, TTL: 64, Proto: icmpProto(src),
		ICMP: &testutil.ICMPHeader{Type: typ, Code: code, Info: info}, Payload: q}
}

func cut(b []byte, n int) []byte {
	if n > len(b) {
		n = len(b)
	}
	return append([]byte(nil), b[:n]...)
}

// icmpCases are the ICMP error cases of one family and protocol.
func icmpCases(e *env, fi, pi int) []dpCase {
	fa, proto := families[fi], protos[pi].proto
	cport := cportOf(fi, pi)
	cli, vip, rs := ap(fa.cli, cport), ap(fa.vip, vport), ap(fa.rs, rport)
	data := testutil.TCPAck | testutil.TCPPsh
	hl := 20
	unreach, unreachCode, tooBig := testutil.ICMPDestUnreach, testutil.ICMPPortUnreach, testutil.ICMPDestUnreach
	tooBigCode := testutil.ICMPFragNeeded
	if fa.cli.Is6() {
		hl = 40
		unreach, unreachCode, tooBig, tooBigCode = testutil.ICMP6DestUnreach, 4, testutil.ICMP6PacketTooBig, 0
	}
	// What the director sent to the client, and that packet as the real
	// server sent it (the quote once translated back).
	toCli := frame(vip, cli, proto, data, macExt, macCli)
	toCli.TTL = 63
	fromRS := toCli
	fromRS.Src, fromRS.SrcPort = rs.Addr(), rs.Port()
	// What the director sent to the real server, and that packet as the
	// client sent it.
	toRS := frame(cli, rs, proto, data, macInt, macRS)
	toRS.TTL = 63
	fromCli := toRS
	fromCli.Dst, fromCli.DstPort = vip.Addr(), vip.Port()

	// in: an error from the client side quoting n bytes of toCli.
	in := func(typ, code uint8, info uint32, n int) (testutil.Frame, []byte) {
		f := icmpErr(fa.cli, fa.vip, typ, code, info, cut(toCli.IP(), n), macCli, macExt)
		o := icmpErr(fa.cli, fa.rs, typ, code, info, cut(fromRS.IP(), n), macInt, macRS)
		o.TTL = 63
		return f, o.Bytes()
	}
	// out: an error from src on the real-server side quoting n bytes of toRS.
	out := func(src netip.Addr, typ, code uint8, info uint32, n int) (testutil.Frame, []byte) {
		f := icmpErr(src, fa.cli, typ, code, info, cut(toRS.IP(), n), macRS, macInt)
		o := icmpErr(fa.vip, fa.cli, typ, code, info, cut(fromCli.IP(), n), macExt, macCli)
		o.TTL = 63
		return f, o.Bytes()
	}
	whole := 1 << 16
	var cs []dpCase
	add := func(name string, f testutil.Frame, o []byte, ingress int, r XvsReason) {
		cs = append(cs, dpCase{name: name, in: f.Bytes(), ingress: ingress, want: vRedirect, out: o, reason: r})
	}
	f, o := in(unreach, unreachCode, 0, whole)
	add("unreachable from client", f, o, e.ext.index, XvsReasonREASON_FWD_ICMP_IN)
	f, o = in(unreach, unreachCode, 0, hl+8)
	add("unreachable from client, 8 bytes quoted", f, o, e.ext.index, XvsReasonREASON_FWD_ICMP_IN)
	f, o = in(timeExceeded(fa.cli), 0, 0, hl+20)
	add("time exceeded from client, 20 bytes quoted", f, o, e.ext.index, XvsReasonREASON_FWD_ICMP_IN)
	f, o = out(fa.rs, unreach, unreachCode, 0, whole)
	add("unreachable from real server", f, o, e.intl.index, XvsReasonREASON_FWD_ICMP_OUT)
	f, o = out(fa.rs, unreach, unreachCode, 0, hl+8)
	add("unreachable from real server, 8 bytes quoted", f, o, e.intl.index, XvsReasonREASON_FWD_ICMP_OUT)
	f, o = out(fa.noNeigh, timeExceeded(fa.cli), 0, 0, whole)
	add("time exceeded from a router on the server side", f, o, e.intl.index, XvsReasonREASON_FWD_ICMP_OUT)
	f, o = out(fa.rs, tooBig, tooBigCode, 1400, whole)
	add("too big from real server", f, o, e.intl.index, XvsReasonREASON_FWD_ICMP_OUT)
	if fa.cli.Is4() {
		f, o = in(testutil.ICMPSourceQuench, 0, 0, whole)
		add("source quench from client", f, o, e.ext.index, XvsReasonREASON_FWD_ICMP_IN)
	}

	other := frame(vip, ap(fa.cli, cport+60), proto, data, macExt, macCli)
	noConn := icmpErr(fa.cli, fa.vip, unreach, unreachCode, 0, other.IP(), macCli, macExt)
	bad, _ := in(unreach, unreachCode, 0, whole)
	badB := bad.Bytes()
	p, _ := testutil.ParseFrame(badB)
	badB[p.L4Off+2] ^= 0x40
	ttl1, _ := in(unreach, unreachCode, 0, whole)
	ttl1.TTL = 1
	noPorts := icmpErr(fa.cli, fa.vip, unreach, unreachCode, 0, cut(toCli.IP(), hl+2), macCli, macExt)
	echo := icmpErr(fa.cli, fa.vip, testutil.ICMPEcho, 0, 0, payload, macCli, macExt)
	if fa.cli.Is6() {
		echo.ICMP.Type = testutil.ICMP6EchoRequest
	}
	cs = append(cs,
		dpCase{name: "error without conn passes", in: noConn.Bytes(), ingress: e.ext.index, want: vPass,
			reason: XvsReasonREASON_PASS_ICMP},
		dpCase{name: "bad icmp checksum drops", in: badB, ingress: e.ext.index, want: vDrop,
			reason: XvsReasonREASON_DROP_ICMP_CSUM},
		dpCase{name: "error with ttl 1 passes", in: ttl1.Bytes(), ingress: e.ext.index, want: vPass,
			reason: XvsReasonREASON_PASS_TTL},
		dpCase{name: "quote without ports passes", in: noPorts.Bytes(), ingress: e.ext.index, want: vPass,
			reason: XvsReasonREASON_PASS_ICMP},
		dpCase{name: "echo passes", in: echo.Bytes(), ingress: e.ext.index, want: vPass,
			reason: XvsReasonREASON_PASS_NOT_L4},
	)
	// a quoted first fragment (the datagram's L4 checksum, in the quote)
	big, bigRS := toCli, fromRS
	big.Payload, bigRS.Payload = make([]byte, 300), make([]byte, 300)
	fq, err := testutil.Fragments(big.Bytes(), 128, 9)
	if err != nil {
		panic(err)
	}
	fo, err := testutil.Fragments(bigRS.Bytes(), 128, 9)
	if err != nil {
		panic(err)
	}
	ff := icmpErr(fa.cli, fa.vip, unreach, unreachCode, 0, fq[0][14:], macCli, macExt)
	ffo := icmpErr(fa.cli, fa.rs, unreach, unreachCode, 0, fo[0][14:], macInt, macRS)
	ffo.TTL = 63
	add("unreachable quoting a first fragment", ff, ffo.Bytes(), e.ext.index, XvsReasonREASON_FWD_ICMP_IN)
	if fa.cli.Is4() {
		later := toCli
		later.FragOff = 10
		lq := icmpErr(fa.cli, fa.vip, unreach, unreachCode, 0, later.IP(), macCli, macExt)
		cs = append(cs, dpCase{name: "quote of a later fragment passes", in: lq.Bytes(), ingress: e.ext.index,
			want: vPass, reason: XvsReasonREASON_PASS_ICMP})
	}
	return cs
}

func TestICMPErrors(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	for _, en := range entries {
		for fi, fa := range families {
			for pi, pr := range protos {
				for _, c := range icmpCases(e, fi, pi) {
					t.Run(fmt.Sprintf("%s/%s/%s/%s", en.name, fa.name, pr.name, c.name), func(t *testing.T) {
						e.check(t, en, c)
					})
				}
			}
		}
	}
}

// TestICMPStats: a translated error counts as an in- or out-packet of
// its conn's service and real server, and does not claim the new conn.
func TestICMPStats(t *testing.T) {
	e := newEnv(t)
	const dest, svc = 70, 71
	e.putDest(dest, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	cli, vip, rs := ap(cli4, 43000), ap(vip4, vport), ap(rs4, rport)
	k := e.addConn(cli, vip, rs, testutil.ProtoTCP, svc, dest)
	toCli := frame(vip, cli, testutil.ProtoTCP, testutil.TCPAck, macExt, macCli)
	toRS := frame(cli, rs, testutil.ProtoTCP, testutil.TCPAck, macInt, macRS)
	in := icmpErr(cli4, vip4, 3, 3, 0, toCli.IP(), macCli, macExt).Bytes()
	out := icmpErr(rs4, cli4, 3, 3, 0, toRS.IP(), macRS, macInt).Bytes()
	var want XvsStats
	for _, en := range entries {
		for _, c := range []struct {
			b       []byte
			ingress int
			out     bool
		}{{in, e.ext.index, false}, {out, e.intl.index, true}} {
			got, _, err := e.run(en, c.b, c.ingress)
			if err != nil || got != en.code(vRedirect) {
				t.Fatalf("%s: verdict %d, %v", en.name, got, err)
			}
			if c.out {
				want.Outpkts++
				want.Outbytes += uint64(len(c.b) - 14)
			} else {
				want.Inpkts++
				want.Inbytes += uint64(len(c.b) - 14)
			}
		}
	}
	if s := e.stats(e.objs.XvsSvcStats, svc); s != want {
		t.Errorf("svc stats %+v, want %+v", s, want)
	}
	if s := e.stats(e.objs.XvsDestStats, dest); s != want {
		t.Errorf("dest stats %+v, want %+v", s, want)
	}
	if c := e.conn(k); c.Flags&uint8(XvsConnFlagsCONN_F_NEW) == 0 || c.State != 0 {
		t.Errorf("conn flags %d state %d: want CONN_F_NEW kept, state NONE", c.Flags, c.State)
	}
}

// TestFragNeeded: a DF packet too big for the egress link is answered with
// fragmentation needed / packet too big from the VIP, quoting the packet
// as the sender sent it; without DF it goes to the kernel rewritten.
func TestFragNeeded(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	data := testutil.TCPAck | testutil.TCPPsh
	const cport6 = 44004
	for pi, pr := range protos {
		e.addConn(ap(cli6, cport6+uint16(pi)), ap(vip6, vport), ap(rsMTU6, rport), pr.proto, svcTCPID+v6IDs, destMTU+v6IDs)
	}
	var cs []dpCase
	for pi, pr := range protos {
		cport := cportOf(0, pi)
		big := frame(ap(cli4, cport+4), ap(vip4, vport), pr.proto, data, macCli, macExt)
		big.FragOff, big.Payload = testutil.IPv4DF, make([]byte, 1000)
		rev := frame(ap(rs4, rport), ap(cli4, cport), pr.proto, data, macRS, macInt)
		rev.FragOff, rev.Payload = testutil.IPv4DF, make([]byte, 1600)
		big6 := frame(ap(cli6, cport6+uint16(pi)), ap(vip6, vport), pr.proto, data, macCli, macExt)
		big6.Payload = make([]byte, 1400)
		vlan := big
		vlan.VLAN, vlan.VLANID = true, 7
		cs = append(cs,
			dpCase{name: pr.name + "/ipv4 client", in: big.Bytes(), ingress: e.ext.index, want: vTX,
				wantTC: vp(vRedirect), out: icmpReply(big, vip4, 3, 4, 600), outTC: icmpReplyTC(big, vip4, 3, 4, 600),
				reason: XvsReasonREASON_TX_FRAG_NEEDED},
			dpCase{name: pr.name + "/ipv4 real server reply", in: rev.Bytes(), ingress: e.intl.index, want: vTX,
				wantTC: vp(vRedirect), out: icmpReply(rev, vip4, 3, 4, 1500), outTC: icmpReplyTC(rev, vip4, 3, 4, 1500),
				reason: XvsReasonREASON_TX_FRAG_NEEDED},
			dpCase{name: pr.name + "/ipv6 client", in: big6.Bytes(), ingress: e.ext.index, want: vTX,
				wantTC: vp(vRedirect), out: icmpReply(big6, vip6, 2, 0, 1280), outTC: icmpReplyTC(big6, vip6, 2, 0, 1280),
				reason: XvsReasonREASON_TX_FRAG_NEEDED},
			// TC: the skb helpers refuse an inline VLAN tag; the
			// packet goes to the kernel rewritten, as before.
			dpCase{name: pr.name + "/ipv4 client with vlan tag", in: vlan.Bytes(), ingress: e.ext.index, want: vTX,
				out: icmpReply(vlan, vip4, 3, 4, 600), reason: XvsReasonREASON_TX_FRAG_NEEDED,
				wantTC: vp(vPass), outTC: rewritten(vlan, ap(rsMTU4, rport)), reasonT: rp(XvsReasonREASON_PASS_MTU)},
		)
	}
	for _, en := range entries {
		for _, c := range cs {
			t.Run(en.name+"/"+c.name, func(t *testing.T) { e.check(t, en, c) })
		}
	}
}

// rewritten is f with its destination rewritten to to, nothing else.
func rewritten(f testutil.Frame, to netip.AddrPort) []byte {
	f.Dst, f.DstPort = to.Addr(), to.Port()
	return f.Bytes()
}

// TestPortReuse: a SYN that hits a conn in TIME_WAIT or CLOSE is punted
// (the daemon expires the old conn and schedules anew); written back by
// the daemon it follows the old conn. Other segments, other states and a
// stale daemon keep the old conn.
func TestPortReuse(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	for _, en := range entries {
		for fi, fa := range families {
			cport := cportOf(fi, 0)
			cli, vip, rs := ap(fa.cli, cport), ap(fa.vip, vport), ap(fa.rs, rport)
			k := connKey(cli, vip, testutil.ProtoTCP)
			syn := frame(cli, vip, testutil.ProtoTCP, testutil.TCPSyn, macCli, macExt)
			ack := frame(cli, vip, testutil.ProtoTCP, testutil.TCPAck, macCli, macExt)
			fwd := func(f testutil.Frame) []byte {
				f.Dst, f.DstPort, f.TTL, f.DstMAC, f.SrcMAC = rs.Addr(), rs.Port(), 63, macRS, macInt
				return f.Bytes()
			}
			for _, c := range []struct {
				name    string
				state   XvsTcpState
				f       testutil.Frame
				ingress int
				stale   bool
				want    verdict
				out     []byte
				reason  XvsReason
				after   XvsTcpState
			}{
				{"syn on time_wait punts", XvsTcpStateSTATE_TIME_WAIT, syn, e.ext.index, false, vRedirect, nil, XvsReasonREASON_PUNT, XvsTcpStateSTATE_TIME_WAIT},
				{"syn on close punts", XvsTcpStateSTATE_CLOSE, syn, e.ext.index, false, vRedirect, nil, XvsReasonREASON_PUNT, XvsTcpStateSTATE_CLOSE},
				{"written back syn on time_wait forwards", XvsTcpStateSTATE_TIME_WAIT, syn, e.punt.index, false, vRedirect, fwd(syn), XvsReasonREASON_FWD_IN, XvsTcpStateSTATE_SYN_RECV},
				{"syn on established forwards", XvsTcpStateSTATE_ESTABLISHED, syn, e.ext.index, false, vRedirect, fwd(syn), XvsReasonREASON_FWD_IN, XvsTcpStateSTATE_ESTABLISHED},
				{"syn on fin_wait forwards", XvsTcpStateSTATE_FIN_WAIT, syn, e.ext.index, false, vRedirect, fwd(syn), XvsReasonREASON_FWD_IN, XvsTcpStateSTATE_SYN_RECV},
				{"ack on time_wait forwards", XvsTcpStateSTATE_TIME_WAIT, ack, e.ext.index, false, vRedirect, fwd(ack), XvsReasonREASON_FWD_IN, XvsTcpStateSTATE_TIME_WAIT},
				{"syn on time_wait with stale daemon forwards", XvsTcpStateSTATE_TIME_WAIT, syn, e.ext.index, true, vRedirect, fwd(syn), XvsReasonREASON_FWD_IN, XvsTcpStateSTATE_SYN_RECV},
			} {
				t.Run(fmt.Sprintf("%s/%s/%s", en.name, fa.name, c.name), func(t *testing.T) {
					cn := e.conn(k)
					cn.State, cn.Flags = uint8(c.state), 0
					e.putConn(k, cn)
					if c.stale {
						e.setStaleCfg()
						defer e.setCfg(uint32(e.punt.index), 1<<62)
					}
					e.check(t, en, dpCase{name: c.name, in: c.f.Bytes(), ingress: c.ingress, want: c.want,
						out: c.out, reason: c.reason})
					if s := e.conn(k).State; s != uint8(c.after) {
						t.Errorf("state %d, want %d", s, c.after)
					}
				})
			}
		}
	}
}

// TestFragments: fragments of tracked conns in both directions, in order
// and out of order, IPv4 and IPv6, TCP and UDP.
func TestFragments(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	data := testutil.TCPAck | testutil.TCPPsh
	id := uint16(0x5000)
	for _, en := range entries {
		for fi, fa := range families {
			for pi, pr := range protos {
				cport := cportOf(fi, pi)
				cli, vip, rs := ap(fa.cli, cport), ap(fa.vip, vport), ap(fa.rs, rport)
				name := fmt.Sprintf("%s/%s/%s/", en.name, fa.name, pr.name)
				// split returns the fragments of f and of f as the
				// datapath forwards it, with a fresh id.
				split := func(f testutil.Frame, fwd func(*testutil.Frame)) ([][]byte, [][]byte) {
					id++
					f.ID, f.Payload = id, make([]byte, 300)
					for i := range f.Payload {
						f.Payload[i] = byte(i)
					}
					in, err := testutil.Fragments(f.Bytes(), 128, uint32(id)<<8)
					if err != nil {
						t.Fatal(err)
					}
					fwd(&f)
					out, err := testutil.Fragments(f.Bytes(), 128, uint32(id)<<8)
					if err != nil {
						t.Fatal(err)
					}
					return in, out
				}
				toRS := func(f *testutil.Frame) {
					f.Dst, f.DstPort, f.TTL, f.DstMAC, f.SrcMAC = rs.Addr(), rs.Port(), 63, macRS, macInt
				}
				toCli := func(f *testutil.Frame) {
					f.Src, f.SrcPort, f.TTL, f.DstMAC, f.SrcMAC = vip.Addr(), vip.Port(), 63, macCli, macExt
				}
				t.Run(name+"in order", func(t *testing.T) {
					in, out := split(frame(cli, vip, pr.proto, data, macCli, macExt), toRS)
					if len(in) != 3 {
						t.Fatalf("%d fragments, want 3", len(in))
					}
					for i := range in {
						e.check(t, en, dpCase{name: fmt.Sprint(i), in: in[i], ingress: e.ext.index, want: vRedirect,
							out: out[i], reason: XvsReasonREASON_FWD_IN})
					}
				})
				t.Run(name+"reverse in order", func(t *testing.T) {
					in, out := split(frame(rs, cli, pr.proto, data, macRS, macInt), toCli)
					for i := range in {
						e.check(t, en, dpCase{name: fmt.Sprint(i), in: in[i], ingress: e.intl.index, want: vRedirect,
							out: out[i], reason: XvsReasonREASON_FWD_OUT})
					}
				})
				t.Run(name+"later before first", func(t *testing.T) {
					in, out := split(frame(cli, vip, pr.proto, data, macCli, macExt), toRS)
					e.check(t, en, dpCase{in: in[2], ingress: e.ext.index, want: vPass,
						reason: XvsReasonREASON_PASS_FRAGMENT})
					e.check(t, en, dpCase{in: in[0], ingress: e.ext.index, want: vRedirect, out: out[0],
						reason: XvsReasonREASON_FWD_IN})
					e.check(t, en, dpCase{in: in[1], ingress: e.ext.index, want: vRedirect, out: out[1],
						reason: XvsReasonREASON_FWD_IN})
				})
				t.Run(name+"first fragment without conn passes", func(t *testing.T) {
					in, _ := split(frame(ap(fa.cli, cport+70), vip, pr.proto, testutil.TCPSyn, macCli, macExt), toRS)
					for i := range in {
						e.check(t, en, dpCase{in: in[i], ingress: e.ext.index, want: vPass,
							reason: XvsReasonREASON_PASS_FRAGMENT})
					}
				})
			}
		}
	}
}

// TestFragmentStats: later fragments count in their conn's statistics.
func TestFragmentStats(t *testing.T) {
	e := newEnv(t)
	const dest, svc = 80, 81
	e.putDest(dest, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	cli, vip, rs := ap(cli4, 43100), ap(vip4, vport), ap(rs4, rport)
	e.addConn(cli, vip, rs, testutil.ProtoUDP, svc, dest)
	f := frame(cli, vip, testutil.ProtoUDP, 0, macCli, macExt)
	f.Payload = make([]byte, 300)
	frags, err := testutil.Fragments(f.Bytes(), 128, 0)
	if err != nil {
		t.Fatal(err)
	}
	xdp := entries[0]
	var want XvsStats
	want.Conns = 1
	for _, b := range frags {
		got, _, err := e.run(xdp, b, e.ext.index)
		if err != nil || got != xdp.code(vRedirect) {
			t.Fatalf("verdict %d, %v", got, err)
		}
		want.Inpkts++
		want.Inbytes += uint64(len(b) - 14)
	}
	if s := e.stats(e.objs.XvsSvcStats, svc); s != want {
		t.Errorf("svc stats %+v, want %+v", s, want)
	}
}

// setBudget writes bucket idx; last (bpf_ktime_get_ns clock) and tokens
// set its state (0, 0: full at its next use).
func (e *env) setBudget(idx uint32, rate, burst uint64, tokens int64, last uint64) {
	e.t.Helper()
	b := XvsBudget{Rate: rate, Burst: burst, Tokens: tokens, LastNs: last}
	if err := e.objs.XvsBudget.Put(idx, b); err != nil {
		e.t.Fatal(err)
	}
}

// TestPuntBudget: first packets beyond a service's or the global burst are
// dropped, refilled tokens admit more, established flows never wait.
func TestPuntBudget(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	global := e.objs.XvsBudget.MaxEntries() - 1 // XVS_BUDGET_GLOBAL
	cport := cportOf(0, 0)
	vip := ap(vip4, vport)
	hit := frame(ap(cli4, cport), vip, testutil.ProtoTCP, testutil.TCPAck, macCli, macExt)
	n := uint16(0)
	syn := func(proto uint8) []byte {
		n++
		return frame(ap(cli4, 30000+n), vip, proto, testutil.TCPSyn, macCli, macExt).Bytes()
	}
	// burst sends count first packets and returns punts and drops.
	burst := func(t *testing.T, en entry, proto uint8, count int) (punts, drops uint64) {
		e.resetReasons()
		for range count {
			if _, _, err := e.run(en, syn(proto), e.ext.index); err != nil {
				t.Fatal(err)
			}
		}
		r := e.reasons()
		return r[XvsReasonREASON_PUNT], r[XvsReasonREASON_DROP_PUNT_BUDGET]
	}
	for _, en := range entries {
		t.Run(en.name+"/service burst", func(t *testing.T) {
			e.setBudget(svcTCPID, 1, 3, 0, 0)
			e.setBudget(global, 0, 0, 0, 0)
			defer e.setBudget(svcTCPID, 0, 0, 0, 0)
			if p, d := burst(t, en, testutil.ProtoTCP, 10); p != 3 || d != 7 {
				t.Errorf("punts %d drops %d, want 3 and 7", p, d)
			}
			// another service is not limited
			if p, d := burst(t, en, testutil.ProtoUDP, 10); p != 10 || d != 0 {
				t.Errorf("udp: punts %d drops %d, want 10 and 0", p, d)
			}
			// established flows never touch the bucket
			e.check(t, en, dpCase{in: hit.Bytes(), ingress: e.ext.index, want: vRedirect,
				out: func() []byte {
					f := hit
					f.Dst, f.DstPort, f.TTL, f.DstMAC, f.SrcMAC = rs4, rport, 63, macRS, macInt
					return f.Bytes()
				}(), reason: XvsReasonREASON_FWD_IN})
			// two seconds of rate 1: two more tokens
			e.setBudget(svcTCPID, 1, 3, 0, monoNow(t)-2_000_000_000-1000)
			if p, d := burst(t, en, testutil.ProtoTCP, 5); p != 2 || d != 3 {
				t.Errorf("after refill: punts %d drops %d, want 2 and 3", p, d)
			}
		})
		t.Run(en.name+"/global burst", func(t *testing.T) {
			e.setBudget(svcTCPID, 0, 0, 0, 0)
			e.setBudget(global, 1, 4, 0, 0)
			defer e.setBudget(global, 0, 0, 0, 0)
			if p, d := burst(t, en, testutil.ProtoTCP, 3); p != 3 || d != 0 {
				t.Errorf("tcp: punts %d drops %d, want 3 and 0", p, d)
			}
			if p, d := burst(t, en, testutil.ProtoUDP, 3); p != 1 || d != 2 {
				t.Errorf("udp: punts %d drops %d, want 1 and 2", p, d)
			}
		})
		t.Run(en.name+"/service tokens go back when the global bucket is empty", func(t *testing.T) {
			e.setBudget(svcTCPID, 1, 5, 0, 0)
			e.setBudget(global, 1, 1, 0, 0)
			defer e.setBudget(svcTCPID, 0, 0, 0, 0)
			defer e.setBudget(global, 0, 0, 0, 0)
			if p, d := burst(t, en, testutil.ProtoTCP, 3); p != 1 || d != 2 {
				t.Errorf("punts %d drops %d, want 1 and 2", p, d)
			}
			var b XvsBudget
			if err := e.objs.XvsBudget.Lookup(uint32(svcTCPID), &b); err != nil {
				t.Fatal(err)
			}
			if b.Tokens != 4 {
				t.Errorf("service tokens %d, want 4", b.Tokens)
			}
		})
	}
}

// icmpSeeds are ICMP errors with quoted headers for the fuzz target.
func icmpSeeds(e *env) [][]byte {
	var out [][]byte
	for fi := range families {
		for pi := range protos {
			for _, c := range icmpCases(e, fi, pi) {
				out = append(out, c.in)
			}
		}
	}
	f := frame(ap(cli4, cportOf(0, 1)), ap(vip4, vport), testutil.ProtoUDP, 0, macCli, macExt)
	f.Payload = make([]byte, 300)
	frags, _ := testutil.Fragments(f.Bytes(), 128, 0)
	out = append(out, frags...)
	f6 := frame(ap(cli6, cportOf(1, 1)), ap(vip6, vport), testutil.ProtoUDP, 0, macCli, macExt)
	f6.Payload = make([]byte, 300)
	frags, _ = testutil.Fragments(f6.Bytes(), 128, 7)
	out = append(out, frags...)
	return out
}

func TestICMPChecksumVerifier(t *testing.T) {
	// The test helper itself: a quote with a wrong embedded checksum is
	// reported, a good one is not.
	toCli := frame(ap(vip4, vport), ap(cli4, 1), testutil.ProtoUDP, 0, macExt, macCli)
	good := icmpErr(cli4, vip4, 3, 3, 0, toCli.IP(), macCli, macExt).Bytes()
	if err := testutil.VerifyChecksums(good); err != nil {
		t.Fatalf("good frame: %v", err)
	}
	q := toCli.IP()
	binary.BigEndian.PutUint16(q[26:], binary.BigEndian.Uint16(q[26:])+1) // udp checksum
	bad := icmpErr(cli4, vip4, 3, 3, 0, q, macCli, macExt).Bytes()
	if err := testutil.VerifyChecksums(bad); err == nil {
		t.Errorf("bad quoted udp checksum not reported")
	}
}

// TestTCFragNeededGSO: a GSO skb (GRO on the ingress device) whose
// segments do not fit the egress MTU is answered like a single packet (the
// answer quotes the start of the aggregate and is not GSO itself); without
// DF it goes to the kernel rewritten, which segments and fragments it.
func TestTCFragNeededGSO(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	tc := entries[1]
	big := frame(ap(cli4, cportOf(0, 0)+4), ap(vip4, vport), testutil.ProtoTCP, testutil.TCPAck, macCli, macExt)
	big.FragOff, big.Payload = testutil.IPv4DF, make([]byte, 2000)
	e.resetReasons()
	got, out, err := e.runGSO(tc, big.Bytes(), e.ext.index, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got != tc.code(vRedirect) {
		t.Fatalf("verdict %d, want redirect; reasons %v", got, e.reasons())
	}
	if want := icmpReplyTC(big, vip4, 3, 4, 600); string(out) != string(want) {
		t.Errorf("output differs\n got %x\nwant %x", out, want)
	}
	// What skb_checksum_help does to a CHECKSUM_PARTIAL skb whose
	// csum_start is the quoted TCP header: it must change nothing.
	l4 := out[14+28+20:]
	done := append([]byte(nil), out...)
	binary.BigEndian.PutUint16(done[14+28+20+16:], testutil.Checksum(l4, 0))
	if string(done) != string(out) {
		t.Errorf("a checksum completion over the quote changes the answer")
	}
	if r := e.reasons(); len(r) != 1 || r[XvsReasonREASON_TX_FRAG_NEEDED] != 1 {
		t.Errorf("reasons %v", r)
	}
	noDF := big
	noDF.FragOff = 0
	e.resetReasons()
	got, out, err = e.runGSO(tc, noDF.Bytes(), e.ext.index, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got != tc.code(vPass) {
		t.Fatalf("no DF: verdict %d, want pass; reasons %v", got, e.reasons())
	}
	if want := rewritten(noDF, ap(rsMTU4, rport)); string(out) != string(want) {
		t.Errorf("no DF: output differs\n got %x\nwant %x", out, want)
	}
	if r := e.reasons(); len(r) != 1 || r[XvsReasonREASON_PASS_MTU] != 1 {
		t.Errorf("no DF: reasons %v", r)
	}
}
