package maps

import (
	"net/netip"
	"testing"

	"xvs/bpf"
)

// TestFlowVoid: whatever removes a conn of the main pair, or points an
// older conn's server-side key at a newer conn, voids the datapath's flow
// cache copies (xvs_flow_void moves on to the present): a copy would
// answer for the old conn. The install program raises the same map the
// datapath reads, not a copy of its own.
func TestFlowVoid(t *testing.T) {
	m, _ := newTestMaps(t)
	established := func(i int) Conn {
		c := tcpConn(i)
		c.State, c.Flags = uint8(bpf.XvsTcpStateSTATE_ESTABLISHED), 0
		setDests(t, m, c)
		if err := m.InstallConn(c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// shadowing is a conn of another service with old's server-side key.
	shadowing := func(old Conn) Conn {
		c := old
		c.VIP = netip.MustParseAddrPort("202.103.106.6:80")
		c.SvcID, c.State, c.Flags = 3, 0, uint8(bpf.XvsConnFlagsCONN_F_NEW)
		return c
	}
	for _, c := range []struct {
		name string
		do   func(t *testing.T)
	}{
		{"delete", func(t *testing.T) {
			c := established(1)
			if _, err := m.DeleteConn(c.Proto, c.Client, c.VIP); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete if unchanged", func(t *testing.T) {
			c := established(2)
			cur, err := m.LookupConn(c.Proto, c.Client, c.VIP)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := m.DeleteConnIf(cur, cur.LastSeen); err != nil || !ok {
				t.Fatalf("DeleteConnIf = %v, %v", ok, err)
			}
		}},
		{"shadow (InstallConn)", func(t *testing.T) {
			if err := m.InstallConn(shadowing(established(3))); err != nil {
				t.Fatal(err)
			}
		}},
		{"shadow (InstallConns)", func(t *testing.T) {
			errs := make([]error, 1)
			m.InstallConns([]Conn{shadowing(established(4))}, errs)
			if errs[0] != nil {
				t.Fatal(errs[0])
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := m.FlowVoid()
			c.do(t)
			if got, now := m.FlowVoid(), uint64(Now()); got <= before || got > now {
				t.Errorf("xvs_flow_void %d, want in (%d, %d]", got, before, now)
			}
		})
	}
}
