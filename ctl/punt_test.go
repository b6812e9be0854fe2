package ctl

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"xvs/ctl/ctltest"
	"xvs/loader"
	"xvs/maps"
	"xvs/testutil"
)

// fakeTap hands frames to the punt workers and keeps what they write back.
type fakeTap struct {
	in      chan []byte
	mu      sync.Mutex
	written [][]byte
	mac     net.HardwareAddr
}

func (f *fakeTap) Queues() int { return 1 }

func (f *fakeTap) ReadBatch(q int, bufs [][]byte, lens []int) (int, error) {
	b, ok := <-f.in
	if !ok {
		return 0, os.ErrClosed
	}
	lens[0] = copy(bufs[0], b)
	n := 1
	for n < len(bufs) {
		select {
		case b, ok := <-f.in:
			if !ok {
				return n, nil
			}
			lens[n] = copy(bufs[n], b)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

func (f *fakeTap) Write(q int, frame []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.written = append(f.written, append([]byte(nil), frame...))
	return nil
}

func (f *fakeTap) MAC() net.HardwareAddr { return f.mac }

// firstPacket schedules the connection of one punted frame and says what
// to do with it (firstPackets for a batch of one, as the workers would with a single frame queued).
func (t *Table) firstPacket(frame []byte, st *PuntStats) verdict {
	b := &puntBatch{
		bufs: [][]byte{frame}, lens: []int{len(frame)}, verdicts: make([]verdict, 1),
		frames: make([]loader.Frame, 1), keys: make([]maps.Conn, 1), exist: make([]bool, 1),
		first: make([]int, 1), errs: make([]error, 1),
	}
	t.firstPackets(b, 1, st)
	return b.verdicts[0]
}

func syn(client, vip netip.AddrPort) []byte {
	return testutil.Frame{
		Src: client.Addr(), Dst: vip.Addr(), SrcPort: client.Port(), DstPort: vip.Port(),
		Proto: testutil.ProtoTCP, TCPFlags: testutil.TCPSyn,
	}.Bytes()
}

func TestFirstPacketSchedulesAndInstalls(t *testing.T) {
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{})
	must(t, tb.Apply(parseAll(t,
		"-A -t 202.103.106.5:80 -s rr",
		"-a -t 202.103.106.5:80 -r 172.16.0.2:80 -m",
		"-a -t 202.103.106.5:80 -r 172.16.0.3:8080 -m",
		"-A -t 202.103.106.5:443 -s rr"), nil))
	vip := netip.MustParseAddrPort("202.103.106.5:80")
	var st PuntStats
	want := []string{"172.16.0.2:80", "172.16.0.3:8080", "172.16.0.2:80", "172.16.0.3:8080"}
	for i, w := range want {
		client := netip.AddrPortFrom(netip.MustParseAddr("202.103.106.2"), uint16(40000+i))
		if tb.firstPacket(syn(client, vip), &st) != verdictForward {
			t.Fatalf("packet %d not written back", i)
		}
		c, err := dp.LookupConn(6, client, vip)
		if err != nil {
			t.Fatalf("packet %d: no conn installed: %v", i, err)
		}
		if c.Dest.String() != w || c.Flags != 1 {
			t.Errorf("packet %d: conn to %v flags %d, want %s flags 1 (new)", i, c.Dest, c.Flags, w)
		}
	}
	// The same flow punted again is not scheduled again.
	client := netip.MustParseAddrPort("202.103.106.2:40000")
	if tb.firstPacket(syn(client, vip), &st) != verdictForward || st.Existing.Load() != 1 || st.Scheduled.Load() != 4 {
		t.Errorf("second punt of a flow: scheduled %d existing %d, want 4 and 1", st.Scheduled.Load(), st.Existing.Load())
	}
	tests := []struct {
		name  string
		frame []byte
		want  verdict
		count func() uint64
	}{
		{"service without real servers", syn(client, netip.MustParseAddrPort("202.103.106.5:443")), verdictNoDest, st.NoDest.Load},
		{"not a service", syn(client, netip.MustParseAddrPort("202.103.106.5:22")), verdictDrop, st.NoService.Load},
		{"truncated", syn(client, vip)[:30], verdictDrop, st.Malformed.Load},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.count()
			if got := tb.firstPacket(tt.frame, &st); got != tt.want {
				t.Errorf("verdict %d, want %d", got, tt.want)
			}
			if tt.count() != before+1 {
				t.Error("not counted")
			}
		})
	}
}

func TestRunPuntWritesBackToTheTap(t *testing.T) {
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{})
	must(t, tb.Apply(parseAll(t, "-A -u [2001:db8::5]:53 -s rr", "-a -u [2001:db8::5]:53 -r [2001:db8:2::2]:53 -m"), nil))
	tap := &fakeTap{in: make(chan []byte, 2), mac: net.HardwareAddr{2, 0, 0, 0, 0, 9}}
	client := netip.MustParseAddrPort("[2001:db8:1::2]:5353")
	vip := netip.MustParseAddrPort("[2001:db8::5]:53")
	tap.in <- testutil.Frame{Src: client.Addr(), Dst: vip.Addr(), SrcPort: client.Port(), DstPort: vip.Port(), Proto: testutil.ProtoUDP, Payload: []byte("q")}.Bytes()
	tap.in <- []byte{1, 2, 3}
	close(tap.in)
	var st PuntStats
	err := tb.RunPunt(context.Background(), tap, &st, nil)
	if err == nil || !errors.Is(err, os.ErrClosed) {
		t.Fatalf("RunPunt = %v, want the read error", err)
	}
	if len(tap.written) != 1 {
		t.Fatalf("%d frames written back, want 1", len(tap.written))
	}
	if got := net.HardwareAddr(tap.written[0][:6]); got.String() != tap.mac.String() {
		t.Errorf("written back to %v, want the tap's MAC %v", got, tap.mac)
	}
	if _, err := dp.LookupConn(17, client, vip); err != nil {
		t.Errorf("no conn for the UDP flow: %v", err)
	}
	if st.Malformed.Load() != 1 {
		t.Errorf("malformed = %d, want 1", st.Malformed.Load())
	}
}

func TestPersistenceSticksAcrossConns(t *testing.T) {
	dp := ctltest.New()
	now := time.Unix(1000, 0)
	tb := NewTable(dp, TableOptions{Wall: func() time.Time { return now }})
	must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr -p 30",
		"-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m", "-a -t 10.0.0.1:80 -r 172.16.0.3:80 -m"), nil))
	vip := netip.MustParseAddrPort("10.0.0.1:80")
	var st PuntStats
	first := ""
	for i := range 4 {
		client := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.7"), uint16(1000+i))
		tb.firstPacket(syn(client, vip), &st)
		c, err := dp.LookupConn(6, client, vip)
		must(t, err)
		if first == "" {
			first = c.Dest.String()
		} else if c.Dest.String() != first {
			t.Fatalf("conn %d went to %v, want %s (persistent)", i, c.Dest, first)
		}
	}
	conns, err := tb.Conns(context.Background())
	must(t, err)
	templates := 0
	for _, c := range conns {
		if c.Template {
			templates++
			if c.Client.String() != "192.0.2.7:0" || c.Dest.String() != first {
				t.Errorf("template %+v", c)
			}
		}
	}
	if templates != 1 {
		t.Errorf("%d templates listed, want 1", templates)
	}
}

type fakeICMP struct{ sent int }

func (f *fakeICMP) Send([]byte) error { f.sent++; return nil }

func TestNoDestAnswersICMPWithinTheLimit(t *testing.T) {
	tb := NewTable(ctltest.New(), TableOptions{})
	must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m -w 0"), nil))
	tap := &fakeTap{in: make(chan []byte, icmpPerSecond+10)}
	for i := range icmpPerSecond + 10 {
		tap.in <- syn(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(1000+i)), netip.MustParseAddrPort("10.0.0.1:80"))
	}
	close(tap.in)
	var st PuntStats
	icmp := &fakeICMP{}
	tb.RunPunt(context.Background(), tap, &st, icmp)
	if st.NoDest.Load() != icmpPerSecond+10 || len(tap.written) != 0 {
		t.Fatalf("no dest %d, written back %d; want %d and 0", st.NoDest.Load(), len(tap.written), icmpPerSecond+10)
	}
	// The run takes well under a second, but may straddle one boundary.
	if sent := uint64(icmp.sent); sent != st.ICMPSent.Load() || sent+st.ICMPLimit.Load() != icmpPerSecond+10 || sent < icmpPerSecond || sent > icmpPerSecond+10 {
		t.Errorf("sent %d, limited %d", sent, st.ICMPLimit.Load())
	}
}

func TestSYNOnClosedConnIsRescheduled(t *testing.T) {
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{NoRings: true})
	must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m", "-a -t 10.0.0.1:80 -r 172.16.0.3:80 -m"), nil))
	client := netip.MustParseAddrPort("192.0.2.1:1000")
	vip := netip.MustParseAddrPort("10.0.0.1:80")
	var st PuntStats
	tests := []struct {
		name     string
		state    uint8
		wantDest string
	}{
		{"established conn is kept", 1, "172.16.0.2:80"},
		{"time_wait conn is replaced", 5, "172.16.0.3:80"},
		{"close conn is replaced", 6, "172.16.0.2:80"},
	}
	tb.firstPacket(syn(client, vip), &st)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dp.SetState(6, client, vip, tt.state)
			if v := tb.firstPacket(syn(client, vip), &st); v != verdictForward {
				t.Fatalf("verdict %d", v)
			}
			c, err := dp.LookupConn(6, client, vip)
			must(t, err)
			if c.Dest.String() != tt.wantDest {
				t.Errorf("conn to %v, want %s", c.Dest, tt.wantDest)
			}
		})
	}
	if st.Reused.Load() != 2 {
		t.Errorf("reused %d, want 2", st.Reused.Load())
	}
}

// With a ring, the daemon expires the closed conn and writes the SYN back
// without scheduling: the datapath takes the ring's next pick for it, so
// that its sequence is the only one.
func TestSYNOnClosedConnOfRingServiceIsLeftToTheRing(t *testing.T) {
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{})
	must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m", "-a -t 10.0.0.1:80 -r 172.16.0.3:80 -m"), nil))
	client := netip.MustParseAddrPort("192.0.2.1:1000")
	vip := netip.MustParseAddrPort("10.0.0.1:80")
	var st PuntStats
	// The first SYN reached the daemon (say the new pair was full).
	if v := tb.firstPacket(syn(client, vip), &st); v != verdictForward {
		t.Fatalf("verdict %d", v)
	}
	dp.SetState(6, client, vip, 5)
	if v := tb.firstPacket(syn(client, vip), &st); v != verdictForward {
		t.Fatalf("verdict %d for the reusing SYN", v)
	}
	if _, err := dp.LookupConn(6, client, vip); err == nil {
		t.Errorf("the daemon installed a conn for the reusing SYN; want it left to the ring")
	}
	if st.Reused.Load() != 1 || st.Scheduled.Load() != 1 {
		t.Errorf("reused %d, scheduled %d; want 1 and 1", st.Reused.Load(), st.Scheduled.Load())
	}
}

// blockingTap's reads block until a read deadline is set, like the tap's
// queues in the netpoller.
type blockingTap struct {
	fakeTap
	woken chan struct{}
	once  sync.Once
}

func (b *blockingTap) Queues() int { return 2 }

func (b *blockingTap) ReadBatch(q int, bufs [][]byte, lens []int) (int, error) {
	<-b.woken
	return 0, os.ErrDeadlineExceeded
}

func (b *blockingTap) SetReadDeadline(time.Time) error {
	b.once.Do(func() { close(b.woken) })
	return nil
}

func TestRunPuntStopsWithItsContext(t *testing.T) {
	tb := NewTable(ctltest.New(), TableOptions{})
	tap := &blockingTap{woken: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.RunPunt(ctx, tap, &PuntStats{}, nil) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunPunt = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunPunt still blocked in Read 10 s after its context ended")
	}
}

// TestFirstPacketsBatch: frames read together are scheduled in order, one
// decision per new flow: a second frame of a flow in the same batch and a
// frame of a flow that has a conn cost none, and are written back.
func TestFirstPacketsBatch(t *testing.T) {
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{})
	must(t, tb.Apply(parseAll(t,
		"-A -t 202.103.106.5:80 -s rr",
		"-a -t 202.103.106.5:80 -r 172.16.0.2:80 -m",
		"-a -t 202.103.106.5:80 -r 172.16.0.3:80 -m"), nil))
	vip := netip.MustParseAddrPort("202.103.106.5:80")
	cli := func(p uint16) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("202.103.106.2"), p)
	}
	// A conn that exists already, to the second real server.
	old := cli(1000)
	if tb.firstPacket(syn(old, vip), &PuntStats{}) != verdictForward {
		t.Fatal("first conn not scheduled")
	}
	tap := &fakeTap{in: make(chan []byte, 8), mac: net.HardwareAddr{2, 0, 0, 0, 0, 9}}
	for _, p := range []uint16{1, 2, 1, 1000, 3} {
		tap.in <- syn(cli(p), vip)
	}
	tap.in <- []byte{1, 2, 3}
	close(tap.in)
	var st PuntStats
	if err := tb.RunPunt(context.Background(), tap, &st, nil); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("RunPunt = %v, want the read error", err)
	}
	if len(tap.written) != 5 {
		t.Errorf("%d frames written back, want 5", len(tap.written))
	}
	// rr went 172.16.0.2 (the old conn), then on: .3, .2, .3.
	for p, want := range map[uint16]string{1000: "172.16.0.2:80", 1: "172.16.0.3:80", 2: "172.16.0.2:80", 3: "172.16.0.3:80"} {
		c, err := dp.LookupConn(6, cli(p), vip)
		if err != nil || c.Dest.String() != want {
			t.Errorf("client port %d: conn %v, %v; want to %s", p, c.Dest, err, want)
		}
	}
	if st.Scheduled.Load() != 3 || st.Existing.Load() != 2 || st.Malformed.Load() != 1 {
		t.Errorf("scheduled %d existing %d malformed %d, want 3 2 1", st.Scheduled.Load(), st.Existing.Load(), st.Malformed.Load())
	}
}
