package bpf

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"xvs/testutil"
)

// TestEndToEnd sends a real TCP connection through the datapath attached to
// veths, in the selftest style:
//
//	cli ns                    dir ns (xvs on ext0, int0 ingress)           rs ns
//	eth0 10.0.0.2 ───── ext0 10.0.0.1        int0 172.16.0.1 ───── eth0 172.16.0.2:8080
//	    ─► 202.103.106.5:80 (VIP, conn installed beforehand)
//
// The first SYN finds no neighbour for the real server and is forwarded by
// the kernel; the rest is rewritten and redirected by the program. The real
// server's and the client's stacks verify every checksum: for XDP the
// endpoints send complete checksums (tx offload off, as the kernel's XDP
// tests do, and a pass-through XDP program on the redirect targets' peers);
// for TC the endpoints keep tx offload on, so packets arrive
// CHECKSUM_PARTIAL (and GSO), and the director's egress has it off, so the
// kernel completes the checksums from the fields the program adjusted.
func TestEndToEnd(t *testing.T) {
	testutil.NeedRoot(t)
	for _, en := range entries {
		t.Run(en.name, func(t *testing.T) { endToEnd(t, en) })
	}
}

type e2eTopo struct {
	cli, dir, rs *testutil.NetNS
}

func newE2ETopo(t *testing.T, en entry) *e2eTopo {
	pfx := testutil.RunPrefix("xvst")
	tp := &e2eTopo{
		cli: testutil.NewNetNS(t, pfx+"-cli"),
		dir: testutil.NewNetNS(t, pfx+"-dir"),
		rs:  testutil.NewNetNS(t, pfx+"-rs"),
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(testutil.Veth(tp.cli, "eth0", tp.dir, "ext0"))
	must(testutil.Veth(tp.dir, "int0", tp.rs, "eth0"))
	must(tp.cli.IP("addr", "add", "10.0.0.2/24", "dev", "eth0"))
	must(tp.cli.IP("route", "add", "default", "via", "10.0.0.1"))
	must(tp.dir.IP("addr", "add", "10.0.0.1/24", "dev", "ext0"))
	must(tp.dir.IP("addr", "add", "172.16.0.1/24", "dev", "int0"))
	must(tp.rs.IP("addr", "add", "172.16.0.2/24", "dev", "eth0"))
	must(tp.rs.IP("route", "add", "default", "via", "172.16.0.1"))
	must(tp.dir.Sysctl("net.ipv4.conf.all.forwarding", "1"))
	if en.xdp {
		must(tp.cli.Ethtool("eth0", "tx", "off"))
		must(tp.rs.Ethtool("eth0", "tx", "off"))
	} else {
		must(tp.dir.Ethtool("ext0", "tx", "off"))
		must(tp.dir.Ethtool("int0", "tx", "off"))
	}
	return tp
}

// attachPass attaches an XDP_PASS program to ifname in ns, which lets the
// veth accept frames redirected to its peer.
func attachPass(t *testing.T, ns *testutil.NetNS, ifname string) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	attach(t, ns, func(idx int) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: p, Interface: idx})
	}, ifname)
}

// attach runs fn with ifname's index inside ns and closes the link at the end.
func attach(t *testing.T, ns *testutil.NetNS, fn func(idx int) (link.Link, error), ifname string) int {
	t.Helper()
	var l link.Link
	var idx int
	err := ns.Do(func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		idx = ifc.Index
		l, err = fn(idx)
		return err
	})
	if err != nil {
		t.Fatalf("attach to %s in %s: %v", ifname, ns.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return idx
}

// e2eSetup builds the topology, loads the datapath with one conn
// (10.0.0.2:41000 -> VIP:80 -> 172.16.0.2:8080) and attaches it. intMTU,
// if not 0, is the MTU of the director's int0 (the real server's side
// keeps 1500, so that only the director knows the smaller link).
func e2eSetup(t *testing.T, en entry, intMTU int) (*e2eTopo, *env, XvsConnKey) {
	tp := newE2ETopo(t, en)
	if intMTU != 0 {
		if err := tp.dir.IP("link", "set", "int0", "mtu", fmt.Sprint(intMTU)); err != nil {
			t.Fatal(err)
		}
	}
	e := &env{t: t}
	e.load()
	const dest, svc, cport = 1, 1, 41000
	e.putDest(dest, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	e.addSvc(vip4, vport, testutil.ProtoTCP, svc)
	k := e.addConn(ap(cli4, cport), ap(vip4, vport), ap(rs4, rport), testutil.ProtoTCP, svc, dest)

	var ifaces []int
	for _, name := range []string{"ext0", "int0"} {
		ifaces = append(ifaces, attach(t, tp.dir, func(idx int) (link.Link, error) {
			if en.xdp {
				return link.AttachXDP(link.XDPOptions{Program: e.objs.XvsXdp, Interface: idx})
			}
			return link.AttachTCX(link.TCXOptions{Program: e.objs.XvsTc, Interface: idx, Attach: ebpf.AttachTCXIngress})
		}, name))
	}
	if en.xdp {
		if err := tp.dir.Do(func() error {
			for _, idx := range ifaces {
				if err := e.objs.XvsTx.Put(uint32(idx), uint32(idx)); err != nil {
					return fmt.Errorf("put %d in xvs_tx: %w", idx, err)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		attachPass(t, tp.cli, "eth0")
		attachPass(t, tp.rs, "eth0")
	}
	return tp, e, k
}

func endToEnd(t *testing.T, en entry) {
	const svc, cport = 1, 41000
	tp, e, k := e2eSetup(t, en, 0)

	var ln net.Listener
	if err := tp.rs.Do(func() (err error) {
		ln, err = net.Listen("tcp4", "172.16.0.2:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // echo server for one connection
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.Copy(c, c)
	}()

	var c net.Conn
	if err := tp.cli.Do(func() (err error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: cport}, Timeout: 5 * time.Second}
		c, err = d.Dial("tcp4", "202.103.106.5:80")
		return err
	}); err != nil {
		t.Fatalf("connect to the vip: %v (reasons %v)", err, e.reasons())
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	data := make([]byte, 4<<20)
	rand.Read(data)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		werr <- err
	}()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil {
		t.Fatalf("read echo: %v (reasons %v)", err, e.reasons())
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("echo: got %d bytes, want the %d sent", len(got), len(data))
	}
	r := e.reasons()
	if r[XvsReasonREASON_FWD_IN] == 0 || r[XvsReasonREASON_FWD_OUT] == 0 {
		t.Errorf("reasons %v: want packets forwarded both ways", r)
	}
	s := e.stats(e.objs.XvsSvcStats, svc)
	if s.Conns != 1 || s.Inbytes < uint64(len(data)) || s.Outbytes < uint64(len(data)) {
		t.Errorf("svc stats %+v: want 1 conn and at least %d bytes each way", s, len(data))
	}
	t.Logf("reasons %v; stats %+v; state %d", r, s, e.conn(k).State)
}

// TestEndToEndPMTU uploads through the VIP to a real server behind a link
// of MTU 1400 that only the director knows: the client's full-size DF
// segments are answered with fragmentation needed from the VIP, the
// client's stack matches the quote to its socket, lowers its path MTU and
// the upload completes (before, the kernel's answer quoted the rewritten
// packet, to the real server, and the client never matched it).
//
//	cli eth0 (1500) ── ext0 dir int0 (MTU 1400) ── eth0 (1500) rs
func TestEndToEndPMTU(t *testing.T) {
	testutil.NeedRoot(t)
	for _, en := range entries {
		t.Run(en.name, func(t *testing.T) {
			tp, e, _ := e2eSetup(t, en, 1400)
			var ln net.Listener
			if err := tp.rs.Do(func() (err error) {
				ln, err = net.Listen("tcp4", "172.16.0.2:8080")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() { // sink: reads all, answers the byte count
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "%d", n)
			}()
			var c net.Conn
			if err := tp.cli.Do(func() (err error) {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 41000}, Timeout: 5 * time.Second}
				c, err = d.Dial("tcp4", "202.103.106.5:80")
				return err
			}); err != nil {
				t.Fatalf("connect to the vip: %v (reasons %v)", err, e.reasons())
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			data := make([]byte, 2<<20)
			rand.Read(data)
			if _, err := c.Write(data); err != nil {
				t.Fatalf("write: %v (reasons %v)", err, e.reasons())
			}
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v (reasons %v)", err, e.reasons())
			}
			if string(got) != fmt.Sprint(len(data)) {
				t.Fatalf("server read %q bytes, want %d (reasons %v)", got, len(data), e.reasons())
			}
			if r := e.reasons(); r[XvsReasonREASON_TX_FRAG_NEEDED] == 0 {
				t.Errorf("reasons %v: want fragmentation needed answered", r)
			}
		})
	}
}

// TestEndToEndUDPFragments: a UDP service whose requests and answers are
// larger than the MTU (DNS over UDP with big answers): the datagrams
// travel as IP fragments both ways through the VIP, each fragment
// rewritten by the datapath (the first one with the ports, later ones
// through xvs_frags), and both stacks reassemble them with valid UDP
// checksums.
func TestEndToEndUDPFragments(t *testing.T) {
	testutil.NeedRoot(t)
	for _, en := range entries {
		t.Run(en.name, func(t *testing.T) {
			tp, e, _ := e2eSetup(t, en, 0)
			const svc, dest, cport = 2, 1, 41001
			e.addSvc(vip4, vport, testutil.ProtoUDP, svc)
			e.addConn(ap(cli4, cport), ap(vip4, vport), ap(rs4, rport), testutil.ProtoUDP, svc, dest)
			var srv net.PacketConn
			if err := tp.rs.Do(func() (err error) {
				srv, err = net.ListenPacket("udp4", "172.16.0.2:8080")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			// answer is 4000 bytes: the request's length, then a pattern
			answer := func(n int) []byte {
				b := make([]byte, 4000)
				for i := range b {
					b[i] = byte(i * 7)
				}
				copy(b, fmt.Sprintf("%08d", n))
				return b
			}
			go func() {
				buf := make([]byte, 65536)
				for {
					n, from, err := srv.ReadFrom(buf)
					if err != nil {
						return
					}
					srv.WriteTo(answer(n), from)
				}
			}()
			var c net.Conn
			if err := tp.cli.Do(func() (err error) {
				c, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 0, 0, 2), Port: cport},
					&net.UDPAddr{IP: net.IPv4(202, 103, 106, 5), Port: vport})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for _, size := range []int{10, 3000} {
				req := make([]byte, size)
				rand.Read(req)
				var got []byte
				for try := 0; try < 3 && got == nil; try++ {
					if _, err := c.Write(req); err != nil {
						t.Fatal(err)
					}
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					buf := make([]byte, 65536)
					if n, err := c.Read(buf); err == nil {
						got = buf[:n]
					}
				}
				if !bytes.Equal(got, answer(size)) {
					t.Fatalf("request of %d bytes: answer of %d bytes, want the 4000 expected (reasons %v)",
						size, len(got), e.reasons())
				}
			}
			r := e.reasons()
			if r[XvsReasonREASON_FWD_OUT] < 6 || r[XvsReasonREASON_FWD_IN] < 3 {
				t.Errorf("reasons %v: want the fragments forwarded both ways", r)
			}
			t.Logf("reasons %v", r)
		})
	}
}
