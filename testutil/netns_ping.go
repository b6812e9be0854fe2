package testutil

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Ping sends ICMP echo requests from inside ns to dst until one is answered
// or ctx ends. It warms up neighbour entries along the path and proves
// plain reachability; the machine has no ping binary, so it is done here
// with a raw socket.
func Ping(ctx context.Context, ns *NetNS, dst netip.Addr) error {
	network, reqType, replyType := "ip4:icmp", byte(8), byte(0)
	if dst.Is6() && !dst.Is4In6() {
		network, reqType, replyType = "ip6:ipv6-icmp", 128, 129
	}
	var pc net.PacketConn
	if err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket(network, "")
		return err
	}); err != nil {
		return fmt.Errorf("ping %s from %s: open raw socket: %w", dst, ns.Name, err)
	}
	defer pc.Close()

	id := uint16(time.Now().UnixNano())
	to := &net.IPAddr{IP: dst.AsSlice()}
	buf := make([]byte, 1500)
	for seq := uint16(1); ; seq++ {
		msg := make([]byte, 16)
		msg[0] = reqType
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], seq)
		copy(msg[8:], "xvs-ping")
		if reqType == 8 { // the kernel fills in the ICMPv6 checksum itself
			binary.BigEndian.PutUint16(msg[2:], icmpChecksum(msg))
		}
		if _, err := pc.WriteTo(msg, to); err != nil {
			return fmt.Errorf("ping %s from %s: %w", dst, ns.Name, err)
		}
		deadline := time.Now().Add(300 * time.Millisecond)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = pc.SetReadDeadline(deadline)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return fmt.Errorf("ping %s from %s: %w", dst, ns.Name, err)
			}
			if n >= 8 && buf[0] == replyType &&
				binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == seq {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("ping %s from %s: no reply: %w", dst, ns.Name, ctx.Err())
		}
	}
}

// icmpChecksum is the Internet checksum (RFC 1071) of b.
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
