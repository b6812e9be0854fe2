package connsync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of the kernel's sync daemons (reference 1.3, 8.1).
const (
	DefaultInterface = "eth0" // ipvsadm's --mcast-interface default
	DefaultPort      = 8848
	DefaultTTL       = 1
)

// DefaultGroup is the kernel's multicast group, 224.0.0.81.
func DefaultGroup() netip.Addr { return netip.AddrFrom4([4]byte{224, 0, 0, 81}) }

// Role is the daemon state of --start-daemon.
type Role uint8

// Roles.
const (
	RoleMaster Role = iota + 1
	RoleBackup
)

func (r Role) String() string {
	switch r {
	case RoleMaster:
		return "master"
	case RoleBackup:
		return "backup"
	}
	return "unknown"
}

// ParseRole parses "master" or "backup".
func ParseRole(s string) (Role, error) {
	switch s {
	case "master":
		return RoleMaster, nil
	case "backup":
		return RoleBackup, nil
	}
	return 0, fmt.Errorf("parse daemon state %q: want master or backup", s)
}

// Options are a sync daemon's settings, ipvsadm's --start-daemon options.
// Zero fields mean "the kernel's default"; Resolve fills them.
type Options struct {
	Interface string     // --mcast-interface, default eth0
	SyncID    uint8      // --syncid, default 0
	MaxLen    int        // --sync-maxlen, default from the MTU (DefaultMaxLen)
	Group     netip.Addr // --mcast-group, default 224.0.0.81
	Port      uint16     // --mcast-port, default 8848
	TTL       uint8      // --mcast-ttl, default 1
}

// udpIPHeaders is the IP+UDP header length for a group's family.
func udpIPHeaders(group netip.Addr) int {
	if group.Is6() && !group.Is4In6() {
		return 40 + 8
	}
	return 20 + 8
}

// DefaultMaxLen is the kernel's sync_maxlen when none is configured: a
// master assumes an MTU of 1500 (1472 for an IPv4 group, 1452 for IPv6), a
// backup uses its interface's MTU clamped to [1500, 65535].
func DefaultMaxLen(role Role, mtu int, group netip.Addr) int {
	if role == RoleBackup {
		return min(max(mtu, 1500), 65535) - udpIPHeaders(group)
	}
	return 1500 - udpIPHeaders(group)
}

// Resolve fills o's defaults for role as start_sync_thread does, given the
// interface's MTU: group, port, TTL, interface name, and MaxLen either
// DefaultMaxLen or the configured value clamped to [1 (master) | 1024
// (backup), 65535 - IP/UDP headers].
func (o Options) Resolve(role Role, mtu int) Options {
	if o.Interface == "" {
		o.Interface = DefaultInterface
	}
	if !o.Group.IsValid() {
		o.Group = DefaultGroup()
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	hi := 65535 - udpIPHeaders(o.Group)
	lo := 1
	if role == RoleBackup {
		lo = 1024
	}
	if o.MaxLen != 0 {
		o.MaxLen = min(max(o.MaxLen, lo), hi)
	} else {
		o.MaxLen = DefaultMaxLen(role, mtu, o.Group)
	}
	return o
}

// FormatDaemon is one line of `ipvsadm -L --daemon` (ipvsadm.c
// list_daemon) for a daemon in state ("master" or "backup") running with
// resolved options o, without the trailing newline:
//
//	master sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)
//
// maxlen, group, port and ttl are printed only when set, as ipvsadm does.
func FormatDaemon(state string, o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s sync daemon (mcast=%s, syncid=%d", state, o.Interface, o.SyncID)
	if o.MaxLen != 0 {
		fmt.Fprintf(&b, ", maxlen=%d", o.MaxLen)
	}
	if o.Group.IsValid() {
		fmt.Fprintf(&b, ", group=%s", o.Group)
	}
	if o.Port != 0 {
		fmt.Fprintf(&b, ", port=%d", o.Port)
	}
	if o.TTL != 0 {
		fmt.Fprintf(&b, ", ttl=%d", o.TTL)
	}
	b.WriteString(")")
	return b.String()
}

// Sender is a master's socket: UDP, bound to the interface's primary IPv4
// address (IPv4 groups; unbound when the interface has none), connected to group:port, multicast out of the
// interface with the configured TTL, no loopback, no PMTU discovery (large
// messages may fragment), as make_send_sock sets up the kernel's.
type Sender struct {
	conn *net.UDPConn
	opts Options
}

// NewSender opens a master's socket. It must run in the network namespace
// the socket belongs to; the Sender may then be used from any goroutine.
func NewSender(o Options) (*Sender, error) {
	ifi, err := net.InterfaceByName(nameOrDefault(o.Interface))
	if err != nil {
		return nil, fmt.Errorf("sync master: %w", err)
	}
	o = o.Resolve(RoleMaster, ifi.MTU)
	if !o.Group.IsMulticast() {
		return nil, fmt.Errorf("sync master: group %s is not multicast", o.Group)
	}
	v6 := o.Group.Is6() && !o.Group.Is4In6()
	fd, err := socket(v6)
	if err != nil {
		return nil, fmt.Errorf("sync master: %w", err)
	}
	if err := setupSend(fd, ifi, o, v6); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sync master on %s: %w", o.Interface, err)
	}
	c, err := udpConn(fd, "sync-master")
	if err != nil {
		return nil, fmt.Errorf("sync master: %w", err)
	}
	return &Sender{conn: c, opts: o}, nil
}

func setupSend(fd int, ifi *net.Interface, o Options, v6 bool) error {
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifi.Index); err != nil {
			return fmt.Errorf("set IPV6_MULTICAST_IF: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0); err != nil {
			return fmt.Errorf("set IPV6_MULTICAST_LOOP: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, int(o.TTL)); err != nil {
			return fmt.Errorf("set IPV6_MULTICAST_HOPS: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DONT); err != nil {
			return fmt.Errorf("set IPV6_MTU_DISCOVER: %w", err)
		}
		sa := &unix.SockaddrInet6{Port: int(o.Port), Addr: o.Group.As16()}
		if o.Group.IsLinkLocalMulticast() || o.Group.IsInterfaceLocalMulticast() {
			sa.ZoneId = uint32(ifi.Index)
		}
		if err := unix.Connect(fd, sa); err != nil {
			return fmt.Errorf("connect to [%s]:%d: %w", o.Group, o.Port, err)
		}
		return nil
	}
	mreq := &unix.IPMreqn{Ifindex: int32(ifi.Index)}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, mreq); err != nil {
		return fmt.Errorf("set IP_MULTICAST_IF: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 0); err != nil {
		return fmt.Errorf("set IP_MULTICAST_LOOP: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, int(o.TTL)); err != nil {
		return fmt.Errorf("set IP_MULTICAST_TTL: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); err != nil {
		return fmt.Errorf("set IP_MTU_DISCOVER: %w", err)
	}
	src, err := primaryIPv4(ifi)
	if err != nil {
		return err
	}
	// Without an address the kernel logs and binds to 0.0.0.0, leaving the
	// source to routing; do the same rather than refuse to start.
	if src.IsValid() {
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(o.Port), Addr: o.Group.Unmap().As4()}); err != nil {
		return fmt.Errorf("connect to %s:%d: %w", o.Group, o.Port, err)
	}
	return nil
}

// primaryIPv4 is the interface's first global IPv4 address, the one the
// kernel's inet_select_addr(dev, 0, RT_SCOPE_UNIVERSE) picks for the
// master; invalid when there is none.
func primaryIPv4(ifi *net.Interface) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ip, ok := netip.AddrFromSlice(n.IP)
			if ip = ip.Unmap(); ok && ip.Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, nil
}

// Options returns the resolved options the Sender runs with.
func (s *Sender) Options() Options { return s.opts }

// LocalAddr is the address the socket sends from (unspecified when the
// interface had no IPv4 address, or for IPv6 groups: chosen per message).
func (s *Sender) LocalAddr() netip.AddrPort {
	if a, ok := s.conn.LocalAddr().(*net.UDPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// Send sends one message.
func (s *Sender) Send(msg []byte) error {
	if _, err := s.conn.Write(msg); err != nil {
		return fmt.Errorf("send sync message: %w", err)
	}
	return nil
}

// Close closes the socket.
func (s *Sender) Close() error { return s.conn.Close() }

// ReceiverStats are a Receiver's counters.
type ReceiverStats struct {
	Datagrams uint64            // datagrams accepted
	Conns     uint64            // conns delivered
	Skipped   uint64            // records skipped inside accepted datagrams
	Dropped   map[string]uint64 // datagrams rejected, by Reason
}

// Reason names the rejection reason wrapped by a DecodeMessage error, for
// counters and metrics labels.
func Reason(err error) string {
	for _, r := range []struct {
		err  error
		name string
	}{
		{ErrShort, "short"}, {ErrSize, "size"}, {ErrSyncID, "syncid"},
		{ErrRecord, "record"}, {ErrOption, "option"}, {ErrProto, "proto"},
		{ErrState, "state"},
	} {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}

// Receiver is a backup's socket: bound to group:port on the interface
// (address reuse allowed), member of the group there, as make_receive_sock
// sets up the kernel's.
type Receiver struct {
	conn *net.UDPConn
	opts Options

	mu    sync.Mutex
	stats ReceiverStats
}

// NewReceiver opens a backup's socket and joins the group. It must run in
// the network namespace the socket belongs to; the Receiver may then be
// used from any goroutine.
func NewReceiver(o Options) (*Receiver, error) {
	ifi, err := net.InterfaceByName(nameOrDefault(o.Interface))
	if err != nil {
		return nil, fmt.Errorf("sync backup: %w", err)
	}
	o = o.Resolve(RoleBackup, ifi.MTU)
	if !o.Group.IsMulticast() {
		return nil, fmt.Errorf("sync backup: group %s is not multicast", o.Group)
	}
	v6 := o.Group.Is6() && !o.Group.Is4In6()
	fd, err := socket(v6)
	if err != nil {
		return nil, fmt.Errorf("sync backup: %w", err)
	}
	if err := setupReceive(fd, ifi, o, v6); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sync backup on %s: %w", o.Interface, err)
	}
	c, err := udpConn(fd, "sync-backup")
	if err != nil {
		return nil, fmt.Errorf("sync backup: %w", err)
	}
	return &Receiver{conn: c, opts: o, stats: ReceiverStats{Dropped: map[string]uint64{}}}, nil
}

func setupReceive(fd int, ifi *net.Interface, o Options, v6 bool) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("set SO_REUSEADDR: %w", err)
	}
	if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name); err != nil {
		return fmt.Errorf("set SO_BINDTODEVICE: %w", err)
	}
	if v6 {
		sa := &unix.SockaddrInet6{Port: int(o.Port), Addr: o.Group.As16()}
		if o.Group.IsLinkLocalMulticast() || o.Group.IsInterfaceLocalMulticast() {
			sa.ZoneId = uint32(ifi.Index)
		}
		if err := unix.Bind(fd, sa); err != nil {
			return fmt.Errorf("bind [%s]:%d: %w", o.Group, o.Port, err)
		}
		mreq := &unix.IPv6Mreq{Multiaddr: o.Group.As16(), Interface: uint32(ifi.Index)}
		if err := unix.SetsockoptIPv6Mreq(fd, unix.IPPROTO_IPV6, unix.IPV6_JOIN_GROUP, mreq); err != nil {
			return fmt.Errorf("join %s: %w", o.Group, err)
		}
		return nil
	}
	g := o.Group.Unmap().As4()
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(o.Port), Addr: g}); err != nil {
		return fmt.Errorf("bind %s:%d: %w", o.Group, o.Port, err)
	}
	mreq := &unix.IPMreqn{Multiaddr: g, Ifindex: int32(ifi.Index)}
	if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
		return fmt.Errorf("join %s: %w", o.Group, err)
	}
	return nil
}

// Options returns the resolved options the Receiver runs with.
func (r *Receiver) Options() Options { return r.opts }

// Run reads datagrams until ctx is done, decodes each with the Receiver's
// syncid and hands its conns to deliver (one call per accepted datagram,
// never with part of a rejected one). Rejections are counted by Reason.
// deliver runs on Run's goroutine. Run returns ctx.Err(), or the socket's
// error if reading fails otherwise.
func (r *Receiver) Run(ctx context.Context, deliver func([]Conn)) error {
	stop := context.AfterFunc(ctx, func() { _ = r.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 65536)
	for {
		n, err := r.conn.Read(buf)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("receive sync message: %w", err)
		}
		m, err := DecodeMessage(buf[:n], r.opts.SyncID)
		r.mu.Lock()
		if err != nil {
			r.stats.Dropped[Reason(err)]++
		} else {
			r.stats.Datagrams++
			r.stats.Conns += uint64(len(m.Conns))
			r.stats.Skipped += uint64(len(m.Skipped))
		}
		r.mu.Unlock()
		if err == nil && len(m.Conns) > 0 {
			deliver(m.Conns)
		}
	}
}

// Stats returns a copy of the counters.
func (r *Receiver) Stats() ReceiverStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Dropped = make(map[string]uint64, len(r.stats.Dropped))
	for k, v := range r.stats.Dropped {
		s.Dropped[k] = v
	}
	return s
}

// Close closes the socket, leaving the group.
func (r *Receiver) Close() error { return r.conn.Close() }

func nameOrDefault(ifname string) string {
	if ifname == "" {
		return DefaultInterface
	}
	return ifname
}

func socket(v6 bool) (int, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("udp socket: %w", err)
	}
	return fd, nil
}

// udpConn hands a configured non-blocking fd to the runtime's poller.
func udpConn(fd int, name string) (*net.UDPConn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close() // net.FileConn holds its own duplicate
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("wrap socket: %w", err)
	}
	uc, ok := c.(*net.UDPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("wrap socket: got %T", c)
	}
	return uc, nil
}
