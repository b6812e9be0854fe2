package maps

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"xvs/bpf"
)

// BenchmarkInstallDelete: the daemon's map work for one new conn: its
// install (first packet) and its removal (expiry or delete).
func BenchmarkInstallDelete(b *testing.B) {
	m, _ := newTestMaps(b)
	conns := make([]Conn, 1024)
	for i := range conns {
		conns[i] = tcpConn(i)
	}
	b.ResetTimer()
	for i := range b.N {
		c := conns[i%len(conns)]
		if err := m.InstallConn(c); err != nil {
			b.Fatal(err)
		}
		if _, err := m.DeleteConn(c.Proto, c.Client, c.VIP); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExpireHalfOpen: the removal of idle half-open conns, the
// steady state of a stream of one-shot UDP flows (every conn created is
// removed again), as the daemon's walk hands them to ExpireConns (in
// batches; the walk's own cost is not in it) and by one run of the
// kernel's sweep: ns per conn removed, with xvsd's default table sizes
// (a main pair of 1M, a new pair of 256k) holding 200,000 conns.
func BenchmarkExpireHalfOpen(b *testing.B) {
	const n = 200000
	for _, how := range []string{"walk", "sweep"} {
		b.Run(how, func(b *testing.B) {
			m, _ := newTestMapsSpec(b, func(spec *ebpf.CollectionSpec) {
				spec.Maps[bpf.XvsMapXvsConns].MaxEntries = 1 << 20
				spec.Maps[bpf.XvsMapXvsRconns].MaxEntries = 1 << 20
			})
			rs := Conn{Dest: netip.MustParseAddrPort("172.16.0.2:80"), DestID: 7}
			setDests(b, m, rs)
			conns := make([]Conn, n)
			for i := range conns {
				conns[i] = Conn{
					Proto:    17,
					Client:   netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 5353),
					VIP:      netip.MustParseAddrPort("202.103.106.5:53"),
					Dest:     rs.Dest,
					Flags:    uint8(bpf.XvsConnFlagsCONN_F_NEW),
					SvcID:    1,
					DestID:   7,
					LastSeen: time.Second,
				}
			}
			errs := make([]error, n)
			var total time.Duration
			removed := 0
			for range b.N {
				b.StopTimer()
				m.InstallConns(conns, errs)
				for i, err := range errs {
					if err != nil {
						b.Fatalf("install %d: %v", i, err)
					}
				}
				b.StartTimer()
				t0 := time.Now()
				var got int
				var err error
				if how == "walk" {
					got, err = m.ExpireConns(conns)
				} else {
					// One run without its limit of removals (xvsd
					// never runs one that long): the cost per conn of
					// removing where the walk finds it.
					if _, err = m.SweepConns(0, SweepTimeouts{}, 1); err == nil { // loads it
						m.sweep.mu.Lock()
						var res SweepResult
						res, err = m.sweep.run(time.Hour, SweepTimeouts{New: time.Second}, n, 0)
						m.sweep.mu.Unlock()
						got = res.Removed
					}
				}
				total += time.Since(t0)
				if err != nil || got != n {
					b.Fatalf("removed %d of %d: %v", got, n, err)
				}
				removed += got
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(removed), "ns/conn")
		})
	}
}
