// Package routewatch tells the datapath when the next hops it caches may
// be wrong. It listens to the kernel's routing notifications (links,
// addresses, routes, rules, nexthops, neighbours) in one network
// namespace and reports each one it reads, and every overflow of its
// socket (notifications lost), as a change.
package routewatch

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// groups are the rtnetlink multicast groups whose messages can change the
// result of a route lookup or of the neighbour behind it.
var groups = []int{
	unix.RTNLGRP_LINK,
	unix.RTNLGRP_NEIGH,
	unix.RTNLGRP_IPV4_IFADDR,
	unix.RTNLGRP_IPV4_ROUTE,
	unix.RTNLGRP_IPV4_RULE,
	unix.RTNLGRP_IPV6_IFADDR,
	unix.RTNLGRP_IPV6_ROUTE,
	unix.RTNLGRP_IPV6_RULE,
	unix.RTNLGRP_NEXTHOP,
}

// Watcher is an rtnetlink socket subscribed to groups.
type Watcher struct {
	f *os.File
}

// Open subscribes in the calling thread's network namespace.
func Open() (*Watcher, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("routing notifications: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("routing notifications: bind: %w", err)
	}
	for _, g := range groups {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("routing notifications: join group %d: %w", g, err)
		}
	}
	// A non-blocking descriptor goes to Go's poller: Close wakes Run.
	return &Watcher{f: os.NewFile(uintptr(fd), "rtnetlink")}, nil
}

// Run calls changed for every notification datagram read and for every
// overflow, until ctx ends (nil) or reading or changed fails.
func (w *Watcher) Run(ctx context.Context, changed func() error) error {
	stop := context.AfterFunc(ctx, func() { w.f.Close() })
	defer stop()
	buf := make([]byte, 1<<16)
	for {
		_, err := w.f.Read(buf)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			// Notifications were lost: something changed.
		case err != nil:
			return fmt.Errorf("routing notifications: %w", err)
		}
		if err := changed(); err != nil {
			return err
		}
	}
}

// Close releases the socket (Run's end closes it too).
func (w *Watcher) Close() error {
	if err := w.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
