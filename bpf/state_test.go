package bpf

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"xvs/testutil"
)

// IPVS's TCP tables (reference 5.3), transcribed as printed: one row per
// event, columns in state order NO ES SS SR FW TW CL CW LA LI SA.
var ipvsTables = map[bool]map[string]string{
	false: { // INPUT
		"syn": "SR ES ES SR SR SR SR SR SR SR SR",
		"fin": "CL CW SS TW TW TW CL CW LA LI TW",
		"ack": "ES ES SS ES FW TW CL CW CL LI ES",
		"rst": "CL CL CL SR CL CL CL CL LA LI SR",
	},
	true: { // OUTPUT
		"syn": "SS ES SS SR SS SS SS SS SS LI SR",
		"fin": "TW FW SS TW FW TW CL TW LA LI TW",
		"ack": "ES ES SS ES FW TW CL CW LA ES ES",
		"rst": "CL CL SS CL CL TW CL CL CL CL CL",
	},
}

var stateNames = strings.Fields("NO ES SS SR FW TW CL CW LA LI SA")

func stateOf(abbr string) uint8 {
	for i, n := range stateNames {
		if n == abbr {
			return uint8(i)
		}
	}
	panic("unknown state " + abbr)
}

// reuses: whether a client SYN with flags in conn state cur is punted as
// a port reuse (reference 5.8).
func reuses(flags, cur uint8) bool {
	syn := flags&(testutil.TCPSyn|testutil.TCPAck|testutil.TCPRst) == testutil.TCPSyn
	return syn && (cur == uint8(XvsTcpStateSTATE_TIME_WAIT) || cur == uint8(XvsTcpStateSTATE_CLOSE))
}

func active(s uint8) bool {
	switch XvsTcpState(s) {
	case XvsTcpStateSTATE_ESTABLISHED, XvsTcpStateSTATE_SYN_SENT, XvsTcpStateSTATE_SYN_RECV, XvsTcpStateSTATE_SYNACK:
		return true
	}
	return false
}

// TestTCPStateTable drives every (direction, event, state) of the tables
// through the programs and checks the next state and the dest counters.
func TestTCPStateTable(t *testing.T) {
	e := newEnv(t)
	const dest = 9
	e.putDest(dest, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	e.addSvc(vip4, vport, testutil.ProtoTCP, svcTCPID)
	events := []struct {
		name  string
		flags uint8
		row   string // table row; "" means CLOSE from anywhere
	}{
		{"syn", testutil.TCPSyn, "syn"},
		{"syn ack", testutil.TCPSyn | testutil.TCPAck, "syn"},
		{"syn fin", testutil.TCPSyn | testutil.TCPFin, "syn"},
		{"fin ack", testutil.TCPFin | testutil.TCPAck, "fin"},
		{"ack", testutil.TCPAck, "ack"},
		{"psh ack", testutil.TCPPsh | testutil.TCPAck, "ack"},
		{"rst", testutil.TCPRst, "rst"},
		{"rst syn", testutil.TCPRst | testutil.TCPSyn, "rst"},
		{"no flag", 0, ""},
		{"psh only", testutil.TCPPsh, ""},
	}
	for ei, en := range entries {
		cli := ap(cli4, uint16(46000+ei))
		k := e.addConn(cli, ap(vip4, vport), ap(rs4, rport), testutil.ProtoTCP, svcTCPID, dest)
		for _, out := range []bool{false, true} {
			for _, ev := range events {
				for cur := uint8(0); cur < uint8(XvsTcpStateSTATE_MAX); cur++ {
					want := uint8(XvsTcpStateSTATE_CLOSE)
					if ev.row != "" {
						want = stateOf(strings.Fields(ipvsTables[out][ev.row])[cur])
					}
					name := fmt.Sprintf("%s/out=%v/%s/%s", en.name, out, ev.name, stateNames[cur])
					t.Run(name, func(t *testing.T) {
						c := e.conn(k)
						c.State, c.Flags = cur, 0
						e.putConn(k, c)
						e.putDest(dest, XvsDest{Active: 10, Inactive: 10, Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
						f := frame(cli, ap(vip4, vport), testutil.ProtoTCP, ev.flags, macCli, macExt)
						ifindex := e.ext.index
						if reuses(ev.flags, cur) {
							// punted from ext0 (TestPortReuse); here
							// as written back by a daemon that kept it
							ifindex = e.punt.index
						}
						if out {
							f = frame(ap(rs4, rport), cli, testutil.ProtoTCP, ev.flags, macRS, macInt)
							ifindex = e.intl.index
						}
						got, _, err := e.run(en, f.Bytes(), ifindex)
						if err != nil {
							t.Fatal(err)
						}
						if got != en.code(vRedirect) {
							t.Fatalf("verdict %d, want redirect", got)
						}
						if s := e.conn(k).State; s != want {
							t.Errorf("state %s, want %s", stateNames[s], stateNames[want])
						}
						wa, wi := int64(10), int64(10)
						if active(cur) && !active(want) {
							wa, wi = 9, 11
						} else if !active(cur) && active(want) {
							wa, wi = 11, 9
						}
						if d := e.dest(dest); d.Active != wa || d.Inactive != wi {
							t.Errorf("dest active/inactive %d/%d, want %d/%d", d.Active, d.Inactive, wa, wi)
						}
					})
				}
			}
		}
	}
}

type step struct {
	out    bool
	flags  uint8
	state  string
	active int64 // dest active/inactive after the packet
	inact  int64
}

// IPVS's worked traces (reference 5.3) and a UDP flow.
var traces = []struct {
	name  string
	proto uint8
	steps []step
}{
	{name: "client closes", proto: testutil.ProtoTCP, steps: []step{
		{false, testutil.TCPSyn, "SR", 1, 0},
		{true, testutil.TCPSyn | testutil.TCPAck, "SR", 1, 0},
		{false, testutil.TCPAck, "ES", 1, 0},
		{false, testutil.TCPPsh | testutil.TCPAck, "ES", 1, 0},
		{true, testutil.TCPPsh | testutil.TCPAck, "ES", 1, 0},
		{false, testutil.TCPFin | testutil.TCPAck, "CW", 0, 1},
		{true, testutil.TCPFin | testutil.TCPAck, "TW", 0, 1},
		{false, testutil.TCPAck, "TW", 0, 1},
	}},
	{name: "server closes", proto: testutil.ProtoTCP, steps: []step{
		{false, testutil.TCPSyn, "SR", 1, 0},
		{true, testutil.TCPSyn | testutil.TCPAck, "SR", 1, 0},
		{false, testutil.TCPAck, "ES", 1, 0},
		{true, testutil.TCPFin | testutil.TCPAck, "FW", 0, 1},
		{false, testutil.TCPAck, "FW", 0, 1},
		{false, testutil.TCPFin | testutil.TCPAck, "TW", 0, 1},
		{true, testutil.TCPAck, "TW", 0, 1},
	}},
	{name: "client resets", proto: testutil.ProtoTCP, steps: []step{
		{false, testutil.TCPSyn, "SR", 1, 0},
		{true, testutil.TCPSyn | testutil.TCPAck, "SR", 1, 0},
		{false, testutil.TCPAck, "ES", 1, 0},
		{false, testutil.TCPRst, "CL", 0, 1},
	}},
	{name: "server resets", proto: testutil.ProtoTCP, steps: []step{
		{false, testutil.TCPSyn, "SR", 1, 0},
		{true, testutil.TCPRst | testutil.TCPAck, "CL", 0, 1},
		{false, testutil.TCPSyn, "SR", 1, 0},
	}},
	{name: "segment without flags", proto: testutil.ProtoTCP, steps: []step{
		{false, testutil.TCPSyn, "SR", 1, 0},
		{false, 0, "CL", 0, 1},
	}},
	{name: "udp", proto: testutil.ProtoUDP, steps: []step{
		{false, 0, "NO", 0, 1},
		{true, 0, "NO", 0, 1},
		{false, 0, "NO", 0, 1},
		{true, 0, "NO", 0, 1},
	}},
}

func monoNow(t testing.TB) uint64 { return clockNs(t, unix.CLOCK_MONOTONIC) }

// monoCoarse is CLOCK_MONOTONIC as of the last tick, the clock the
// datapath stamps last_seen with (bpf_ktime_get_coarse_ns): a stamp taken
// after it is never below it.
func monoCoarse(t testing.TB) uint64 { return clockNs(t, unix.CLOCK_MONOTONIC_COARSE) }

func clockNs(t testing.TB, clock int32) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

// TestConnTraces runs whole connections through each entry and checks
// state, ActiveConn/InActConn, CONN_F_NEW, last_seen and the statistics
// after every packet. Flow cache copies never answer here (a life of 0):
// every packet looks its conn up and stamps it; TestFlowCache has the
// packets a copy answers.
func TestConnTraces(t *testing.T) {
	e := newEnvWith(t, nil, map[string]any{"xvs_flow_ttl_ns": uint64(0)})
	dest, svc := uint32(10), uint32(20)
	n := 0
	for _, en := range entries {
		for _, fa := range families {
			for _, tr := range traces {
				n++
				t.Run(fmt.Sprintf("%s/%s/%s", en.name, fa.name, tr.name), func(t *testing.T) {
					dest++
					svc++
					e.putDest(dest, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
					cli, vip, rs := ap(fa.cli, uint16(47000+n)), ap(fa.vip, vport), ap(fa.rs, rport)
					k := e.addConn(cli, vip, rs, tr.proto, svc, dest)
					if d := e.dest(dest); d.Active != 0 || d.Inactive != 1 {
						t.Fatalf("installed conn: dest %d/%d, want 0/1", d.Active, d.Inactive)
					}
					var want XvsStats
					want.Conns = 1
					var last uint64
					for i, s := range tr.steps {
						f := frame(cli, vip, tr.proto, s.flags, macCli, macExt)
						ifindex := e.ext.index
						if tr.proto == testutil.ProtoTCP && !s.out && reuses(s.flags, e.conn(k).State) {
							ifindex = e.punt.index // written back after the reuse punt
						}
						if s.out {
							f = frame(rs, cli, tr.proto, s.flags, macRS, macInt)
							ifindex = e.intl.index
						}
						b := f.Bytes()
						p, err := testutil.ParseFrame(b)
						if err != nil {
							t.Fatal(err)
						}
						if s.out {
							want.Outpkts++
							want.Outbytes += uint64(p.IPLen)
						} else {
							want.Inpkts++
							want.Inbytes += uint64(p.IPLen)
						}
						before := monoCoarse(t)
						got, _, err := e.run(en, b, ifindex)
						if err != nil {
							t.Fatal(err)
						}
						if got != en.code(vRedirect) {
							t.Fatalf("step %d: verdict %d, want redirect", i, got)
						}
						c := e.conn(k)
						if stateNames[c.State] != s.state {
							t.Errorf("step %d: state %s, want %s", i, stateNames[c.State], s.state)
						}
						if c.Flags&uint8(XvsConnFlagsCONN_F_NEW) != 0 {
							t.Errorf("step %d: CONN_F_NEW still set", i)
						}
						if c.LastSeen < before || c.LastSeen < last || c.LastSeen > monoNow(t) {
							t.Errorf("step %d: last_seen %d not in [%d, now]", i, c.LastSeen, before)
						}
						last = c.LastSeen
						if d := e.dest(dest); d.Active != s.active || d.Inactive != s.inact {
							t.Errorf("step %d: dest active/inactive %d/%d, want %d/%d", i, d.Active, d.Inactive, s.active, s.inact)
						}
						for _, m := range []struct {
							name string
							got  XvsStats
						}{{"svc", e.stats(e.objs.XvsSvcStats, svc)}, {"dest", e.stats(e.objs.XvsDestStats, dest)}} {
							if m.got != want {
								t.Errorf("step %d: %s stats %+v, want %+v", i, m.name, m.got, want)
							}
						}
					}
				})
			}
		}
	}
}

// TestNoDestStats: packets of a conn whose dest is gone are dropped in and
// forwarded out, and neither counts in the statistics.
func TestNoDestStats(t *testing.T) {
	e := newEnv(t)
	const dest, svc = 30, 40
	e.putDest(dest, XvsDest{})
	cli, vip, rs := ap(cli4, 48000), ap(vip4, vport), ap(rs4, rport)
	k := e.addConn(cli, vip, rs, testutil.ProtoTCP, svc, dest)
	for _, en := range entries {
		got, _, err := e.run(en, frame(cli, vip, testutil.ProtoTCP, testutil.TCPAck, macCli, macExt).Bytes(), e.ext.index)
		if err != nil || got != en.code(vDrop) {
			t.Fatalf("%s in: verdict %d, %v; want drop", en.name, got, err)
		}
		got, _, err = e.run(en, frame(rs, cli, testutil.ProtoTCP, testutil.TCPAck, macRS, macInt).Bytes(), e.intl.index)
		if err != nil || got != en.code(vRedirect) {
			t.Fatalf("%s out: verdict %d, %v; want redirect", en.name, got, err)
		}
	}
	if s := e.stats(e.objs.XvsSvcStats, svc); s != (XvsStats{}) {
		t.Errorf("svc stats %+v, want zero", s)
	}
	if s := e.stats(e.objs.XvsDestStats, dest); s != (XvsStats{}) {
		t.Errorf("dest stats %+v, want zero", s)
	}
	if c := e.conn(k); c.Flags&uint8(XvsConnFlagsCONN_F_NEW) == 0 {
		t.Errorf("CONN_F_NEW cleared by a dropped packet")
	}
}

// TestConcurrentFirstPackets sends the first packet of many conns from two
// threads at once: each conn is counted exactly once and moves to
// ActiveConn exactly once, however the two CPUs interleave.
func TestConcurrentFirstPackets(t *testing.T) {
	e := newEnv(t)
	const dest, svc, n = 50, 60, 1000
	e.putDest(dest, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	vip, rs := ap(vip4, vport), ap(rs4, rport)
	frames := make([][]byte, n)
	keys := make([]XvsConnKey, n)
	for i := range frames {
		cli := ap(cli4, uint16(20000+i))
		keys[i] = e.addConn(cli, vip, rs, testutil.ProtoTCP, svc, dest)
		frames[i] = frame(cli, vip, testutil.ProtoTCP, testutil.TCPSyn, macCli, macExt).Bytes()
	}
	xdp := e.objs.XvsXdp
	ctx := xdpMd{IngressIfindex: uint32(e.ext.index)}
	send := func(ns *netNS) error {
		return ns.do(func() error {
			for _, f := range frames {
				c := ctx
				c.DataEnd = uint32(len(f))
				ret, err := xdp.Run(&ebpf.RunOptions{Data: f, Context: c})
				if err != nil {
					return err
				}
				if ret != 4 {
					return fmt.Errorf("verdict %d, want XDP_REDIRECT", ret)
				}
			}
			return nil
		})
	}
	twin := e.ns.twin(t)
	errc := make(chan error, 2)
	go func() { errc <- send(e.ns) }()
	go func() { errc <- send(twin) }()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if s := e.stats(e.objs.XvsSvcStats, svc); s.Conns != n || s.Inpkts != 2*n {
		t.Errorf("svc conns %d inpkts %d, want %d and %d", s.Conns, s.Inpkts, n, 2*n)
	}
	if d := e.dest(dest); d.Active != n || d.Inactive != 0 {
		t.Errorf("dest active/inactive %d/%d, want %d/0", d.Active, d.Inactive, n)
	}
	for _, k := range keys {
		if c := e.conn(k); c.State != uint8(XvsTcpStateSTATE_SYN_RECV) || c.Flags != 0 {
			t.Fatalf("conn state %d flags %d, want SYN_RECV and no flags", c.State, c.Flags)
		}
	}
}
