package sched

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
)

type benchCounters struct{ a, i atomic.Int64 }

func (c *benchCounters) Active() int64   { return c.a.Load() }
func (c *benchCounters) Inactive() int64 { return c.i.Load() }

// BenchmarkSchedule measures one Schedule per scheduler and pool size, over
// 1024 different clients; every pick counts one more active connection, so
// the least-connection family keeps moving.
func BenchmarkSchedule(b *testing.B) {
	flows := make([]Flow, 1024)
	for i := range flows {
		flows[i] = Flow{Proto: 6, Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), uint16(1024+i)), VIP: flow0.VIP}
	}
	for _, name := range Names() {
		for _, n := range []int{2, 16, 256} {
			b.Run(fmt.Sprintf("%s/dests=%d", name, n), func(b *testing.B) {
				p, err := NewPool(Config{Scheduler: name})
				if err != nil {
					b.Fatal(err)
				}
				cs := map[netip.AddrPort]*benchCounters{}
				for i := range n {
					a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), 80)
					c := &benchCounters{}
					cs[a] = c
					if _, err := p.AddDest(DestConfig{Addr: a, Weight: int32(i%5 + 1)}, c); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					d, err := p.Schedule(flows[i&1023])
					if err == nil {
						cs[d.Addr].a.Add(1)
					}
					i++
				}
			})
		}
	}
}
