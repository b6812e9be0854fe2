package ctl

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"xvs/ctl/ctltest"
	"xvs/maps"
)

// TestExpireInChunks: expired conns are handed to the datapath in chunks
// during the walk; every one goes whatever the chunk boundaries, the
// conns still within their timeout stay, and the count is exact.
func TestExpireInChunks(t *testing.T) {
	tests := []struct {
		name           string
		expired, fresh int
	}{
		{name: "none expired", expired: 0, fresh: 10},
		{name: "less than a chunk", expired: 5, fresh: 3},
		{name: "exactly one chunk", expired: expireChunk, fresh: 1},
		{name: "chunks and a partial one", expired: 2*expireChunk + 7, fresh: 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dp := ctltest.New()
			now := time.Hour
			tb := NewTable(dp, TableOptions{Mono: func() time.Duration { return now }})
			must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m"), nil))
			vip := netip.MustParseAddrPort("10.0.0.1:80")
			for i := range tt.expired + tt.fresh {
				client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)}), 1000)
				seen := now - time.Hour // idle far beyond every timeout
				if i >= tt.expired {
					seen = now
				}
				must(t, dp.InstallConn(maps.Conn{Proto: 6, Client: client, VIP: vip, Dest: netip.MustParseAddrPort("172.16.0.2:80"), LastSeen: seen}))
			}
			n, err := tb.Expire(context.Background())
			if err != nil || n != tt.expired {
				t.Fatalf("Expire = %d, %v; want %d, nil", n, err, tt.expired)
			}
			if len(dp.Conns) != tt.fresh {
				t.Errorf("%d conns left, want %d", len(dp.Conns), tt.fresh)
			}
			for _, c := range dp.Conns {
				if c.LastSeen != now {
					t.Errorf("expired conn %s left", c.Client)
				}
			}
			if a, in := dp.DestConns(0); a != 0 || in != int64(tt.fresh) {
				t.Errorf("dest counters %d/%d, want 0/%d", a, in, tt.fresh)
			}
		})
	}
}
