package connsync

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestMasterObserve(t *testing.T) {
	m := NewMaster(MasterConfig{SyncID: 4})
	a := connTCP4
	b := connSeq4
	b.State = TCPSynRecv
	c := connUDP6

	steps := []struct {
		name       string
		sec        int
		snapshot   []Conn
		wantQueued int
		// due is checked at sec+dueAfter; wantSent is what must go out then.
		dueAfter int
		wantSent []Conn
	}{
		{name: "new conns in synced states", sec: 0, snapshot: []Conn{a, b, c}, wantQueued: 2},
		{name: "partial message not due before 2s", sec: 1, snapshot: []Conn{a, b, c}, wantQueued: 0, dueAfter: 0, wantSent: nil},
		{name: "partial message due at 2s", sec: 2, snapshot: []Conn{a, b, c}, wantQueued: 0, wantSent: []Conn{a, c}},
		{name: "state changes and a conn reaching ESTABLISHED", sec: 3,
			snapshot:   []Conn{withState(a, TCPFinWait, 120), withState(b, TCPEstablished, 900), c},
			wantQueued: 2, dueAfter: 2,
			wantSent: []Conn{withState(a, TCPFinWait, 120), withState(b, TCPEstablished, 900)}},
		{name: "refresh by age; gone conns forgotten", sec: 70,
			snapshot:   []Conn{withState(a, TCPFinWait, 120), withState(b, TCPEstablished, 900)},
			wantQueued: 1, dueAfter: 2, wantSent: []Conn{withState(a, TCPFinWait, 120)}},
		{name: "a forgotten conn is new again", sec: 80,
			snapshot:   []Conn{withState(a, TCPFinWait, 120), withState(b, TCPEstablished, 900), c},
			wantQueued: 1, dueAfter: 2, wantSent: []Conn{c}},
	}
	for _, s := range steps {
		if got := m.Observe(s.snapshot, at(s.sec)); got != s.wantQueued {
			t.Fatalf("%s: queued %d, want %d", s.name, got, s.wantQueued)
		}
		msgs := m.Due(at(s.sec + s.dueAfter))
		got := decodeAll(t, msgs)
		if len(got) != len(s.wantSent) || (len(got) > 0 && !reflect.DeepEqual(got, s.wantSent)) {
			t.Fatalf("%s: sent %+v, want %+v", s.name, got, s.wantSent)
		}
		for _, msg := range msgs {
			if msg[1] != 4 {
				t.Errorf("%s: syncid %d", s.name, msg[1])
			}
		}
	}
	st := m.Stats()
	if st.Conns != 3 || st.Records != 6 || st.Invalid != 0 || st.Deferred != 0 {
		t.Errorf("stats %+v", st)
	}
}

func withState(c Conn, state uint16, timeout uint32) Conn {
	c.State, c.Timeout = state, timeout
	return c
}

func TestMasterFullMessagesAreDueAtOnce(t *testing.T) {
	m := NewMaster(MasterConfig{MaxLen: 8 + 2*36})
	conns := manyConns(500)
	var plain []Conn
	for _, c := range conns {
		if c.Proto == ProtoTCP && c.Flags == 0 {
			plain = append(plain, c)
		}
	}
	plain = plain[:5]
	if n := m.Observe(plain, at(0)); n != 5 {
		t.Fatalf("queued %d", n)
	}
	if msgs := m.Due(at(0)); len(msgs) != 2 || len(decodeAll(t, msgs)) != 4 {
		t.Fatalf("due at once: %d messages, want the 2 full ones", len(msgs))
	}
	rest := m.Flush()
	if got := decodeAll(t, rest); !reflect.DeepEqual(got, plain[4:]) {
		t.Fatalf("flush: %+v", got)
	}
}

func TestMasterQueueCapAndInvalid(t *testing.T) {
	m := NewMaster(MasterConfig{MaxLen: 44, QueueLen: 1})
	var plain []Conn
	for _, c := range manyConns(100) {
		if c.Proto == ProtoTCP && c.Flags == 0 {
			plain = append(plain, c)
		}
	}
	bad := connTCP4
	bad.Dest = ap("[fd00::1]:80")
	snapshot := append(plain[:4:4], bad)
	// One record per message: the 1st is queued when the 2nd comes; the
	// queue holds one, so the 3rd and 4th are deferred; the IPv6 Dest of
	// the 5th is refused.
	if n := m.Observe(snapshot, at(0)); n != 2 {
		t.Fatalf("queued %d, want 2", n)
	}
	if st := m.Stats(); st.Deferred != 2 || st.Invalid != 1 || st.Records != 2 || st.Conns != 2 {
		t.Fatalf("stats %+v", st)
	}
	if got := decodeAll(t, m.Flush()); !reflect.DeepEqual(got, plain[:2]) {
		t.Fatalf("sent %+v", got)
	}
	// The deferred conns go with the next snapshot.
	if n := m.Observe(snapshot, at(1)); n != 2 {
		t.Fatalf("queued %d, want the 2 deferred", n)
	}
	if got := decodeAll(t, m.Flush()); !reflect.DeepEqual(got, plain[2:4]) {
		t.Fatalf("sent %+v", got)
	}
}

func TestMasterUpdate(t *testing.T) {
	m := NewMaster(MasterConfig{})
	if !m.Update(connTCP4, at(0)) {
		t.Fatal("new conn not queued")
	}
	if m.Update(connTCP4, at(1)) {
		t.Fatal("unchanged conn queued again")
	}
	if !m.Update(withState(connTCP4, TCPTimeWait, 120), at(2)) {
		t.Fatal("state change not queued")
	}
	if got := decodeAll(t, m.Flush()); len(got) != 2 || got[1].State != TCPTimeWait {
		t.Fatalf("sent %+v", got)
	}
}

func TestMasterRun(t *testing.T) {
	m := NewMaster(MasterConfig{FlushAfter: 20 * time.Millisecond, Tick: 5 * time.Millisecond})
	got := make(chan []byte, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- m.Run(ctx, func(b []byte) error { got <- b; return nil })
	}()
	m.Observe([]Conn{connTCP4, connUDP6}, time.Now())
	select {
	case msg := <-got:
		if conns := decodeAll(t, [][]byte{msg}); !reflect.DeepEqual(conns, []Conn{connTCP4, connUDP6}) {
			t.Errorf("sent %+v", conns)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing sent within 10s")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	if st := m.Stats(); st.Messages != 1 || st.SendErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

func BenchmarkMasterObserve(b *testing.B) {
	conns := manyConns(10000)
	m := NewMaster(MasterConfig{})
	m.Observe(conns, at(0))
	m.Flush()
	b.ReportAllocs()
	sec := 0
	for b.Loop() {
		sec++
		m.Observe(conns, at(sec))
		m.Flush()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(conns)), "ns/conn")
}
