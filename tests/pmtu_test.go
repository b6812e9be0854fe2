package tests

import (
	"crypto/sha256"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"xvs/testutil"
)

// Path MTU through the NAT: the director's link towards the client has an
// MTU of 1400 that only the director knows. The real server sends
// full-size segments with DF set; the datapath must answer them with
// fragmentation-needed quoting the real server's own packet (RS -> client),
// so that the real server lowers its path MTU and a 10 MB download through
// the VIP completes intact instead of stalling.
//
//	client (1500) ── ext0 (1400) director int0 (1500) ── node1 (1500)
func TestPathMTUDownload(t *testing.T) {
	forModes(t, bothModes, func(t *testing.T, mode testutil.Mode) {
		ctx := bounded(t, 90*time.Second)
		tp := testutil.NewTopo(t, testutil.TopoConfig{Mode: mode, RealServers: 1})
		body := strings.Repeat("0123456789abcdef", 10<<20/16)
		testutil.StartHTTP(t, tp.Servers[0], ":8080", body)
		if err := tp.Director.IP("link", "set", testutil.DirectorExtIf, "mtu", "1400"); err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, tp, mode)
		d.must("-A", "-t", vip+":8080", "-s", "rr")
		d.must("-a", "-t", vip+":8080", "-r", rs1+":8080", "-m")

		c := testutil.NewHTTPClient(tp.Client, netip.Addr{})
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+vip+":8080/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("download: %v", err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil {
			t.Fatalf("download after %d bytes: %v", n, err)
		}
		if n != int64(len(body)) || string(h.Sum(nil)) != string(sha256Sum(body)) {
			t.Fatalf("downloaded %d bytes, want %d intact", n, len(body))
		}
		if out := d.must("--counters"); !containsCounter(out, "tx_frag_needed") {
			t.Errorf("no frag-needed was sent, so the test did not exercise path MTU:\n%s", out)
		}
	})
}

func sha256Sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}
