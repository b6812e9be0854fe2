package sched

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestPersistence(t *testing.T) {
	const p = 300 * time.Second
	tests := []struct {
		name    string
		netmask int
		run     func(r *rig, clk *fakeClock) string
		want    string
	}{
		{
			name: "sticky per client; others scheduled normally",
			run: func(r *rig, _ *fakeClock) string {
				return r.pick(clientFlow("10.0.0.2")) + " " + r.pick(clientFlow("10.0.0.2")) + " " +
					r.pick(clientFlow("10.0.0.3")) + " " + r.pick(clientFlow("10.0.0.2")) + " " + r.pick(clientFlow("10.0.0.4"))
			},
			want: "A A B A A",
		},
		{
			name:    "netmask /24 groups clients",
			netmask: 24,
			run: func(r *rig, _ *fakeClock) string {
				return r.pick(clientFlow("10.0.0.2")) + " " + r.pick(clientFlow("10.0.0.77")) + " " +
					r.pick(clientFlow("10.0.1.2")) + " " + r.pick(clientFlow("10.0.0.250"))
			},
			want: "A A B A",
		},
		{
			name: "weight 0 and overloaded dests keep their clients",
			run: func(r *rig, _ *fakeClock) string {
				s := r.pick(clientFlow("10.0.0.2"))
				r.edit("A", 0, 0, 0)
				s += " " + r.pick(clientFlow("10.0.0.2"))
				r.edit("A", 1, 1, 0)
				r.c["A"].set(5, 5)
				return s + " " + r.pick(clientFlow("10.0.0.2")) + " " + r.pick(clientFlow("10.0.0.3"))
			},
			want: "A A A B",
		},
		{
			name: "expires Persistent after the last use",
			run: func(r *rig, clk *fakeClock) string {
				s := r.pick(clientFlow("10.0.0.2")) // A, expires t0+300
				clk.Advance(299 * time.Second)
				s += " " + r.pick(clientFlow("10.0.0.2")) // A, now expires t0+599
				clk.Advance(299 * time.Second)
				s += " " + r.pick(clientFlow("10.0.0.2")) // A at t0+598, expires t0+898
				clk.Advance(300 * time.Second)
				return s + " " + r.pick(clientFlow("10.0.0.2")) // expired: rr goes on to B
			},
			want: "A A A B",
		},
		{
			name: "Expire removes; a new template follows the scheduler",
			run: func(r *rig, clk *fakeClock) string {
				s := r.pick(clientFlow("10.0.0.2"))
				if n := r.p.Expire(clk.Advance(p - time.Second)); n != 0 {
					return "expired early"
				}
				if n := r.p.Expire(clk.Advance(time.Second)); n != 1 {
					return "not expired"
				}
				if len(r.p.Templates()) != 0 {
					return "template listed after expiry"
				}
				return s + " " + r.pick(clientFlow("10.0.0.2"))
			},
			want: "A B",
		},
		{
			name: "a removed dest's templates are dropped",
			run: func(r *rig, _ *fakeClock) string {
				s := r.pick(clientFlow("10.0.0.2")) + " " + r.pick(clientFlow("10.0.0.3"))
				r.del("A")
				if n := len(r.p.Templates()); n != 1 {
					return "templates left: " + string(rune('0'+n))
				}
				return s + " " + r.pick(clientFlow("10.0.0.2")) + " " + r.pick(clientFlow("10.0.0.3"))
			},
			want: "A B B B",
		},
		{
			name: "HoldTemplate pushes expiry back while conns live",
			run: func(r *rig, clk *fakeClock) string {
				s := r.pick(clientFlow("10.0.0.2"))
				c := netip.MustParseAddr("10.0.0.2")
				for range 20 { // 20 minutes of live conns, held every 50 s
					now := clk.Advance(50 * time.Second)
					r.p.HoldTemplate(c, now)
					if r.p.Expire(now) != 0 {
						return "expired while held"
					}
				}
				s += " " + r.pick(clientFlow("10.0.0.2"))
				now := clk.Advance(p + time.Second) // conns gone, no hold
				if r.p.Expire(now) != 1 {
					return "not expired after hold ended"
				}
				return s
			},
			want: "A A",
		},
		{
			name: "no destination creates no template",
			run: func(r *rig, _ *fakeClock) string {
				r.edit("A", 0, 0, 0)
				r.edit("B", 0, 0, 0)
				s := r.pick(clientFlow("10.0.0.2"))
				if len(r.p.Templates()) != 0 {
					return "template created"
				}
				return s
			},
			want: "-",
		},
		{
			name: "switching persistence off keeps templates but ignores them",
			run: func(r *rig, clk *fakeClock) string {
				s := r.pick(clientFlow("10.0.0.2"))
				if err := r.p.SetConfig(Config{Scheduler: "rr", Now: clk.Now}); err != nil {
					return err.Error()
				}
				s += " " + r.pick(clientFlow("10.0.0.2")) + " " + r.pick(clientFlow("10.0.0.2"))
				if len(r.p.Templates()) != 1 {
					return "template gone"
				}
				return s
			},
			want: "A B A",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			r := newRig(t, Config{Scheduler: "rr", Persistent: p, Netmask: tt.netmask, Now: clk.Now})
			r.add("A", 1)
			r.add("B", 1)
			if got := tt.run(r, clk); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPersistenceTemplates(t *testing.T) {
	clk := newClock()
	t0 := clk.Now()
	tests := []struct {
		name  string
		cfg   Config
		flows []Flow
		want  []Template
	}{
		{
			name:  "per client, VIP port kept",
			cfg:   Config{Netmask: 32},
			flows: []Flow{clientFlow("10.0.0.2"), clientFlow("10.0.0.2"), clientFlow("10.0.0.3")},
			want: []Template{
				{Proto: 6, Client: netip.MustParseAddr("10.0.0.2"), VIP: flow0.VIP, Dest: netip.MustParseAddrPort("10.9.0.1:80"), Expires: t0.Add(time.Minute)},
				{Proto: 6, Client: netip.MustParseAddr("10.0.0.3"), VIP: flow0.VIP, Dest: netip.MustParseAddrPort("10.9.0.2:80"), Expires: t0.Add(time.Minute)},
			},
		},
		{
			name:  "netmask /24 lists the network",
			cfg:   Config{Netmask: 24},
			flows: []Flow{clientFlow("10.0.0.2"), clientFlow("10.0.0.200")},
			want: []Template{
				{Proto: 6, Client: netip.MustParseAddr("10.0.0.0"), VIP: flow0.VIP, Dest: netip.MustParseAddrPort("10.9.0.1:80"), Expires: t0.Add(time.Minute)},
			},
		},
		{
			name: "all-ports service: one template, ports 0",
			cfg:  Config{AllPorts: true},
			flows: []Flow{
				{Proto: 6, Client: netip.MustParseAddrPort("10.0.0.2:1"), VIP: netip.MustParseAddrPort("192.0.2.1:443")},
				{Proto: 6, Client: netip.MustParseAddrPort("10.0.0.2:2"), VIP: netip.MustParseAddrPort("192.0.2.1:80")},
			},
			want: []Template{
				{Proto: 6, Client: netip.MustParseAddr("10.0.0.2"), VIP: netip.MustParseAddrPort("192.0.2.1:0"), Dest: netip.MustParseAddrPort("10.9.0.1:0"), Expires: t0.Add(time.Minute)},
			},
		},
		{
			name: "FTP port 21: VIP and dest port 0",
			flows: []Flow{
				{Proto: 6, Client: netip.MustParseAddrPort("10.0.0.2:1"), VIP: netip.MustParseAddrPort("192.0.2.1:21")},
			},
			want: []Template{
				{Proto: 6, Client: netip.MustParseAddr("10.0.0.2"), VIP: netip.MustParseAddrPort("192.0.2.1:0"), Dest: netip.MustParseAddrPort("10.9.0.1:0"), Expires: t0.Add(time.Minute)},
			},
		},
		{
			name: "ipv6 /64",
			cfg:  Config{Netmask: 64},
			flows: []Flow{
				{Proto: 17, Client: netip.MustParseAddrPort("[2001:db8:0:1::5]:1"), VIP: netip.MustParseAddrPort("[2001:db8::1]:53")},
				{Proto: 17, Client: netip.MustParseAddrPort("[2001:db8:0:1::6]:1"), VIP: netip.MustParseAddrPort("[2001:db8::1]:53")},
				{Proto: 17, Client: netip.MustParseAddrPort("[2001:db8:0:2::6]:1"), VIP: netip.MustParseAddrPort("[2001:db8::1]:53")},
			},
			want: []Template{
				{Proto: 17, Client: netip.MustParseAddr("2001:db8:0:1::"), VIP: netip.MustParseAddrPort("[2001:db8::1]:53"), Dest: netip.MustParseAddrPort("10.9.0.1:80"), Expires: t0.Add(time.Minute)},
				{Proto: 17, Client: netip.MustParseAddr("2001:db8:0:2::"), VIP: netip.MustParseAddrPort("[2001:db8::1]:53"), Dest: netip.MustParseAddrPort("10.9.0.2:80"), Expires: t0.Add(time.Minute)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Scheduler, cfg.Persistent, cfg.Now = "rr", time.Minute, clk.Now
			r := newRig(t, cfg)
			r.add("A", 1)
			r.add("B", 1)
			for _, f := range tt.flows {
				r.pick(f)
			}
			got := r.p.Templates()
			if len(got) != len(tt.want) {
				t.Fatalf("templates %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("template %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			persist := 0
			for _, d := range r.p.Dests() {
				persist += d.PersistConns
			}
			if persist != len(tt.want) {
				t.Errorf("PersistConns sum %d, want %d", persist, len(tt.want))
			}
		})
	}
}

func TestThresholds(t *testing.T) {
	type step struct {
		total int64 // active + inactive (split half/half)
		want  bool
	}
	tests := []struct {
		name  string
		u, l  uint32
		steps []step
	}{
		{name: "u and l hysteresis", u: 10, l: 5, steps: []step{{9, false}, {10, true}, {12, true}, {7, true}, {5, true}, {4, false}, {7, false}, {10, true}}},
		{name: "u only: clear below 3/4 u", u: 8, steps: []step{{7, false}, {8, true}, {6, true}, {5, false}, {7, false}}},
		{name: "u only: 3/4 boundary exact", u: 4, steps: []step{{4, true}, {3, true}, {2, false}}},
		{name: "u == l", u: 5, l: 5, steps: []step{{5, true}, {4, false}}},
		{name: "no thresholds never overload", steps: []step{{1 << 40, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, Config{Scheduler: "rr"})
			r.addThr("A", 1, tt.u, tt.l)
			r.add("B", 1)
			for i, s := range tt.steps {
				r.c["A"].set(s.total/2, s.total-s.total/2)
				got := r.p.Dests()[0].Overloaded
				if got != s.want {
					t.Fatalf("step %d (total %d): overloaded %v, want %v", i, s.total, got, s.want)
				}
				// The scheduler sees the same flag.
				seen := r.picks(2, flow0, false)
				if s.want && seen != "B B" {
					t.Fatalf("step %d: overloaded A picked: %s", i, seen)
				}
			}
		})
	}
}

func TestThresholdEdit(t *testing.T) {
	r := newRig(t, Config{Scheduler: "rr"})
	r.addThr("A", 1, 10, 5)
	over := func() bool { return r.p.Dests()[0].Overloaded }
	r.c["A"].set(10, 0)
	if !over() {
		t.Fatal("not overloaded at u")
	}
	r.c["A"].set(7, 0) // between l and u: stays
	r.edit("A", 1, 9, 5)
	if !over() {
		t.Fatal("a lower u_threshold cleared OVERLOAD")
	}
	r.edit("A", 1, 11, 5)
	if over() {
		t.Fatal("a higher u_threshold kept OVERLOAD")
	}
	r.c["A"].set(11, 0)
	if !over() {
		t.Fatal("not overloaded at new u")
	}
	r.c["A"].set(7, 0)
	r.edit("A", 1, 0, 0)
	if over() {
		t.Fatal("u_threshold 0 kept OVERLOAD")
	}
	r.edit("A", 1, 8, 0)
	if over() {
		t.Fatal("7 < 8 overloaded")
	}
}

func TestPoolErrors(t *testing.T) {
	if _, err := NewPool(Config{Scheduler: "nope"}); !errors.Is(err, ErrUnknownScheduler) {
		t.Errorf("NewPool(nope) = %v, want ErrUnknownScheduler", err)
	} else if want := `scheduler "nope": unknown scheduler`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	p, err := NewPool(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Config().Scheduler; got != "wlc" {
		t.Errorf("default scheduler %q, want wlc", got)
	}
	a := DestConfig{Addr: netip.MustParseAddrPort("10.1.1.1:80"), Weight: 1}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{name: "bad scheduler on edit", err: p.SetConfig(Config{Scheduler: "rrr"}), want: ErrUnknownScheduler},
		{name: "add", err: func() error { _, err := p.AddDest(a, nil); return err }()},
		{name: "add twice", err: func() error { _, err := p.AddDest(a, nil); return err }(), want: ErrDestExists},
		{name: "weight over 65535", err: func() error {
			_, err := p.AddDest(DestConfig{Addr: netip.MustParseAddrPort("10.1.1.2:80"), Weight: 65536}, nil)
			return err
		}(), want: ErrRange},
		{name: "negative weight", err: p.EditDest(DestConfig{Addr: a.Addr, Weight: -1}), want: ErrRange},
		{name: "l above u", err: p.EditDest(DestConfig{Addr: a.Addr, Weight: 1, LThreshold: 3}), want: ErrRange},
		{name: "edit missing", err: p.EditDest(DestConfig{Addr: netip.MustParseAddrPort("10.1.1.9:80"), Weight: 1}), want: ErrNoDest},
		{name: "delete missing", err: p.DelDest(netip.MustParseAddrPort("10.1.1.9:80")), want: ErrNoDest},
		{name: "delete", err: p.DelDest(a.Addr)},
		{name: "schedule empty", err: func() error { _, err := p.Schedule(flow0); return err }(), want: ErrNoDest},
		{name: "negative persistence", err: p.SetConfig(Config{Persistent: -1}), want: ErrRange},
		{name: "netmask too long", err: p.SetConfig(Config{Netmask: 129}), want: ErrRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == nil && tt.err != nil || tt.want != nil && !errors.Is(tt.err, tt.want) {
				t.Errorf("err = %v, want %v", tt.err, tt.want)
			}
		})
	}
	if got := p.Config().Scheduler; got != "wlc" {
		t.Errorf("a failed SetConfig changed the scheduler to %q", got)
	}
}

func TestNames(t *testing.T) {
	want := "dh fo lblc lblcr lc mh none nq ovf rr sed sh twos wlc wrr"
	got := ""
	for i, n := range Names() {
		if i > 0 {
			got += " "
		}
		got += n
	}
	if got != want {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	for _, n := range Names() {
		if _, err := NewPool(Config{Scheduler: n}); err != nil {
			t.Errorf("NewPool(%s): %v", n, err)
		}
	}
}

func TestNoneScheduler(t *testing.T) {
	r := newRig(t, Config{Scheduler: "none", Persistent: time.Minute})
	r.add("A", 1)
	if got := r.picks(3, flow0, false); got != "- - -" {
		t.Errorf("none picked %q", got)
	}
}

func TestDestsSnapshot(t *testing.T) {
	r := newRig(t, Config{Scheduler: "wlc"})
	r.addThr("C", 3, 10, 2)
	r.add("A", 1)
	r.add("B", 0)
	r.edit("A", 5, 0, 0)
	r.del("B")
	r.add("B", 2)
	got := r.p.Dests()
	want := []DestConfig{
		{Addr: r.addrOf("C"), Weight: 3, UThreshold: 10, LThreshold: 2},
		{Addr: r.addrOf("A"), Weight: 5},
		{Addr: r.addrOf("B"), Weight: 2},
	}
	if len(got) != len(want) {
		t.Fatalf("Dests() = %+v", got)
	}
	for i := range want {
		if got[i].DestConfig != want[i] || got[i].Overloaded || got[i].PersistConns != 0 {
			t.Errorf("dest %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
