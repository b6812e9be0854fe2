package bpf

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"xvs/testutil"
)

// flowTTL is XVS_FLOW_TTL_NS: how long a flow cache copy answers.
const flowTTL = 100 * time.Millisecond

// newFlowEnv is newEnv with copies that answer for ttl (xvs_flow_ttl_ns):
// an hour, so that a test's copies are live whatever the machine's load
// makes of its pace.
func newFlowEnv(t *testing.T, ttl time.Duration) *env {
	t.Helper()
	return newEnvWith(t, nil, map[string]any{"xvs_flow_ttl_ns": uint64(ttl)})
}

// flowOut is XVS_FLOW_OUT, the mark of a server-side copy in c.pad.
const flowOut = 0x10000

// pinCPU keeps the thread that runs e's programs on one CPU until t ends:
// the flow cache is per CPU, and a test that expects a copy to answer
// must run the packet where the copy was made.
func (e *env) pinCPU(t *testing.T) {
	t.Helper()
	var old unix.CPUSet
	if err := e.ns.do(func() error { return unix.SchedGetaffinity(0, &old) }); err != nil {
		t.Fatal(err)
	}
	cpu := -1
	for i := range len(old) * bits.UintSize {
		if old.IsSet(i) {
			cpu = i
			break
		}
	}
	if cpu < 0 {
		t.Fatal("no CPU in the affinity mask")
	}
	var one unix.CPUSet
	one.Set(cpu)
	if err := e.ns.do(func() error { return unix.SchedSetaffinity(0, &one) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.ns.do(func() error { return unix.SchedSetaffinity(0, &old) }); err != nil {
			t.Error(err)
		}
	})
}

// flowCopies returns the flow cache entries (any CPU) that answer tuple k,
// read from the mapped array: fast enough not to outlast a copy.
func (e *env) flowCopies(t *testing.T, k XvsConnKey) []XvsFlow {
	t.Helper()
	n := int(e.objs.XvsFlows.MaxEntries())
	size := n * int(unsafe.Sizeof(XvsFlow{}))
	page := unix.Getpagesize()
	mem, err := unix.Mmap(e.objs.XvsFlows.FD(), 0, (size+page-1)/page*page, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap xvs_flows: %v", err)
	}
	defer unix.Munmap(mem)
	var out []XvsFlow
	for _, f := range unsafe.Slice((*XvsFlow)(unsafe.Pointer(&mem[0])), n) {
		if f.Key == k {
			out = append(out, f)
		}
	}
	return out
}

// flowVoid reads xvs_flow_void.
func (e *env) flowVoid(t *testing.T) uint64 {
	t.Helper()
	var v uint64
	if err := e.objs.XvsFlowVoid.Lookup(uint32(0), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// flowConn is an established conn of TestFlowCache and the frames of its
// two directions.
type flowConn struct {
	cli, vip, rs netip.AddrPort
	proto        uint8
	k, rk        XvsConnKey
	dest         uint32
}

// in is a client -> VIP frame with TCP flags; toRS is what the datapath
// makes of it for real server port port.
func (c flowConn) in(flags uint8) testutil.Frame {
	return frame(c.cli, c.vip, c.proto, flags, macCli, macExt)
}

func (c flowConn) toRS(flags uint8, port uint16) []byte {
	w := c.in(flags)
	w.Dst, w.DstPort, w.TTL, w.DstMAC, w.SrcMAC = c.rs.Addr(), port, 63, macRS, macInt
	return w.Bytes()
}

// out is a real server -> client frame; toCli what the datapath makes of
// it.
func (c flowConn) out(flags uint8) testutil.Frame {
	return frame(c.rs, c.cli, c.proto, flags, macRS, macInt)
}

func (c flowConn) toCli(flags uint8) []byte {
	w := c.out(flags)
	w.Src, w.SrcPort, w.TTL, w.SrcMAC, w.DstMAC = c.vip.Addr(), c.vip.Port(), 63, macExt, macCli
	return w.Bytes()
}

// dataFlags are the TCP flags of a segment a copy may answer (0 for UDP).
func (c flowConn) dataFlags() uint8 {
	if c.proto == testutil.ProtoTCP {
		return testutil.TCPAck | testutil.TCPPsh
	}
	return 0
}

// establish installs a conn as the daemon does and runs its first packets
// through en: a TCP handshake and a segment each way, or two UDP
// datagrams each way. After that each direction has one copy, of the
// conn as it is, stamped with its last_seen.
func (e *env) establish(t *testing.T, en entry, c *flowConn, svc uint32) {
	t.Helper()
	c.k = e.addConn(c.cli, c.vip, c.rs, c.proto, svc, c.dest)
	c.rk = rconnKey(c.cli, c.rs, c.proto)
	type step struct {
		out   bool
		flags uint8
	}
	steps := []step{{false, 0}, {true, 0}, {false, 0}, {true, 0}}
	if c.proto == testutil.ProtoTCP {
		steps = []step{{false, testutil.TCPSyn}, {true, testutil.TCPSyn | testutil.TCPAck},
			{false, testutil.TCPAck}, {false, testutil.TCPAck | testutil.TCPPsh}, {true, testutil.TCPAck | testutil.TCPPsh}}
	}
	for i, s := range steps {
		if s.out {
			e.sendOK(t, en, c.out(s.flags), e.intl.index, c.toCli(s.flags))
		} else {
			e.sendOK(t, en, c.in(s.flags), e.ext.index, c.toRS(s.flags, c.rs.Port()))
		}
		// Neither a conn's first packet nor the one that moves it to
		// the main pair is copied (a flow of one packet each way takes
		// no place); the next one is, a UDP conn's in the new pair too
		// (its real server may never answer).
		wantIn, wantOut := 0, 0
		switch {
		case c.proto == testutil.ProtoUDP && i == 2, c.proto == testutil.ProtoTCP && i == 3:
			wantIn = 1
		case i == len(steps)-1:
			wantIn, wantOut = 1, 1
		}
		if got := len(e.flowCopies(t, c.k)); got != wantIn {
			t.Fatalf("after packet %d: %d client-side copies, want %d", i, got, wantIn)
		}
		if got := len(e.flowCopies(t, c.rk)); got != wantOut {
			t.Fatalf("after packet %d: %d server-side copies, want %d", i, got, wantOut)
		}
	}
	if at := e.pairOf(t, c.k, c.rk); at != atMain {
		t.Fatalf("conn in pair %s, want main", at)
	}
	cn := e.conn(c.k)
	for _, w := range []struct {
		key XvsConnKey
		pad uint32
	}{{c.k, 0}, {c.rk, flowOut | uint32(be16(c.vip.Port()))}} {
		got := e.flowCopies(t, w.key)
		if len(got) != 1 {
			t.Fatalf("%d copies of %+v, want 1", len(got), w.key)
		}
		f := got[0]
		want := cn
		want.Pad = w.pad
		if f.C.LastSeen < cn.LastSeen-uint64(flowTTL) || f.C.LastSeen > cn.LastSeen {
			t.Errorf("copy stamped %d, conn last seen %d", f.C.LastSeen, cn.LastSeen)
		}
		want.LastSeen = f.C.LastSeen
		if f.C != want {
			t.Errorf("copy %+v, want %+v", f.C, want)
		}
	}
}

// setDport rewrites the conn's real server port in the main pair without
// voiding the copies, as nothing in xvs does: a packet that still goes
// out to the old port was answered by a copy.
func (e *env) setDport(t *testing.T, c flowConn, port uint16) {
	t.Helper()
	cn := e.conn(c.k)
	cn.Dport = be16(port)
	if err := e.objs.XvsConns.Put(c.k, cn); err != nil {
		t.Fatal(err)
	}
}

// TestFlowCache: the flow cache (lib/flow.h) answers an established
// conn's packets in both directions with the rewrite its conn gives,
// counts them as a lookup does, and leaves last_seen alone; it does not
// answer for what may change the conn (SYN, FIN, RST, a fragment), for a
// real server no longer available, after XVS_FLOW_TTL_NS, or after a
// void.
func TestFlowCache(t *testing.T) {
	e, short := newFlowEnv(t, time.Hour), newEnv(t)
	e.pinCPU(t)
	short.pinCPU(t)
	const svc = 110
	dest := uint32(120)
	avail := XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)}
	n := 0
	newConn := func(t *testing.T, e *env, en entry, fa famAddrs, proto uint8) flowConn {
		n++
		dest++
		e.putDest(dest, avail)
		c := flowConn{cli: ap(fa.cli, uint16(41000+n)), vip: ap(fa.vip, vport), rs: ap(fa.rs, rport),
			proto: proto, dest: dest}
		e.establish(t, en, &c, svc)
		return c
	}
	for _, en := range entries {
		for _, fa := range families {
			for _, pr := range protos {
				name := fmt.Sprintf("%s/%s/%s", en.name, fa.name, pr.name)
				t.Run(name+"/answers", func(t *testing.T) {
					e := e.with(t)
					c := newConn(t, e, en, fa, pr.proto)
					fl := c.dataFlags()
					before, stats := e.conn(c.k).LastSeen, e.stats(e.objs.XvsDestStats, c.dest)
					e.setDport(t, c, rport+1)
					// the server-side key gone too: only the copy knows the conn
					if err := e.objs.XvsRconns.Delete(c.rk); err != nil {
						t.Fatal(err)
					}
					e.sendOK(t, en, c.in(fl), e.ext.index, c.toRS(fl, rport))
					e.sendOK(t, en, c.out(fl), e.intl.index, c.toCli(fl))
					if got := e.conn(c.k).LastSeen; got != before {
						t.Errorf("last_seen %d -> %d on a copy's answer", before, got)
					}
					// bytes: the IP length, the frame less its Ethernet header
					inLen, outLen := uint64(len(c.in(fl).Bytes())-14), uint64(len(c.out(fl).Bytes())-14)
					want := stats
					want.Inpkts, want.Outpkts = stats.Inpkts+1, stats.Outpkts+1
					want.Inbytes, want.Outbytes = stats.Inbytes+inLen, stats.Outbytes+outLen
					if got := e.stats(e.objs.XvsDestStats, c.dest); got != want {
						t.Errorf("dest stats %+v, want %+v", got, want)
					}
					// voided: the conn as it is now, and no reply
					e.voidFlows()
					e.sendOK(t, en, c.in(fl), e.ext.index, c.toRS(fl, rport+1))
					if got, _, err := e.run(en, c.out(fl).Bytes(), e.intl.index); err != nil || got == en.code(vRedirect) {
						t.Errorf("reply of a conn without its server-side key after the void: verdict %d, %v", got, err)
					}
				})
				t.Run(name+"/lapses", func(t *testing.T) {
					e := short.with(t) // copies of the default life
					c := newConn(t, e, en, fa, pr.proto)
					fl := c.dataFlags()
					e.setDport(t, c, rport+1)
					time.Sleep(flowTTL + 10*time.Millisecond)
					lo := monoCoarse(t)
					e.sendOK(t, en, c.in(fl), e.ext.index, c.toRS(fl, rport+1))
					if got, hi := e.conn(c.k).LastSeen, monoNow(t); got < lo || got > hi {
						t.Errorf("last_seen %d not in [%d, %d] after a full lookup", got, lo, hi)
					}
				})
				t.Run(name+"/real server gone", func(t *testing.T) {
					e := e.with(t)
					c := newConn(t, e, en, fa, pr.proto)
					fl := c.dataFlags()
					e.putDest(c.dest, XvsDest{})
					e.resetReasons()
					got, _, err := e.run(en, c.in(fl).Bytes(), e.ext.index)
					if err != nil || got != en.code(vDrop) || e.reasons()[XvsReasonREASON_DROP_NO_DEST] != 1 {
						t.Errorf("verdict %d, %v, reasons %v; want a drop for no real server", got, err, e.reasons())
					}
					// replies of such a conn still go out, as IPVS's do
					e.sendOK(t, en, c.out(fl), e.intl.index, c.toCli(fl))
				})
			}
			for _, seg := range []struct {
				name  string
				flags uint8
				state XvsTcpState
			}{
				{"fin", testutil.TCPFin | testutil.TCPAck, XvsTcpStateSTATE_CLOSE_WAIT},
				{"rst", testutil.TCPRst, XvsTcpStateSTATE_CLOSE},
				{"syn", testutil.TCPSyn, XvsTcpStateSTATE_ESTABLISHED},
				{"no ack", testutil.TCPPsh, XvsTcpStateSTATE_CLOSE},
			} {
				t.Run(fmt.Sprintf("%s/%s/tcp/%s", en.name, fa.name, seg.name), func(t *testing.T) {
					e := e.with(t)
					c := newConn(t, e, en, fa, testutil.ProtoTCP)
					e.setDport(t, c, rport+1)
					e.sendOK(t, en, c.in(seg.flags), e.ext.index, c.toRS(seg.flags, rport+1))
					if got := e.conn(c.k).State; got != uint8(seg.state) {
						t.Errorf("state %s, want %s", stateNames[got], stateNames[seg.state])
					}
				})
			}
		}
	}
}

// flowSet mirrors lib/flow.h flow_set: the first entry of k's set on cpu.
func flowSet(k XvsConnKey, cpu int) uint32 {
	const mul = 0x9e3779b97f4a7c15
	b := (*[40]byte)(unsafe.Pointer(&k))
	w := func(i int) uint64 { return binary.LittleEndian.Uint64(b[8*i:]) }
	x := w(0)
	for i := 1; i < 5; i++ {
		x = (x ^ w(i)) * mul
	}
	return uint32(cpu*FlowsPerCPU) + (uint32(x>>40)%(FlowsPerCPU/2))*2
}

// TestFlowCacheSets: a set holds two flows; a third flow of the same set
// finds no room while both are live and is forwarded by full lookups,
// correctly; once they have lapsed it takes one of their places.
func TestFlowCacheSets(t *testing.T) {
	if unsafe.Sizeof(XvsFlow{}) != 64 {
		t.Fatalf("struct flow is %d bytes, want one cache line", unsafe.Sizeof(XvsFlow{}))
	}
	e, short := newFlowEnv(t, time.Hour), newFlowEnv(t, 20*time.Millisecond)
	e.pinCPU(t)
	short.pinCPU(t)
	const svc, dest = 130, 131
	vip, rs := ap(vip4, vport), ap(rs4, rport)
	// Three clients whose tuples share a set (on every CPU alike).
	var clis []netip.AddrPort
	var set uint32
	for p := uint16(1024); len(clis) < 3; p++ {
		cli := ap(cli4, p)
		s := flowSet(connKey(cli, vip, testutil.ProtoUDP), 0)
		if len(clis) == 0 {
			set = s
		}
		if s == set {
			clis = append(clis, cli)
		}
	}
	en := entries[0]
	// three installs the three flows' conns in x and sends a packet of
	// each, in order; copies counts each flow's copies.
	three := func(x *env) (send func(flowConn), copies func() []int, conns []flowConn) {
		x.putDest(dest, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
		for _, cli := range clis {
			c := flowConn{cli: cli, vip: vip, rs: rs, proto: testutil.ProtoUDP, dest: dest}
			c.k = x.addConn(cli, vip, rs, testutil.ProtoUDP, svc, dest)
			conns = append(conns, c)
		}
		send = func(c flowConn) {
			t.Helper()
			x.sendOK(t, en, c.in(0), x.ext.index, c.toRS(0, rport))
		}
		copies = func() []int {
			var n []int
			for _, c := range conns {
				n = append(n, len(x.flowCopies(t, c.k)))
			}
			return n
		}
		// first packets: not copied
		for _, c := range conns {
			send(c)
		}
		if got := copies(); fmt.Sprint(got) != "[0 0 0]" {
			t.Fatalf("copies per flow %v after the first packets, want none", got)
		}
		for _, c := range conns {
			send(c)
		}
		return send, copies, conns
	}

	send, copies, conns := three(e)
	if got := copies(); fmt.Sprint(got) != "[1 1 0]" {
		t.Fatalf("copies per flow %v, want [1 1 0]: two ways, live ones kept", got)
	}
	send(conns[2]) // full lookup again, still no room
	if got := copies(); fmt.Sprint(got) != "[1 1 0]" {
		t.Fatalf("copies per flow %v after the third flow's second packet, want [1 1 0]", got)
	}

	send, copies, conns = three(short)
	time.Sleep(30 * time.Millisecond)
	send(conns[2])
	if got := copies(); got[2] != 1 || got[0]+got[1] != 1 {
		t.Fatalf("copies per flow %v after the copies lapsed, want the third flow in one way", got)
	}
}

// TestSizeFlows: FlowsPerCPU is the compiled XVS_FLOWS; SizeFlows gives
// every possible CPU its part of the size asked (0: the default), however
// often it is called, turns the cache off for a negative size, and
// refuses a size that is not a power of two of at least one set.
func TestSizeFlows(t *testing.T) {
	spec, err := LoadXvs()
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.Maps[XvsMapXvsFlows].MaxEntries; got != FlowsPerCPU {
		t.Fatalf("xvs_flows compiled with %d entries, FlowsPerCPU is %d", got, FlowsPerCPU)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	perCPU := func() uint32 {
		var v uint32
		if err := spec.Variables["xvs_flows_per_cpu"].Get(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		ask           int
		entries, each uint32
	}{
		{0, uint32(FlowsPerCPU * ncpu), FlowsPerCPU},
		{0, uint32(FlowsPerCPU * ncpu), FlowsPerCPU},
		{1024, uint32(1024 * ncpu), 1024},
		{2, uint32(2 * ncpu), 2},
		{-1, 1, 0},
	} {
		if err := SizeFlows(spec, c.ask); err != nil {
			t.Fatalf("SizeFlows(%d): %v", c.ask, err)
		}
		if got, each := spec.Maps[XvsMapXvsFlows].MaxEntries, perCPU(); got != c.entries || each != c.each {
			t.Errorf("SizeFlows(%d): %d entries, %d per CPU; want %d, %d", c.ask, got, each, c.entries, c.each)
		}
	}
	for _, bad := range []int{1, 3, 1000, 1 << 21} {
		if err := SizeFlows(spec, bad); err == nil {
			t.Errorf("SizeFlows(%d) accepted", bad)
		}
	}
}

// TestFlowCacheOff: without a flow cache (xvs_flows_per_cpu 0) every
// packet looks its conn up, and nothing is copied.
func TestFlowCacheOff(t *testing.T) {
	e := newEnvWith(t, nil, map[string]any{"xvs_flows_per_cpu": uint32(0)})
	e.pinCPU(t)
	const svc, dest = 140, 141
	e.putDest(dest, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	c := flowConn{cli: ap(cli4, 43000), vip: ap(vip4, vport), rs: ap(rs4, rport), proto: testutil.ProtoUDP, dest: dest}
	c.k = e.addConn(c.cli, c.vip, c.rs, c.proto, svc, dest)
	c.rk = rconnKey(c.cli, c.rs, c.proto)
	for range 3 {
		e.sendOK(t, entries[0], c.in(0), e.ext.index, c.toRS(0, rport))
		e.sendOK(t, entries[0], c.out(0), e.intl.index, c.toCli(0))
	}
	e.setDport(t, c, rport+1)
	e.sendOK(t, entries[0], c.in(0), e.ext.index, c.toRS(0, rport+1))
	for _, k := range []XvsConnKey{c.k, c.rk} {
		if got := e.flowCopies(t, k); len(got) != 0 {
			t.Errorf("%d copies of %+v with the cache off", len(got), k)
		}
	}
}
