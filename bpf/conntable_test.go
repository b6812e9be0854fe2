package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"xvs/testutil"
)

// Where a conn's two keys are: the new pair (half-open, xvs_conns_new and
// xvs_rconns_new), the main pair (established, xvs_conns and xvs_rconns).
type pairAt int

const (
	atNone pairAt = iota
	atNew
	atMain
	atBoth
)

func (p pairAt) String() string { return [...]string{"none", "new", "main", "both"}[p] }

// pairOf says which pair holds client-side key k with server-side key rk;
// in a pair, both keys must be there and rk must name k (its service and
// virtual port).
func (e *env) pairOf(t *testing.T, k, rk XvsConnKey) pairAt {
	t.Helper()
	in := func(conns, rconns *ebpf.Map) bool {
		var c XvsConn
		cerr := conns.Lookup(k, &c)
		var back XvsRconn
		rerr := rconns.Lookup(rk, &back)
		if (cerr == nil) != (rerr == nil) {
			t.Errorf("client side: %v, server side: %v: the keys disagree", cerr, rerr)
		}
		if want := (XvsRconn{SvcId: c.SvcId, Vport: k.Dport}); cerr == nil && rerr == nil && back != want {
			t.Errorf("server side maps to %+v, want %+v", back, want)
		}
		return cerr == nil
	}
	p := atNone
	if in(e.objs.XvsConnsNew, e.objs.XvsRconnsNew) {
		p = atNew
	}
	if in(e.objs.XvsConns, e.objs.XvsRconns) {
		if p == atNew {
			return atBoth
		}
		p = atMain
	}
	return p
}

// sendOK runs f through en from ifindex and wants a redirect to out.
func (e *env) sendOK(t *testing.T, en entry, f testutil.Frame, ifindex int, out []byte) {
	t.Helper()
	got, data, err := e.run(en, f.Bytes(), ifindex)
	if err != nil {
		t.Fatal(err)
	}
	if got != en.code(vRedirect) {
		t.Fatalf("verdict %d, want redirect; reasons %v", got, e.reasons())
	}
	if out != nil && !bytes.Equal(data, out) {
		t.Fatalf("output differs\n got %x\nwant %x", data, out)
	}
}

// connTablesNew is the size of the new pair in TestConnTables.
const connTablesNew = 64

// TestConnTables: the two pairs of conn tables, in one datapath with a
// small new pair (loading one costs seconds).
func TestConnTables(t *testing.T) {
	e := newEnvSized(t, map[string]uint32{"xvs_conns_new": connTablesNew, "xvs_rconns_new": connTablesNew})
	t.Run("promotion", func(t *testing.T) { testPromotion(t, e.with(t)) })
	t.Run("shared server key", func(t *testing.T) { testSharedServerKey(t, e.with(t)) })
	// Last: it leaves the new pair full.
	t.Run("flood keeps established", func(t *testing.T) { testFloodKeepsEstablished(t, e.with(t)) })
}

// testSharedServerKey: two services whose conns share the real server and
// the client's port, hence one server-side key. struct rconn holds only
// the service id and virtual port: each reply goes out from the VIP of
// the conn that holds the key, taken from the service's xvs_vips entry.
// The newer conn takes the key over (as maps.InstallConn installs it),
// as a newer conn shadows an older one in IPVS's out-lookup; both still
// forward client -> real server.
func testSharedServerKey(t *testing.T, e *env) {
	avail := XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)}
	const proto = testutil.ProtoUDP
	n := 0
	for _, en := range entries {
		for _, fa := range families {
			n++
			t.Run(en.name+"/"+fa.name, func(t *testing.T) {
				svcA, svcB := uint32(100+2*n), uint32(101+2*n)
				destA, destB := svcA, svcB
				e.putDest(destA, avail)
				e.putDest(destB, avail)
				cli, rs := ap(fa.cli, uint16(52000+n)), ap(fa.rs, rport)
				vipA, vipB := ap(fa.vip, vport), ap(fa.vip.Next(), vport+1)
				rk := rconnKey(cli, rs, proto)
				reply := frame(rs, cli, proto, 0, macRS, macInt)
				from := func(v netip.AddrPort) []byte {
					w := reply
					w.Src, w.SrcPort, w.TTL, w.SrcMAC, w.DstMAC = v.Addr(), v.Port(), 63, macExt, macCli
					return w.Bytes()
				}
				toRS := func(v netip.AddrPort) {
					t.Helper()
					f := frame(cli, v, proto, 0, macCli, macExt)
					w := f
					w.Dst, w.DstPort, w.TTL, w.DstMAC, w.SrcMAC = rs.Addr(), rs.Port(), 63, macRS, macInt
					e.sendOK(t, en, f, e.ext.index, w.Bytes())
				}

				// A: its reply finds A through xvs_vips[svcA] and
				// promotes it.
				kA := e.addConn(cli, vipA, rs, proto, svcA, destA)
				e.sendOK(t, en, reply, e.intl.index, from(vipA))
				if at := e.pairOf(t, kA, rk); at != atMain {
					t.Fatalf("A in pair %s, want main", at)
				}

				// B, newer, same server-side key: new pair, and the
				// main pair's server-side entry now names B.
				kB := connKey(cli, vipB, proto)
				e.putVIP(vipB, proto, svcB)
				e.setDestAddr(destB, rs.Addr())
				c := XvsConn{Dport: be16(rs.Port()), Flags: uint8(XvsConnFlagsCONN_F_NEW), SvcId: svcB, DestId: destB}
				if err := e.objs.XvsConnsNew.Update(kB, c, ebpf.UpdateNoExist); err != nil {
					t.Fatal(err)
				}
				if err := e.objs.XvsRconnsNew.Update(rk, rconn(vipB, svcB), ebpf.UpdateNoExist); err != nil {
					t.Fatal(err)
				}
				if err := e.objs.XvsRconns.Update(rk, rconn(vipB, svcB), ebpf.UpdateExist); err != nil {
					t.Fatal(err)
				}
				e.voidFlows() // as the installer does when it shadows a key
				e.sendOK(t, en, reply, e.intl.index, from(vipB))
				if at := e.pairOf(t, kB, rk); at != atMain {
					t.Fatalf("B in pair %s, want main", at)
				}
				toRS(vipA)
				toRS(vipB)
				e.sendOK(t, en, reply, e.intl.index, from(vipB))

				// The VIP comes from xvs_vips: naming another one there
				// leaves the reply without a conn.
				e.putVIP(ap(other4, vipB.Port()), proto, svcB)
				e.resetReasons()
				got, _, err := e.run(en, reply.Bytes(), e.intl.index)
				if err != nil {
					t.Fatal(err)
				}
				if r := e.reasons(); got != en.code(vPass) || r[XvsReasonREASON_PASS_NO_SVC] != 1 {
					t.Errorf("reply with svcB's VIP gone: verdict %d, reasons %v; want pass, no_svc", got, r)
				}
				e.putVIP(vipB, proto, svcB)
				e.sendOK(t, en, reply, e.intl.index, from(vipB))
			})
		}
	}
}

// testPromotion drives conns through the programs: a conn installed by
// the daemon is found both ways in the new pair, stays there through SYN
// and SYN-ACK, and moves with both keys to the main pair on the ACK that
// establishes it (UDP: on the real server's first reply). The move
// changes no counter, and the conn forwards the same afterwards.
func testPromotion(t *testing.T, e *env) {
	const svc = 70
	dest := uint32(80)
	type step struct {
		out   bool
		flags uint8
		state string
		at    pairAt
	}
	tcpSteps := []step{
		{false, testutil.TCPSyn, "SR", atNew},
		{true, testutil.TCPSyn | testutil.TCPAck, "SR", atNew},
		{false, testutil.TCPAck, "ES", atMain},
		{false, testutil.TCPAck | testutil.TCPPsh, "ES", atMain},
		{true, testutil.TCPAck | testutil.TCPPsh, "ES", atMain},
	}
	udpSteps := []step{
		{false, 0, "NO", atNew},
		{false, 0, "NO", atNew},
		{true, 0, "NO", atMain},
		{false, 0, "NO", atMain},
		{true, 0, "NO", atMain},
	}
	n := 0
	for _, en := range entries {
		for _, fa := range families {
			for _, pr := range protos {
				n++
				t.Run(fmt.Sprintf("%s/%s/%s", en.name, fa.name, pr.name), func(t *testing.T) {
					dest++
					e.putDest(dest, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
					cli, vip, rs := ap(fa.cli, uint16(51000+n)), ap(fa.vip, vport), ap(fa.rs, rport)
					k := e.addConn(cli, vip, rs, pr.proto, svc, dest)
					rk := rconnKey(cli, rs, pr.proto)
					if at := e.pairOf(t, k, rk); at != atNew {
						t.Fatalf("installed conn in pair %s, want new", at)
					}
					steps := tcpSteps
					if pr.proto == testutil.ProtoUDP {
						steps = udpSteps
					}
					for i, s := range steps {
						before := e.dest(dest)
						f := frame(cli, vip, pr.proto, s.flags, macCli, macExt)
						ifindex := e.ext.index
						want := f
						want.Dst, want.DstPort, want.TTL, want.DstMAC, want.SrcMAC = rs.Addr(), rs.Port(), 63, macRS, macInt
						if s.out {
							f = frame(rs, cli, pr.proto, s.flags, macRS, macInt)
							ifindex = e.intl.index
							want = f
							want.Src, want.SrcPort, want.TTL, want.SrcMAC, want.DstMAC = vip.Addr(), vip.Port(), 63, macExt, macCli
						}
						e.sendOK(t, en, f, ifindex, want.Bytes())
						c := e.conn(k)
						if stateNames[c.State] != s.state {
							t.Errorf("step %d: state %s, want %s", i, stateNames[c.State], s.state)
						}
						if at := e.pairOf(t, k, rk); at != s.at {
							t.Errorf("step %d: conn in pair %s, want %s", i, at, s.at)
						}
						// A move changes no counter: only a state change does.
						after := e.dest(dest)
						if i > 0 && steps[i-1].state == s.state && after != before {
							t.Errorf("step %d: dest counters %+v -> %+v without a state change", i, before, after)
						}
					}
					wa, wi := int64(0), int64(1)
					if pr.proto == testutil.ProtoTCP {
						wa, wi = 1, 0
					}
					if d := e.dest(dest); d.Active != wa || d.Inactive != wi {
						t.Errorf("dest active/inactive %d/%d, want %d/%d", d.Active, d.Inactive, wa, wi)
					}
					if s := e.stats(e.objs.XvsDestStats, dest); s.Conns != 1 || s.Inpkts != 3 || s.Outpkts != 2 {
						t.Errorf("dest stats %+v, want 1 conn, 3 in, 2 out", s)
					}
				})
			}
		}
	}
}

// evictOldest is what the daemon (maps.InstallConn) does when the new pair
// is full: remove the oldest half-open conn it installed, both keys, and
// count it out of its dest's class.
func (e *env) evictOldest(t *testing.T, fifo *[]netip.AddrPort, vip, rs netip.AddrPort, dest uint32) {
	t.Helper()
	for len(*fifo) > 0 {
		cli := (*fifo)[0]
		*fifo = (*fifo)[1:]
		k := connKey(cli, vip, testutil.ProtoTCP)
		var c XvsConn
		if err := e.objs.XvsConnsNew.LookupAndDelete(k, &c); err != nil {
			continue // moved to the main pair
		}
		if err := e.objs.XvsRconnsNew.Delete(rconnKey(cli, rs, testutil.ProtoTCP)); err != nil {
			t.Fatal(err)
		}
		d := e.dest(dest)
		if active(c.State) {
			d.Active--
		} else {
			d.Inactive--
		}
		e.putDest(dest, d)
		return
	}
	t.Fatal("new pair full and nothing to evict")
}

// testFloodKeepsEstablished fills the new pair four times over with
// half-open conns (a SYN each, some answered with a SYN-ACK) while a set
// of established conns exists: every established conn is still in the
// main pair and forwards both ways afterwards, and the counters match
// the conns present. The new pair must be empty at the start.
func testFloodKeepsEstablished(t *testing.T, e *env) {
	const est, flood = 32, 4 * connTablesNew
	const newMax = connTablesNew
	const svc, dest = 90, 91
	e.putDest(dest, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	en := entries[0] // xdp; the pairs are shared by both entries
	vip, rs := ap(vip4, vport), ap(rs4, rport)
	handshake := []struct {
		out   bool
		flags uint8
	}{{false, testutil.TCPSyn}, {true, testutil.TCPSyn | testutil.TCPAck}, {false, testutil.TCPAck}}
	send := func(cli netip.AddrPort, out bool, flags uint8) {
		t.Helper()
		if out {
			e.sendOK(t, en, frame(rs, cli, testutil.ProtoTCP, flags, macRS, macInt), e.intl.index, nil)
			return
		}
		e.sendOK(t, en, frame(cli, vip, testutil.ProtoTCP, flags, macCli, macExt), e.ext.index, nil)
	}
	var established []netip.AddrPort
	for i := range est {
		cli := ap(cli4, uint16(30000+i))
		e.addConn(cli, vip, rs, testutil.ProtoTCP, svc, dest)
		for _, s := range handshake {
			send(cli, s.out, s.flags)
		}
		established = append(established, cli)
	}

	var fifo []netip.AddrPort
	for i := range flood {
		cli := ap(cli4, uint16(10000+i))
		for try := 0; ; try++ {
			k := connKey(cli, vip, testutil.ProtoTCP)
			c := XvsConn{Dport: be16(rs.Port()), Flags: uint8(XvsConnFlagsCONN_F_NEW),
				SvcId: svc, DestId: dest}
			err := e.objs.XvsRconnsNew.Update(rconnKey(cli, rs, testutil.ProtoTCP), rconn(vip, svc), ebpf.UpdateAny)
			if err == nil {
				err = e.objs.XvsConnsNew.Update(k, c, ebpf.UpdateNoExist)
				if err != nil {
					_ = e.objs.XvsRconnsNew.Delete(rconnKey(cli, rs, testutil.ProtoTCP))
				}
			}
			if err == nil {
				break
			}
			if !errors.Is(err, unix.E2BIG) || try > 0 {
				t.Fatalf("flood install %d: %v", i, err)
			}
			e.evictOldest(t, &fifo, vip, rs, dest)
		}
		d := e.dest(dest)
		d.Inactive++
		e.putDest(dest, d)
		fifo = append(fifo, cli)
		send(cli, false, testutil.TCPSyn)
		if i%2 == 0 {
			send(cli, true, testutil.TCPSyn|testutil.TCPAck)
		}
	}

	// The new pair is full of the newest half-open conns; the main pair
	// holds the established ones, every one.
	if len(fifo) != newMax {
		t.Errorf("%d half-open conns left, want %d", len(fifo), newMax)
	}
	for _, cli := range fifo {
		if at := e.pairOf(t, connKey(cli, vip, testutil.ProtoTCP), rconnKey(cli, rs, testutil.ProtoTCP)); at != atNew {
			t.Errorf("half-open %s in pair %s, want new", cli, at)
		}
	}
	for _, cli := range established {
		k, rk := connKey(cli, vip, testutil.ProtoTCP), rconnKey(cli, rs, testutil.ProtoTCP)
		if at := e.pairOf(t, k, rk); at != atMain {
			t.Fatalf("established %s in pair %s after the flood, want main", cli, at)
		}
		for _, en := range entries {
			send := func(f testutil.Frame, ifindex int) {
				got, _, err := e.run(en, f.Bytes(), ifindex)
				if err != nil || got != en.code(vRedirect) {
					t.Fatalf("%s: established %s: verdict %d, %v; want redirect", en.name, cli, got, err)
				}
			}
			send(frame(cli, vip, testutil.ProtoTCP, testutil.TCPAck|testutil.TCPPsh, macCli, macExt), e.ext.index)
			send(frame(rs, cli, testutil.ProtoTCP, testutil.TCPAck|testutil.TCPPsh, macRS, macInt), e.intl.index)
		}
		if c := e.conn(k); c.State != uint8(XvsTcpStateSTATE_ESTABLISHED) {
			t.Errorf("established %s in state %s", cli, stateNames[c.State])
		}
	}
	// Every conn present is counted once: established and SYN_RECV are
	// active; nothing leaked with the evicted ones.
	if d := e.dest(dest); d.Active != est+newMax || d.Inactive != 0 {
		t.Errorf("dest active/inactive %d/%d, want %d/0", d.Active, d.Inactive, est+newMax)
	}
}

// TestVIPTupleIsClientSide: a packet addressed to a virtual service is a
// client's, looked up by its client-side key only. Its tuple as a
// server-side key of the main pair (a conn whose client would have the
// VIP's address, which only the director itself could be) is not a reply:
// the packet is a first packet of the service, punted to the daemon. One
// cold lookup less for every first packet (conn_find_first).
func TestVIPTupleIsClientSide(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	vip := ap(vip4, vport)
	rs := ap(rs4, rport)
	k := connKey(vip, vip, testutil.ProtoUDP)
	rk := rconnKey(vip, rs, testutil.ProtoUDP)
	c := XvsConn{Dport: be16(rport), SvcId: svcUDPID, DestId: destRS}
	if err := e.objs.XvsConns.Update(k, c, ebpf.UpdateNoExist); err != nil {
		t.Fatal(err)
	}
	if err := e.objs.XvsRconns.Update(rk, rconn(vip, svcUDPID), ebpf.UpdateNoExist); err != nil {
		t.Fatal(err)
	}
	in := frame(rs, vip, testutil.ProtoUDP, 0, macRS, macInt).Bytes()
	for _, en := range entries {
		t.Run(en.name, func(t *testing.T) {
			e := e.with(t)
			e.check(t, en, dpCase{in: in, ingress: e.intl.index, want: vRedirect, reason: XvsReasonREASON_PUNT})
		})
	}
}
