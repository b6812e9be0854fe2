package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"xvs/testutil"
)

// PacedSender sends UDP frames that each start a new flow through an
// AF_PACKET socket on the generator's interface, one write per frame, at a
// set rate. Live-frame runs cost about a millisecond of set-up per call and
// send in bursts that overflow a veth ring, so they cannot hold a moderate
// rate; a socket can.
type PacedSender struct {
	ns       *testutil.NetNS
	ifindex  int
	template []byte
	next     uint32 // next flow number
	sent     uint64
}

// NewPacedSender prepares frames from the generator to dst, with source
// addresses in 198.18.128.0/17 and ports 1024-33791, starting at flow base.
func NewPacedSender(tp *Topo, dst netip.AddrPort, base uint32) *PacedSender {
	return &PacedSender{
		ns:       tp.Gen,
		ifindex:  tp.GenIdx,
		template: udpFrame(tp.GenMAC, tp.ExtMAC, tp.Addrs.Gen, dst),
		next:     base,
	}
}

// Sent is the number of frames written so far.
func (s *PacedSender) Sent() uint64 { return s.sent }

// Run sends at pps frames per second for d (or until ctx ends) from a
// thread pinned to cpu and returns the time it took.
func (s *PacedSender) Run(ctx context.Context, cpu int, pps float64, d time.Duration) (time.Duration, error) {
	start := time.Now()
	err := s.ns.Do(func() error {
		restore, err := pinCPU(cpu)
		if err != nil {
			return err
		}
		defer restore()
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: s.ifindex}); err != nil {
			return fmt.Errorf("bind packet socket: %w", err)
		}
		f := append([]byte(nil), s.template...)
		ip := f[14:34]
		var n uint64
		for ctx.Err() == nil {
			el := time.Since(start)
			if el >= d {
				return nil
			}
			if float64(n) >= pps*el.Seconds() {
				time.Sleep(20 * time.Microsecond)
				continue
			}
			flow := s.next
			s.next++
			binary.BigEndian.PutUint16(f[34:], uint16(1024+flow&0x7fff))
			binary.BigEndian.PutUint16(ip[14:], uint16(0x8000|(flow>>15)&0x7fff))
			binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
			if _, err := unix.Write(fd, f); err != nil {
				if err == unix.ENOBUFS || err == unix.EAGAIN {
					continue
				}
				return fmt.Errorf("send frame: %w", err)
			}
			n++
			s.sent++
		}
		return nil
	})
	return time.Since(start), err
}
