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

func endToEnd(t *testing.T, en entry) {
	tp := newE2ETopo(t, en)
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
