package sched

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestScheduleAllocs: the hot path allocates nothing for the schedulers
// that keep no per-flow state, with and without thresholds.
func TestScheduleAllocs(t *testing.T) {
	for _, name := range []string{"rr", "wrr", "dh", "sh", "mh", "fo", "lc", "wlc", "sed", "nq", "ovf", "twos", "lblc", "lblcr"} {
		for _, thr := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/thresholds=%v", name, thr), func(t *testing.T) {
				r := newRig(t, Config{Scheduler: name, Flags: FlagFallback})
				for i := range 16 {
					n := fmt.Sprint(i)
					if thr {
						r.addThr(n, int32(i%4+1), 100, 10)
					} else {
						r.add(n, int32(i%4+1))
					}
					r.c[n].set(int64(i), int64(i))
				}
				r.pick(flow0) // lblc/lblcr create their entry here
				f := flow0
				allocs := testing.AllocsPerRun(200, func() {
					if _, err := r.p.Schedule(f); err != nil {
						t.Fatal(err)
					}
				})
				if allocs != 0 {
					t.Errorf("%v allocations per Schedule", allocs)
				}
			})
		}
	}
}

// TestConcurrent runs schedules, edits and expiry from several goroutines;
// run it with -race.
func TestConcurrent(t *testing.T) {
	for _, name := range []string{"rr", "wrr", "wlc", "mh", "lblcr"} {
		t.Run(name, func(t *testing.T) {
			p, err := NewPool(Config{Scheduler: name, Persistent: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			addrs := make([]netip.AddrPort, 8)
			for i := range addrs {
				addrs[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, 0, byte(i + 1)}), 80)
				if _, err := p.AddDest(DestConfig{Addr: addrs[i], Weight: 1}, &fakeCounters{}); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := range 500 {
						f := flow0
						f.Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i)}), 1)
						if _, err := p.Schedule(f); err != nil && !errors.Is(err, ErrNoDest) {
							t.Error(err)
						}
					}
				})
			}
			wg.Go(func() {
				for i := range 200 {
					a := addrs[i%len(addrs)]
					switch i % 3 {
					case 0:
						_ = p.EditDest(DestConfig{Addr: a, Weight: int32(i % 5)})
					case 1:
						_ = p.DelDest(a)
					case 2:
						_, _ = p.AddDest(DestConfig{Addr: a, Weight: 2}, nil)
					}
					p.Expire(time.Now().Add(time.Duration(i) * time.Second))
					_ = p.Dests()
					_ = p.Templates()
				}
			})
			wg.Wait()
		})
	}
}

// fuzzModel mirrors what the fuzzer did to a pool.
type fuzzDest struct {
	w    int32
	u, l uint32
	c    *fakeCounters
}

// FuzzPool drives random add/del/edit/counter/schedule sequences and checks
// the invariants every scheduler keeps.
func FuzzPool(f *testing.F) {
	f.Add([]byte{0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{1, 2, 0, 1, 0, 3, 0, 2, 4, 4, 4, 1, 5, 5, 5})
	f.Add([]byte{10, 1, 0, 9, 3, 200, 0, 4, 5, 2, 9, 9, 9, 4})
	f.Add([]byte{12, 3, 0, 1, 0, 2, 2, 1, 7, 3, 4, 4, 4, 4, 6, 0, 4})
	names := Names()
	// Schedulers that never hand out a quiesced or overloaded dest.
	strict := map[string]bool{"rr": true, "wrr": true, "lc": true, "wlc": true, "sed": true, "nq": true,
		"fo": true, "ovf": true, "twos": true, "lblcr": true, "dh": true, "sh": true, "mh": true}
	// Schedulers that find a dest whenever one qualifies.
	complete := map[string]bool{"rr": true, "wrr": true, "lc": true, "wlc": true, "sed": true, "nq": true,
		"fo": true, "ovf": true, "twos": true, "lblc": true, "lblcr": true}
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		name := names[int(next())%len(names)]
		opt := next()
		clk := newClock()
		cfg := Config{Scheduler: name, Flags: uint32(opt&3) << 3, Now: clk.Now}
		persistent := opt&4 != 0
		if persistent {
			cfg.Persistent = time.Minute
			cfg.Netmask = 24
		}
		seed := uint32(opt)
		cfg.Rand = func() uint32 { seed = seed*1664525 + 1013904223; return seed }
		p, err := NewPool(cfg)
		if err != nil {
			t.Fatal(err)
		}
		model := map[netip.AddrPort]*fuzzDest{}
		addr := func(b byte) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 3, 0, b % 8}), 80)
		}
		for steps := 0; len(data) > 0 && steps < 500; steps++ {
			op, arg := next(), next()
			a := addr(arg)
			switch op % 6 {
			case 0: // add
				w, u := int32(next()%4), uint32(next()%5)
				l := uint32(0)
				if u > 0 {
					l = uint32(next()) % (u + 1)
				}
				c := &fakeCounters{}
				_, err := p.AddDest(DestConfig{Addr: a, Weight: w, UThreshold: u, LThreshold: l}, c)
				if _, ok := model[a]; ok != errors.Is(err, ErrDestExists) {
					t.Fatalf("add %v: %v (exists %v)", a, err, ok)
				}
				if err == nil {
					model[a] = &fuzzDest{w: w, u: u, l: l, c: c}
				}
			case 1: // delete
				err := p.DelDest(a)
				if _, ok := model[a]; ok != (err == nil) {
					t.Fatalf("del %v: %v (exists %v)", a, err, ok)
				}
				delete(model, a)
			case 2: // edit
				w, u := int32(next()%4), uint32(next()%5)
				err := p.EditDest(DestConfig{Addr: a, Weight: w, UThreshold: u})
				if d, ok := model[a]; ok != (err == nil) {
					t.Fatalf("edit %v: %v (exists %v)", a, err, ok)
				} else if ok {
					d.w, d.u, d.l = w, u, 0
				}
			case 3: // counters
				if d, ok := model[a]; ok {
					d.c.set(int64(next()%6), int64(next()%6))
				}
			case 4: // time passes
				p.Expire(clk.Advance(time.Duration(arg) * time.Second))
			case 5: // schedule
				fl := flow0
				fl.Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, next() % 4, next()}), uint16(arg))
				d, err := p.Schedule(fl)
				infos := p.Dests() // flags as the scheduler saw them
				if len(infos) != len(model) {
					t.Fatalf("pool has %d dests, model %d", len(infos), len(model))
				}
				qualifies := func(i DestInfo) bool {
					if i.Weight <= 0 || i.Overloaded {
						return false
					}
					return name != "ovf" || model[i.Addr].c.Active() <= int64(i.Weight)
				}
				if err != nil {
					if !errors.Is(err, ErrNoDest) || d != nil {
						t.Fatalf("Schedule = %v, %v", d, err)
					}
					if complete[name] && slices.ContainsFunc(infos, qualifies) {
						t.Fatalf("%s: no dest while one qualifies: %+v", name, infos)
					}
					continue
				}
				i := slices.IndexFunc(infos, func(i DestInfo) bool { return i.Addr == d.Addr })
				if i < 0 {
					t.Fatalf("%s: scheduled removed dest %v", name, d.Addr)
				}
				if name == "none" {
					t.Fatalf("none scheduled %v", d.Addr)
				}
				if !persistent && strict[name] && !qualifies(infos[i]) {
					t.Fatalf("%s: scheduled unusable %+v", name, infos[i])
				}
				if !persistent && name == "lblc" && infos[i].Weight <= 0 {
					t.Fatalf("lblc: scheduled quiesced %+v", infos[i])
				}
			}
		}
		// Persistence bookkeeping stays consistent.
		sum := 0
		for _, i := range p.Dests() {
			sum += i.PersistConns
		}
		if n := len(p.Templates()); n != sum {
			t.Fatalf("%d templates, PersistConns sum %d", n, sum)
		}
	})
}
