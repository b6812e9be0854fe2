package bpf

import (
	"testing"
	"time"

	"xvs/testutil"
)

// TestLastSeenStamp: the hit path stamps last_seen from the coarse
// monotonic clock (lib/conn.h, conn_stamp). Every packet that looks its
// conn up (here all: flow cache copies have a life of 0), either way and
// through either entry, leaves it within [CLOCK_MONOTONIC_COARSE before
// the packet, CLOCK_MONOTONIC after], replaces an old stamp (the daemon's
// install), and a packet a few ticks after the previous one moves it on:
// the daemon's idle test (now - last_seen) and its "unchanged since the
// walk" test keep working. TestFlowCache has the packets a copy answers,
// which leave it alone.
func TestLastSeenStamp(t *testing.T) {
	e := newEnvWith(t, nil, map[string]any{"xvs_flow_ttl_ns": uint64(0)})
	const dest, svc = 50, 60
	e.putDest(dest, XvsDest{Flags: uint32(XvsDestFlagsDEST_F_AVAILABLE)})
	for i, en := range entries {
		t.Run(en.name, func(t *testing.T) {
			e := e.with(t)
			cli, vip, rs := ap(cli4, uint16(49000+i)), ap(vip4, vport), ap(rs4, rport)
			k := e.addConn(cli, vip, rs, testutil.ProtoUDP, svc, dest)
			c := e.conn(k)
			c.LastSeen = 12345 // an old stamp, as an install leaves one
			e.putConn(k, c)
			last := c.LastSeen
			for step := range 4 {
				f, ifindex := frame(cli, vip, testutil.ProtoUDP, 0, macCli, macExt), e.ext.index
				if step%2 == 1 {
					f, ifindex = frame(rs, cli, testutil.ProtoUDP, 0, macRS, macInt), e.intl.index
				}
				before := monoCoarse(t)
				got, _, err := e.run(en, f.Bytes(), ifindex)
				if err != nil {
					t.Fatal(err)
				}
				if got != en.code(vRedirect) {
					t.Fatalf("step %d: verdict %d, want redirect", step, got)
				}
				seen := e.conn(k).LastSeen
				if now := monoNow(t); seen < before || seen > now {
					t.Errorf("step %d: last_seen %d not in [%d, %d]", step, seen, before, now)
				}
				if seen <= last {
					t.Errorf("step %d: last_seen %d did not move on from %d", step, seen, last)
				}
				last = seen
				// Several ticks (HZ >= 100), so that the next packet's
				// stamp is a later one.
				time.Sleep(30 * time.Millisecond)
			}
		})
	}
}
