package tests

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"xvs/testutil"
)

// A client must see "connection refused", not a timeout, when its real
// server does not listen (the server's RST comes back through the NAT) and
// when no real server is usable (xvsd answers port unreachable, as IPVS's
// ip_vs_leave does).
func TestConnectionRefused(t *testing.T) {
	forModes(t, bothModes, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode})
		startWeb(t, tp, ":80")
		d := startDaemon(t, tp, mode)
		// Nothing listens on port 81 of the only real server.
		d.must("-A", "-t", vip+":81", "-s", "rr")
		d.must("-a", "-t", vip+":81", "-r", rs1+":81", "-m")
		// The only real server is quiesced.
		d.must("-A", "-t", vip+":82", "-s", "rr")
		d.must("-a", "-t", vip+":82", "-r", rs1+":80", "-m", "-w", "0")

		tests := []struct {
			name string
			port uint16
		}{
			{"real server not listening", 81},
			{"no usable real server", 82},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c, err := testutil.Dial(ctx, tp.Client, netip.Addr{}, netip.AddrPortFrom(netip.MustParseAddr(vip), tt.port))
				if err == nil {
					c.Close()
					t.Fatal("connected")
				}
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("dial: %v, want connection refused", err)
				}
			})
		}
		if out := d.must("--counters"); !containsCounter(out, "punt_icmp_sent") {
			t.Errorf("--counters has no punt_icmp_sent:\n%s", out)
		}
	})
}

func containsCounter(out, name string) bool {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name && f[1] != "0" {
			return true
		}
	}
	return false
}
