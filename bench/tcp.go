package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"xvs/testutil"
)

// ConnRateResult is one repetition of the new-connection rate.
type ConnRateResult struct {
	Duration time.Duration
	OK       int
	Errors   int
	FirstErr string // the first error, to tell timeouts from resets
	P50, P99 time.Duration
	// ConnectP50 is the median time to connect (SYN to SYN-ACK at the
	// client): the part of the latency the first-packet path adds to.
	ConnectP50 time.Duration
}

// PerSec is the rate of completed requests (one connection each).
func (r ConnRateResult) PerSec() float64 { return rate(uint64(r.OK), r.Duration) }

var httpReq = []byte("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")

// ConnRate runs workers clients in the generator namespace for d: each
// opens a connection to a target, sends one `Connection: close` request,
// reads the response to EOF, and starts over. Latency is connect to EOF.
// Client i binds source address i mod len(clients) and talks to target
// i mod len(targets). The kernel picks the source port at connect time
// (IP_BIND_ADDRESS_NO_PORT), from the range it keeps per destination, so
// that a port comes back only after the range is used up: the servers
// close first and hold TIME_WAIT for each 4-tuple.
func ConnRate(ctx context.Context, ns *testutil.NetNS, clients []netip.Addr, targets []netip.AddrPort, workers int, d time.Duration) (ConnRateResult, error) {
	type res struct {
		lat   []time.Duration
		conn  []time.Duration
		errs  int
		first error
		err   error
	}
	results := make([]res, workers)
	var wg sync.WaitGroup
	start := time.Now()
	// The run ends at a time, not with a context: a dial whose deadline
	// came from the context can fail before the context reports done,
	// and the next dial would then fail at once, over and over. Requests
	// that end after the end are not counted either way.
	end := start.Add(d)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			// The whole loop runs on a thread inside the namespace, so
			// each dial needs no namespace switch.
			r.err = ns.Do(func() error {
				dl := net.Dialer{
					Timeout:   2 * time.Second,
					LocalAddr: &net.TCPAddr{IP: clients[i%len(clients)].AsSlice()},
					Control: func(_, _ string, c syscall.RawConn) error {
						var serr error
						err := c.Control(func(fd uintptr) {
							serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
						})
						return errors.Join(err, serr)
					},
				}
				target := targets[i%len(targets)]
				buf := make([]byte, 4096)
				for ctx.Err() == nil && time.Now().Before(end) {
					t0 := time.Now()
					dial, err := oneRequest(ctx, &dl, target, buf)
					if time.Now().After(end) {
						break
					}
					if err != nil {
						r.errs++
						if r.first == nil {
							r.first = err
						}
						continue
					}
					r.lat = append(r.lat, time.Since(t0))
					r.conn = append(r.conn, dial)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	out := ConnRateResult{Duration: d}
	var all, conn []time.Duration
	for _, r := range results {
		if r.err != nil {
			return out, r.err
		}
		all = append(all, r.lat...)
		conn = append(conn, r.conn...)
		out.Errors += r.errs
		if r.first != nil && out.FirstErr == "" {
			out.FirstErr = r.first.Error()
		}
	}
	out.OK = len(all)
	if len(all) == 0 {
		return out, fmt.Errorf("no request to %v completed (%d errors)", targets, out.Errors)
	}
	slices.Sort(all)
	out.P50 = all[len(all)*50/100]
	out.P99 = all[len(all)*99/100]
	slices.Sort(conn)
	out.ConnectP50 = conn[len(conn)*50/100]
	return out, nil
}

// oneRequest makes one request on a new connection and returns how long
// the connect took.
func oneRequest(ctx context.Context, dl *net.Dialer, target netip.AddrPort, buf []byte) (time.Duration, error) {
	t0 := time.Now()
	c, err := dl.DialContext(ctx, "tcp", target.String())
	dial := time.Since(t0)
	if err != nil {
		return dial, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(httpReq); err != nil {
		return dial, err
	}
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return dial, err
		}
		if n == len(buf) {
			n = 0
		}
	}
	if n < 12 || !bytes.HasPrefix(buf, []byte("HTTP/1.1 200")) {
		return dial, fmt.Errorf("bad response from %s", target)
	}
	return dial, nil
}

// IperfResult is one iperf3 run.
type IperfResult struct {
	BitsPerSec  float64
	Retransmits int
}

// Iperf runs `iperf3 -c target` from the generator namespace for d and
// returns the receiver's throughput.
func Iperf(ctx context.Context, ns *testutil.NetNS, target netip.AddrPort, d time.Duration) (IperfResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+15*time.Second)
	defer cancel()
	secs := fmt.Sprintf("%d", int(d.Seconds()))
	out, err := ns.Exec(ctx, "iperf3", "-c", target.Addr().String(), "-p", fmt.Sprint(target.Port()),
		"-t", secs, "-J", "--connect-timeout", "3000").Output()
	if err != nil {
		return IperfResult{}, fmt.Errorf("iperf3 -c %s: %w: %s", target, err, tail(out))
	}
	return parseIperf(out)
}

func parseIperf(out []byte) (IperfResult, error) {
	var v struct {
		End struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		return IperfResult{}, fmt.Errorf("iperf3 json: %w", err)
	}
	if v.Error != "" {
		return IperfResult{}, fmt.Errorf("iperf3: %s", v.Error)
	}
	if v.End.SumReceived.BitsPerSecond == 0 {
		return IperfResult{}, errors.New("iperf3: nothing received")
	}
	return IperfResult{BitsPerSec: v.End.SumReceived.BitsPerSecond, Retransmits: v.End.SumSent.Retransmits}, nil
}

func tail(b []byte) string {
	if len(b) > 400 {
		b = b[len(b)-400:]
	}
	return string(b)
}

// IperfServer runs `iperf3 -s` on the first real server's address until
// Stop.
type IperfServer struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StartIperfServer starts the server in ns, bound to addr, and waits until
// it listens.
func StartIperfServer(ns *testutil.NetNS, addr netip.AddrPort) (*IperfServer, error) {
	cmd := ns.Exec(context.Background(), "iperf3", "-s", "-B", addr.Addr().String(), "-p", fmt.Sprint(addr.Port()))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start iperf3 -s: %w", err)
	}
	s := &IperfServer{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		out, err := ns.Run("ss", "-Hltn", fmt.Sprintf("sport = :%d", addr.Port()))
		if err == nil && len(bytes.TrimSpace([]byte(out))) > 0 {
			return s, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Stop()
	return nil, errors.New("iperf3 -s not listening after 5s")
}

// Stop kills the server and waits for it.
func (s *IperfServer) Stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}
