package testutil

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Servers are started inside a namespace (the listening socket is created
// in NetNS.Do) and then served from ordinary goroutines: a socket keeps the
// namespace it was created in. Each server stops in t.Cleanup.

// HTTPServer answers every request with a fixed body.
type HTTPServer struct {
	Addr net.Addr
	Body string
	hits atomic.Int64
	srv  *http.Server
}

// StartHTTP listens on addr (e.g. ":80" or "172.16.0.2:80") inside ns and
// answers every request with body.
func StartHTTP(t testing.TB, ns *NetNS, addr, body string) *HTTPServer {
	t.Helper()
	ln := listenTCP(t, ns, addr)
	s := &HTTPServer{Addr: ln.Addr(), Body: body}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			s.hits.Add(1)
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.srv.Close()
		<-done
	})
	return s
}

// Hits is the number of requests answered so far.
func (s *HTTPServer) Hits() int64 { return s.hits.Load() }

func listenTCP(t testing.TB, ns *NetNS, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen tcp %s in %s: %v", addr, ns.Name, err)
	}
	return ln
}

// UDPEcho answers every datagram with its identity (e.g. "node1").
type UDPEcho struct {
	Addr     net.Addr
	Identity string
	hits     atomic.Int64
}

// StartUDPEcho listens on addr inside ns and replies to each datagram with
// identity, from the address the datagram was sent to.
func StartUDPEcho(t testing.TB, ns *NetNS, addr, identity string) *UDPEcho {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns.Name, err)
	}
	s := &UDPEcho{Addr: pc.LocalAddr(), Identity: identity}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			s.hits.Add(1)
			_, _ = pc.WriteTo([]byte(identity), from)
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})
	return s
}

// Hits is the number of datagrams answered so far.
func (s *UDPEcho) Hits() int64 { return s.hits.Load() }

// SinkResult is what a TCP sink received on one connection, up to EOF.
type SinkResult struct {
	Remote net.Addr
	Bytes  int64
	Sum    [sha256.Size]byte
	Err    error // read error other than EOF, e.g. a reset
}

// TCPSink accepts connections and hashes everything each one sends.
type TCPSink struct {
	Addr    net.Addr
	results chan SinkResult
}

// StartTCPSink listens on addr inside ns.
func StartTCPSink(t testing.TB, ns *NetNS, addr string) *TCPSink {
	t.Helper()
	ln := listenTCP(t, ns, addr)
	s := &TCPSink{Addr: ln.Addr(), results: make(chan SinkResult, 16)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := sha256.New()
				n, err := io.Copy(h, c)
				r := SinkResult{Remote: c.RemoteAddr(), Bytes: n, Err: err}
				copy(r.Sum[:], h.Sum(nil))
				select {
				case s.results <- r:
				default: // nobody is waiting for that many results
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// Next waits for the next finished connection.
func (s *TCPSink) Next(ctx context.Context) (SinkResult, error) {
	select {
	case r := <-s.results:
		return r, nil
	case <-ctx.Done():
		return SinkResult{}, fmt.Errorf("wait for tcp sink result: %w", ctx.Err())
	}
}

// Dial opens a TCP connection from inside ns. A valid local address binds
// the source address (the port stays ephemeral).
func Dial(ctx context.Context, ns *NetNS, local netip.Addr, remote netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = dialer(local).DialContext(ctx, "tcp", remote.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", remote, ns.Name, err)
	}
	return c, nil
}

func dialer(local netip.Addr) *net.Dialer {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
	}
	return d
}

// NewHTTPClient returns a client whose connections are dialled inside ns
// from the local address (if valid). Every request uses a new connection,
// as separate curl invocations would, so each is scheduled anew.
func NewHTTPClient(ns *NetNS, local netip.Addr) *http.Client {
	d := dialer(local)
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Get fetches url with c and returns the body of a 200 response.
func Get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("get %s: %w", url, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("get %s: read body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("get %s: status %s", url, resp.Status)
	}
	return string(b), nil
}

// HTTPConn is one kept-alive HTTP connection: several requests go over the
// same TCP connection, so they reach the same real server.
type HTTPConn struct {
	net.Conn
	client *http.Client
	url    string
}

// DialHTTP opens a TCP connection from ns to remote and returns it ready for
// keep-alive requests.
func DialHTTP(ctx context.Context, ns *NetNS, local netip.Addr, remote netip.AddrPort) (*HTTPConn, error) {
	c, err := Dial(ctx, ns, local, remote)
	if err != nil {
		return nil, err
	}
	var used atomic.Bool
	tr := &http.Transport{
		MaxIdleConnsPerHost: 1,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			// Only this connection, ever: a second dial would mean the
			// transport dropped it, which the caller must see as an error.
			if used.Swap(true) {
				return nil, errors.New("kept-alive connection was closed")
			}
			return c, nil
		},
	}
	return &HTTPConn{Conn: c, client: &http.Client{Transport: tr, Timeout: 10 * time.Second},
		url: "http://" + remote.String() + "/"}, nil
}

// Get sends one request over the kept-alive connection.
func (h *HTTPConn) Get(ctx context.Context) (string, error) {
	return Get(ctx, h.client, h.url)
}

// UDPExchange sends payload from a fresh socket in ns and returns the first
// reply and the address it came from. The kernel may give a fresh socket
// the source port of one just closed; callers that need distinct ports
// keep their sockets open (OpenUDP, ExchangeUDP).
func UDPExchange(ctx context.Context, ns *NetNS, local netip.Addr, remote netip.AddrPort, payload []byte) ([]byte, netip.AddrPort, error) {
	pc, err := OpenUDP(ns, local, remote.Addr().Is6())
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	defer pc.Close()
	return ExchangeUDP(ctx, pc, remote, payload)
}

// OpenUDP opens an unconnected UDP socket in ns on an ephemeral port (of
// local, if valid). Being unconnected, it also sees replies from an
// unexpected source.
func OpenUDP(ns *NetNS, local netip.Addr, v6 bool) (*net.UDPConn, error) {
	var pc *net.UDPConn
	err := ns.Do(func() error {
		la := &net.UDPAddr{}
		if local.IsValid() {
			la.IP = local.AsSlice()
		}
		network := "udp4"
		if v6 {
			network = "udp6"
		}
		var err error
		pc, err = net.ListenUDP(network, la)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp socket in %s: %w", ns.Name, err)
	}
	return pc, nil
}

// ExchangeUDP sends payload on pc to remote and returns the first reply and
// its source address.
func ExchangeUDP(ctx context.Context, pc *net.UDPConn, remote netip.AddrPort, payload []byte) ([]byte, netip.AddrPort, error) {
	deadline := time.Now().Add(3 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = pc.SetDeadline(deadline)
	if _, err := pc.WriteToUDPAddrPort(payload, remote); err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("udp send to %s: %w", remote, err)
	}
	buf := make([]byte, 65536)
	n, from, err := pc.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("udp reply from %s to %s: %w", remote, pc.LocalAddr(), err)
	}
	return buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), nil
}
