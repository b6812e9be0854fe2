package tests

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"xvs/testutil"
)

// stream is a TCP stream written through the VIP in the background, for
// the cases where something happens to the director meanwhile.
type stream struct {
	written atomic.Int64
	done    chan streamResult
}

type streamResult struct {
	r   testutil.StreamResult
	err error
}

func startStream(ctx context.Context, conn net.Conn, cfg testutil.StreamConfig) *stream {
	s := &stream{done: make(chan streamResult, 1)}
	go func() {
		r, err := testutil.WriteStream(ctx, conn, cfg, &s.written)
		s.done <- streamResult{r, err}
	}()
	return s
}

// verify waits for the writer and checks that sink got exactly what it
// sent: the same number of bytes with the same SHA-256.
func (s *stream) verify(ctx context.Context, t *testing.T, sink *testutil.TCPSink) {
	t.Helper()
	var res streamResult
	select {
	case res = <-s.done:
	case <-ctx.Done():
		t.Fatalf("stream did not finish: %v (written %d)", ctx.Err(), s.written.Load())
	}
	if res.err != nil {
		t.Fatalf("stream writer: %v", res.err)
	}
	r, err := sink.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Err != nil || r.Bytes != res.r.Bytes || r.Sum != res.r.Sum {
		t.Errorf("received %d bytes (read error %v, sha256 match %v), sent %d", r.Bytes, r.Err, r.Sum == res.r.Sum, res.r.Bytes)
	}
}

// openIdle opens n kept-alive HTTP connections from ns to addr, each
// answered once, closed at the end of the test.
func openIdle(ctx context.Context, t *testing.T, ns *testutil.NetNS, addr netip.AddrPort, n int) []*testutil.HTTPConn {
	t.Helper()
	var hcs []*testutil.HTTPConn
	for i := range n {
		hc, err := testutil.DialHTTP(ctx, ns, netip.Addr{}, addr)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		t.Cleanup(func() { hc.Close() })
		if _, err := hc.Get(ctx); err != nil {
			t.Fatalf("idle connection %d: first request: %v", i, err)
		}
		hcs = append(hcs, hc)
	}
	return hcs
}
