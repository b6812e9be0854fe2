package tests

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"xvs/testutil"
)

// A UDP service whose answers are larger than the MTU (DNS over UDP with
// big answers, say): the answers leave the real server as IPv4 fragments;
// the first carries the ports and is rewritten by its conn, the others
// follow it by fragment id. A large request on the same flow is fragmented
// by the client and handled the same way inwards.
func TestUDPFragmentsThroughVIP(t *testing.T) {
	forModes(t, bothModes, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 60*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode, RealServers: 1})
		answer := strings.Repeat("4k answer ", 400)
		testutil.StartUDPEcho(t, tp.Servers[0], ":53", answer)
		d := startDaemon(t, tp, mode)
		d.must("-A", "-u", vip+":53", "-s", "rr")
		d.must("-a", "-u", vip+":53", "-r", rs1+":53", "-m")

		pc, err := testutil.OpenUDP(tp.Client, netip.Addr{}, false)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		dns := netip.MustParseAddrPort(vip + ":53")
		for i, req := range [][]byte{[]byte("small question"), []byte(strings.Repeat("q", 3000))} {
			got, from, err := testutil.ExchangeUDP(ctx, pc, dns, req)
			if err != nil {
				t.Fatalf("exchange %d (%d-byte request): %v", i, len(req), err)
			}
			if string(got) != answer || from != dns {
				t.Errorf("exchange %d: %d bytes from %v, want the %d-byte answer from %v", i, len(got), from, len(answer), dns)
			}
		}
		out := d.must("--counters")
		if !containsCounter(out, "fwd_out") {
			t.Errorf("no packet went out through the datapath:\n%s", out)
		}
	})
}
