package maps

import (
	"net/netip"
	"testing"

	"xvs/bpf"
)

// TestFlowVoid: whatever removes a conn that may have a live copy in the
// datapath's flow cache (a packet forwarded within a copy's life), or
// points an older conn's server-side key at a newer conn, voids the
// copies (xvs_flow_void moves on to the present); removing a conn idle
// for longer, or never forwarded, does not, so that a flood's evictions
// leave the established flows' copies alone. The install program raises
// the same map the datapath reads, not a copy of its own.
func TestFlowVoid(t *testing.T) {
	m, _ := newTestMaps(t)
	install := func(c Conn) Conn {
		setDests(t, m, c)
		if err := m.InstallConn(c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// established is a main-pair conn last seen now (the install's stamp).
	established := func(i int) Conn {
		c := tcpConn(i)
		c.State, c.Flags = uint8(bpf.XvsTcpStateSTATE_ESTABLISHED), 0
		return install(c)
	}
	// shadowing is a conn of another service with old's server-side key.
	shadowing := func(old Conn) Conn {
		c := old
		c.VIP = netip.MustParseAddrPort("202.103.106.6:80")
		c.SvcID, c.State, c.Flags = 3, 0, uint8(bpf.XvsConnFlagsCONN_F_NEW)
		return c
	}
	remove := func(t *testing.T, c Conn) {
		t.Helper()
		if _, err := m.DeleteConn(c.Proto, c.Client, c.VIP); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name  string
		voids bool
		do    func(t *testing.T)
	}{
		{"delete", true, func(t *testing.T) { remove(t, established(1)) }},
		{"delete if unchanged", true, func(t *testing.T) {
			c := established(2)
			cur, err := m.LookupConn(c.Proto, c.Client, c.VIP)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := m.DeleteConnIf(cur, cur.LastSeen); err != nil || !ok {
				t.Fatalf("DeleteConnIf = %v, %v", ok, err)
			}
		}},
		{"delete a forwarded UDP conn of the new pair", true, func(t *testing.T) {
			c := udp6Conn()
			c.Flags = 0
			remove(t, install(c))
		}},
		{"shadow (InstallConn)", true, func(t *testing.T) {
			install(shadowing(established(3)))
		}},
		{"shadow (InstallConns)", true, func(t *testing.T) {
			errs := make([]error, 1)
			m.InstallConns([]Conn{shadowing(established(4))}, errs)
			if errs[0] != nil {
				t.Fatal(errs[0])
			}
		}},
		{"delete an idle conn", false, func(t *testing.T) {
			c := tcpConn(5)
			c.State, c.Flags = uint8(bpf.XvsTcpStateSTATE_ESTABLISHED), 0
			c.LastSeen = Now() - flowLife
			remove(t, install(c))
		}},
		{"delete a conn never forwarded", false, func(t *testing.T) { remove(t, install(tcpConn(6))) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := m.flowVoidTime()
			c.do(t)
			got, now := m.flowVoidTime(), uint64(Now())
			if c.voids && (got <= before || got > now) {
				t.Errorf("xvs_flow_void %d, want in (%d, %d]", got, before, now)
			}
			if !c.voids && got != before {
				t.Errorf("xvs_flow_void %d, want %d unchanged", got, before)
			}
		})
	}
}
