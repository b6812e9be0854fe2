package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"xvs/sched"
	"xvs/testutil"
)

// destRing is a second dest id on the real server of destRS, another port:
// the ring tests tell their picks apart by it.
const destRing = 7

// ringEnt is one pick of a test ring.
type ringEnt struct {
	dest uint32
	port uint16
}

// putRing gives service svc the sequence ring ents, no pick taken.
func (e *env) putRing(svc uint32, ents []ringEnt) {
	e.t.Helper()
	e.putRingKind(svc, XvsRingKindRING_SEQ, 0, ents)
}

// putRingKind gives service svc a ring of kind and flags.
func (e *env) putRingKind(svc uint32, kind XvsRingKind, flags XvsRingFlags, ents []ringEnt) {
	e.t.Helper()
	r := new(XvsRing)
	r.Len = uint16(len(ents))
	r.Kind, r.Flags = uint8(kind), uint8(flags)
	for i, en := range ents {
		r.Ents[i] = XvsRingEnt{DestId: en.dest, Port: be16(en.port)}
	}
	if err := e.objs.XvsRings.Put(svc, r); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) ringNext(svc uint32) uint32 {
	e.t.Helper()
	r := new(XvsRing)
	if err := e.objs.XvsRings.Lookup(svc, r); err != nil {
		e.t.Fatal(err)
	}
	return r.Next
}

// events returns the event counters summed over CPUs, and zeroes them.
func (e *env) events() map[XvsEvent]uint64 {
	e.t.Helper()
	out := map[XvsEvent]uint64{}
	for ev, v := range e.counters(e.objs.XvsEvents, uint32(XvsEventEVENT_MAX), true) {
		out[XvsEvent(ev)] = v
	}
	return out
}

// newRingEnv is the test conns' env with destRing, a second dest on the
// real server of destRS, in each family.
func newRingEnv(t *testing.T) *env {
	e := newEnv(t)
	setupConns(e)
	for fi, fa := range families {
		id := uint32(destRing + fi*v6IDs)
		e.setDestAddr(id, fa.rs)
		e.putDest(id, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	}
	return e
}

// TestRingScheduling: first packets of a service with a ring are
// scheduled in the datapath, in the ring's order over all packets, and
// forwarded at once: the conn is in the new pair with the pick's dest and
// port, the dest counts it, and the packet counts as a forwarded one.
func TestRingScheduling(t *testing.T) {
	e := newRingEnv(t)
	n := uint16(0)
	for _, en := range entries {
		for fi, fa := range families {
			for _, pr := range protos {
				svc := uint32(svcTCPID + fi*v6IDs)
				flags := uint8(testutil.TCPSyn)
				if pr.proto == testutil.ProtoUDP {
					svc, flags = uint32(svcUDPID+fi*v6IDs), 0
				}
				rs, other := uint32(destRS+fi*v6IDs), uint32(destRing+fi*v6IDs)
				ring := []ringEnt{{rs, rport}, {other, rport + 1}, {rs, rport}}
				t.Run(fmt.Sprintf("%s/%s/%s", en.name, fa.name, pr.name), func(t *testing.T) {
					e := e.with(t)
					e.putRing(svc, ring)
					defer e.objs.XvsRings.Delete(svc)
					before := map[uint32]XvsDest{rs: e.dest(rs), other: e.dest(other)}
					e.events()
					for k := range 4 {
						n++
						cli, vip := ap(fa.cli, 20000+n), ap(fa.vip, vport)
						pick := ring[k%len(ring)]
						f := frame(cli, vip, pr.proto, flags, macCli, macExt)
						out := f
						out.Dst, out.DstPort, out.TTL, out.DstMAC, out.SrcMAC = fa.rs, pick.port, 63, macRS, macInt
						e.check(t, en, dpCase{in: f.Bytes(), ingress: e.ext.index, want: vRedirect,
							out: out.Bytes(), reason: XvsReasonREASON_FWD_IN})
						c := e.conn(connKey(cli, vip, pr.proto))
						if c.DestId != pick.dest || c.Dport != be16(pick.port) || c.SvcId != svc {
							t.Errorf("packet %d: conn to dest %d port %d svc %d, want %d %d %d",
								k, c.DestId, be16(c.Dport), c.SvcId, pick.dest, pick.port, svc)
						}
						if c.Flags&uint8(XvsConnFlagsCONN_F_NEW) != 0 {
							t.Errorf("packet %d: CONN_F_NEW still set: the new conn was not counted", k)
						}
					}
					if got := e.ringNext(svc); got != 4 {
						t.Errorf("ring next %d, want 4", got)
					}
					// A SYN makes the conn active (SYN_RECV); a UDP conn
					// stays inactive.
					for id, want := range map[uint32]int64{rs: 3, other: 1} {
						d := e.dest(id)
						da, di := d.Active-before[id].Active, d.Inactive-before[id].Inactive
						if pr.proto == testutil.ProtoTCP && (da != want || di != 0) ||
							pr.proto == testutil.ProtoUDP && (da != 0 || di != want) {
							t.Errorf("dest %d: active %+d inactive %+d for %d conns", id, da, di, want)
						}
					}
					if ev := e.events(); len(ev) != 1 || ev[XvsEventEVENT_SCHED_NEW] != 4 {
						t.Errorf("events %v, want sched_new 4", ev)
					}
				})
			}
		}
	}
}

// TestRingFallback: what the ring cannot do goes the punt way, and a
// frame the daemon wrote back is scheduled from the ring.
func TestRingFallback(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	vip := ap(vip4, vport)
	n := uint16(0)
	syn := func() testutil.Frame {
		n++
		return frame(ap(cli4, 21000+n), vip, testutil.ProtoTCP, testutil.TCPSyn, macCli, macExt)
	}
	fwd := func(f testutil.Frame) []byte {
		f.Dst, f.DstPort, f.TTL, f.DstMAC, f.SrcMAC = rs4, rport, 63, macRS, macInt
		return f.Bytes()
	}
	global := e.objs.XvsBudget.MaxEntries() - 1
	for _, en := range entries {
		t.Run(en.name+"/unusable dest punts", func(t *testing.T) {
			e := e.with(t)
			e.putRing(svcTCPID, []ringEnt{{destGone, rport}})
			defer e.objs.XvsRings.Delete(uint32(svcTCPID))
			e.events()
			e.check(t, en, dpCase{in: syn().Bytes(), ingress: e.ext.index, want: vRedirect,
				reason: XvsReasonREASON_PUNT})
			if ev := e.events(); ev[XvsEventEVENT_SCHED_UNUSABLE] != 1 || ev[XvsEventEVENT_SCHED_NEW] != 0 {
				t.Errorf("events %v, want sched_unusable 1", ev)
			}
		})
		t.Run(en.name+"/written back frame is scheduled", func(t *testing.T) {
			e := e.with(t)
			e.putRing(svcTCPID, []ringEnt{{destRS, rport}})
			defer e.objs.XvsRings.Delete(uint32(svcTCPID))
			// The budget was taken when the frame was punted.
			e.setBudget(svcTCPID, 1, 1, 0, monoNow(t))
			defer e.setBudget(svcTCPID, 0, 0, 0, 0)
			f := syn()
			e.check(t, en, dpCase{in: f.Bytes(), ingress: e.punt.index, want: vRedirect,
				out: fwd(f), reason: XvsReasonREASON_FWD_IN})
		})
		t.Run(en.name+"/budget comes first", func(t *testing.T) {
			e := e.with(t)
			e.putRing(svcTCPID, []ringEnt{{destRS, rport}})
			defer e.objs.XvsRings.Delete(uint32(svcTCPID))
			e.setBudget(global, 1, 1, 0, monoNow(t))
			defer e.setBudget(global, 0, 0, 0, 0)
			e.check(t, en, dpCase{in: syn().Bytes(), ingress: e.ext.index, want: vDrop,
				reason: XvsReasonREASON_DROP_PUNT_BUDGET})
			if got := e.ringNext(svcTCPID); got != 0 {
				t.Errorf("ring next %d after a dropped packet, want 0", got)
			}
		})
		t.Run(en.name+"/stale daemon drops", func(t *testing.T) {
			e := e.with(t)
			e.putRing(svcTCPID, []ringEnt{{destRS, rport}})
			defer e.objs.XvsRings.Delete(uint32(svcTCPID))
			e.setStaleCfg()
			defer e.setCfg(uint32(e.punt.index), 1<<62)
			e.check(t, en, dpCase{in: syn().Bytes(), ingress: e.ext.index, want: vDrop,
				reason: XvsReasonREASON_DROP_PUNT_STALE})
		})
	}
}

// TestRingFullNewPair: with the new pair full, a ring pick is not
// installed and the packet goes to the daemon, which makes room;
// established conns are untouched.
func TestRingFullNewPair(t *testing.T) {
	e := newEnvSized(t, map[string]uint32{"xvs_conns_new": 2, "xvs_rconns_new": 2})
	vip := ap(vip4, vport)
	e.addSvc(vip4, vport, testutil.ProtoTCP, svcTCPID)
	e.setDestAddr(destRS, rs4)
	e.putDest(destRS, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	e.putRing(svcTCPID, []ringEnt{{destRS, rport}})
	for _, en := range entries {
		t.Run(en.name, func(t *testing.T) {
			e := e.with(t)
			e.events()
			for i := range 3 {
				cli := ap(cli4, uint16(22000+i))
				if en.xdp {
					cli = ap(cli4, uint16(22100+i))
				}
				f := frame(cli, vip, testutil.ProtoTCP, testutil.TCPSyn, macCli, macExt)
				c := dpCase{in: f.Bytes(), ingress: e.ext.index, want: vRedirect, reason: XvsReasonREASON_PUNT}
				if i < 2 && en.xdp {
					out := f
					out.Dst, out.DstPort, out.TTL, out.DstMAC, out.SrcMAC = rs4, rport, 63, macRS, macInt
					c.out, c.reason = out.Bytes(), XvsReasonREASON_FWD_IN
				}
				e.check(t, en, c)
			}
			want := map[XvsEvent]uint64{XvsEventEVENT_SCHED_FULL: 1, XvsEventEVENT_SCHED_NEW: 2}
			if !en.xdp {
				// XDP's two conns still fill the pair.
				want = map[XvsEvent]uint64{XvsEventEVENT_SCHED_FULL: 3}
			}
			if ev := e.events(); fmt.Sprint(ev) != fmt.Sprint(want) {
				t.Errorf("events %v, want %v", ev, want)
			}
		})
	}
}

// TestRingHash: sh's, dh's and mh's rings are indexed by the packet's bucket,
// hashed as package sched hashes it (and tested there to be what its
// schedulers pick); a bucket without a real server goes to the daemon.
func TestRingHash(t *testing.T) {
	e := newRingEnv(t)
	n := uint16(0)
	for _, en := range entries {
		for fi, fa := range families {
			for _, c := range []struct {
				name  string
				kind  XvsRingKind
				flags XvsRingFlags
				size  int
			}{
				{"sh", XvsRingKindRING_SRC_HASH, 0, sched.HashBuckets},
				{"sh-port", XvsRingKindRING_SRC_HASH, XvsRingFlagsRING_F_PORT, sched.HashBuckets},
				{"dh", XvsRingKindRING_DST_HASH, 0, sched.HashBuckets},
				{"mh", XvsRingKindRING_MH_HASH, 0, sched.MaglevSlots},
				{"mh-port", XvsRingKindRING_MH_HASH, XvsRingFlagsRING_F_PORT, sched.MaglevSlots},
			} {
				svc := uint32(svcTCPID + fi*v6IDs)
				rs, other := uint32(destRS+fi*v6IDs), uint32(destRing+fi*v6IDs)
				ring := make([]ringEnt, c.size)
				for b := range ring {
					switch {
					case b%5 == 0:
						ring[b] = ringEnt{0xffffffff, 0}
					case b%2 == 0:
						ring[b] = ringEnt{rs, rport}
					default:
						ring[b] = ringEnt{other, rport + 1}
					}
				}
				t.Run(fmt.Sprintf("%s/%s/%s", en.name, fa.name, c.name), func(t *testing.T) {
					e := e.with(t)
					e.putRingKind(svc, c.kind, c.flags, ring)
					defer e.objs.XvsRings.Delete(svc)
					seen := map[bool]int{}
					for k := range 24 {
						n++
						// Clients spread over addresses and ports.
						a := fa.cli.As16()
						a[15] += byte(k)
						ca := netip.AddrFrom16(a)
						if fa.cli.Is4() {
							ca = ca.Unmap()
						}
						// Ports scattered, so that address and port do not
						// step together through the hash.
						cli, vip := ap(ca, uint16(1024+uint32(n)*40503%60000)), ap(fa.vip, vport)
						var b int
						switch c.kind {
						case XvsRingKindRING_SRC_HASH:
							b = sched.SourceHashBucket(cli, c.flags != 0)
						case XvsRingKindRING_DST_HASH:
							b = sched.DestHashBucket(vip.Addr())
						case XvsRingKindRING_MH_HASH:
							b = sched.MaglevSlot(cli, c.flags != 0)
						}
						pick := ring[b]
						f := frame(cli, vip, testutil.ProtoTCP, testutil.TCPSyn, macCli, macExt)
						if pick.dest == 0xffffffff {
							e.check(t, en, dpCase{in: f.Bytes(), ingress: e.ext.index, want: vRedirect, reason: XvsReasonREASON_PUNT})
							seen[false]++
							continue
						}
						out := f
						out.Dst, out.DstPort, out.TTL, out.DstMAC, out.SrcMAC = fa.rs, pick.port, 63, macRS, macInt
						e.check(t, en, dpCase{in: f.Bytes(), ingress: e.ext.index, want: vRedirect,
							out: out.Bytes(), reason: XvsReasonREASON_FWD_IN})
						if cn := e.conn(connKey(cli, vip, testutil.ProtoTCP)); cn.DestId != pick.dest {
							t.Errorf("client %v (bucket %d): conn to dest %d, want %d", cli, b, cn.DestId, pick.dest)
						}
						seen[true]++
					}
					if c.kind != XvsRingKindRING_DST_HASH && (seen[true] == 0 || seen[false] == 0) {
						t.Errorf("24 clients met %d scheduled and %d daemon buckets; want both kinds", seen[true], seen[false])
					}
				})
			}
		}
	}
}

// TestRingPortReuse: a SYN on the port of a closed conn (TIME_WAIT in the
// main pair, CLOSE in the new pair) of a service with a ring: the
// datapath removes the old conn, counted out of its real server, and the
// SYN starts over as a first packet, scheduled from the ring in the same
// run (IPVS conn_reuse_mode 1). Without the program to start over in, the
// SYN goes to the daemon with the old conn already gone.
func TestRingPortReuse(t *testing.T) {
	e := newRingEnv(t)
	n := uint16(0)
	for _, en := range entries {
		for fi, fa := range families {
			for _, c := range []struct {
				name   string
				main   bool
				state  XvsTcpState
				progs  bool
				recent bool // last seen just now: a copy may be live
			}{
				{"time_wait in main pair", true, XvsTcpStateSTATE_TIME_WAIT, true, false},
				{"close in new pair", false, XvsTcpStateSTATE_CLOSE, true, false},
				{"no program to start over in", true, XvsTcpStateSTATE_TIME_WAIT, false, false},
				{"closed just now", true, XvsTcpStateSTATE_CLOSE, true, true},
			} {
				svc := uint32(svcTCPID + fi*v6IDs)
				old, pick := uint32(destRS+fi*v6IDs), uint32(destRing+fi*v6IDs)
				t.Run(fmt.Sprintf("%s/%s/%s", en.name, fa.name, c.name), func(t *testing.T) {
					e := e.with(t)
					n++
					cli, vip := ap(fa.cli, 23000+n), ap(fa.vip, vport)
					k := e.addConn(cli, vip, ap(fa.rs, rport), testutil.ProtoTCP, svc, old)
					rk := rconnKey(cli, ap(fa.rs, rport), testutil.ProtoTCP)
					cn := e.conn(k)
					cn.State, cn.Flags = uint8(c.state), 0
					if c.recent {
						cn.LastSeen = monoNow(t)
					}
					if c.main {
						// as the datapath's promotion leaves it
						err := errors.Join(e.objs.XvsConnsNew.Delete(k), e.objs.XvsRconnsNew.Delete(rk),
							e.objs.XvsConns.Put(k, cn), e.objs.XvsRconns.Put(rk, rconn(vip, svc)))
						if err != nil {
							t.Fatal(err)
						}
					} else {
						e.putConn(k, cn)
					}
					if !c.progs {
						for _, m := range []*ebpf.Map{e.objs.XvsProgsXdp, e.objs.XvsProgsTc} {
							if err := m.Delete(uint32(0)); err != nil {
								t.Fatal(err)
							}
						}
						defer func() {
							if err := FillProgs(&e.objs); err != nil {
								t.Fatal(err)
							}
						}()
					}
					e.putRing(svc, []ringEnt{{pick, rport + 1}})
					defer e.objs.XvsRings.Delete(svc)
					before := map[uint32]XvsDest{old: e.dest(old), pick: e.dest(pick)}
					e.events()
					void := e.flowVoid(t)

					f := frame(cli, vip, testutil.ProtoTCP, testutil.TCPSyn, macCli, macExt)
					dc := dpCase{in: f.Bytes(), ingress: e.ext.index, want: vRedirect, reason: XvsReasonREASON_PUNT}
					if c.progs {
						out := f
						out.Dst, out.DstPort, out.TTL, out.DstMAC, out.SrcMAC = fa.rs, rport+1, 63, macRS, macInt
						dc.out, dc.reason = out.Bytes(), XvsReasonREASON_FWD_IN
					}
					e.check(t, en, dc)

					if d := e.dest(old); d.Inactive != before[old].Inactive-1 || d.Active != before[old].Active {
						t.Errorf("old dest: active %d inactive %d, want %d %d (counted out)",
							d.Active, d.Inactive, before[old].Active, before[old].Inactive-1)
					}
					for _, m := range []*ebpf.Map{e.objs.XvsRconns, e.objs.XvsRconnsNew} {
						var rv XvsRconn
						if err := m.Lookup(rk, &rv); err == nil {
							t.Errorf("old server-side key still in %v", m)
						}
					}
					// A copy on another CPU may have been made while it was
					// open: voided if the conn was seen within a copy's life.
					if got := e.flowVoid(t); c.recent && got <= void {
						t.Errorf("flow cache void time %d after the removal, was %d: copies not voided", got, void)
					} else if !c.recent && got != void {
						t.Errorf("flow cache voided (%d -> %d) for a conn closed long ago", void, got)
					}
					wantEv := map[XvsEvent]uint64{XvsEventEVENT_SCHED_REUSED: 1}
					if !c.progs {
						if err := e.connTable(k).Lookup(k, new(XvsConn)); err == nil {
							t.Errorf("old conn still there")
						}
						if ev := e.events(); fmt.Sprint(ev) != fmt.Sprint(wantEv) {
							t.Errorf("events %v, want %v", ev, wantEv)
						}
						return
					}
					wantEv[XvsEventEVENT_SCHED_NEW] = 1
					if ev := e.events(); fmt.Sprint(ev) != fmt.Sprint(wantEv) {
						t.Errorf("events %v, want %v", ev, wantEv)
					}
					nc := e.conn(k)
					if nc.DestId != pick || nc.Dport != be16(rport+1) || nc.State != uint8(XvsTcpStateSTATE_SYN_RECV) {
						t.Errorf("conn to dest %d port %d state %d, want %d %d %d",
							nc.DestId, be16(nc.Dport), nc.State, pick, rport+1, XvsTcpStateSTATE_SYN_RECV)
					}
					if d := e.dest(pick); d.Active != before[pick].Active+1 || d.Inactive != before[pick].Inactive {
						t.Errorf("picked dest: active %d inactive %d, want %d %d",
							d.Active, d.Inactive, before[pick].Active+1, before[pick].Inactive)
					}
					if got := e.ringNext(svc); got != 1 {
						t.Errorf("ring next %d, want 1", got)
					}
				})
			}
		}
	}
}
