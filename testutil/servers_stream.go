package testutil

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"
)

// StreamResult is what a stream writer sent.
type StreamResult struct {
	Bytes int64
	Sum   [sha256.Size]byte
}

// StreamConfig shapes a long TCP transfer: Total bytes in chunks of Chunk
// bytes with Pause between chunks, so that it lasts long enough for
// something to happen in the middle (a daemon restart).
type StreamConfig struct {
	Total int64
	Chunk int
	Pause time.Duration
	Seed  uint64
}

// WriteStream writes pseudo-random data (reproducible from the seed) to c,
// hashing it as it goes, then half-closes c so that the reader sees EOF.
// Written, when not nil, is kept up to date for callers that wait for
// progress. Every write has a deadline, so a stalled path fails, not hangs.
func WriteStream(ctx context.Context, c net.Conn, cfg StreamConfig, written *atomic.Int64) (StreamResult, error) {
	if cfg.Chunk <= 0 {
		cfg.Chunk = 64 << 10
	}
	var seed [32]byte
	for i := range 8 {
		seed[i] = byte(cfg.Seed >> (8 * i))
	}
	src := rand.NewChaCha8(seed)
	var h hash.Hash = sha256.New()
	buf := make([]byte, cfg.Chunk)
	var n int64
	for n < cfg.Total {
		if err := ctx.Err(); err != nil {
			return StreamResult{Bytes: n}, fmt.Errorf("stream after %d bytes: %w", n, err)
		}
		part := buf[:min(int64(len(buf)), cfg.Total-n)]
		_, _ = src.Read(part)
		_ = c.SetWriteDeadline(time.Now().Add(15 * time.Second))
		m, err := c.Write(part)
		h.Write(part[:m])
		n += int64(m)
		if written != nil {
			written.Store(n)
		}
		if err != nil {
			return StreamResult{Bytes: n}, fmt.Errorf("stream write after %d bytes: %w", n, err)
		}
		if cfg.Pause > 0 {
			select {
			case <-time.After(cfg.Pause):
			case <-ctx.Done():
			}
		}
	}
	var r StreamResult
	r.Bytes = n
	copy(r.Sum[:], h.Sum(nil))
	if tc, ok := c.(*net.TCPConn); ok {
		if err := tc.CloseWrite(); err != nil {
			return r, fmt.Errorf("stream half-close: %w", err)
		}
	}
	return r, nil
}
