package loader

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Tap is the punt device: a persistent multi-queue tap. The datapath
// redirects first packets into it; the daemon reads whole Ethernet frames
// from its queues and writes them back after installing the conn.
type Tap struct {
	name    string
	ifindex int
	mac     net.HardwareAddr
	queues  []*os.File
	closed  atomic.Bool // Close was called: reads fail with os.ErrClosed
}

const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE

// openTap creates the tap (or attaches to the one a previous run left,
// which keeps its ifindex and MAC) and opens n queues. It is persistent:
// it outlives the process, so pinned programs and xvs_tx stay valid.
//
// Each queue is opened with unix.Open, bound with TUNSETIFF, made
// non-blocking and only then wrapped in an os.File: os.OpenFile would
// register the fd with the netpoller before TUNSETIFF, and its reads
// would never wake.
func openTap(name string, n int) (_ *Tap, err error) {
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap name %q longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	t := &Tap{name: name}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	for i := range n {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open /dev/net/tun: %w", privileged(err))
		}
		if err := bindQueue(fd, name, i == 0); err != nil {
			unix.Close(fd)
			return nil, err
		}
		t.queues = append(t.queues, os.NewFile(uintptr(fd), "tap "+name))
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	t.ifindex = l.Attrs().Index
	t.mac = l.Attrs().HardwareAddr
	return t, nil
}

func bindQueue(fd int, name string, persist bool) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	ifr.SetUint16(tapFlags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		switch {
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EBUSY):
			return fmt.Errorf("tap %s: %w (a device of that name exists and is not a multi-queue tap: delete it or choose another tap name)", name, err)
		default:
			return fmt.Errorf("tap %s: TUNSETIFF: %w", name, privileged(err))
		}
	}
	if persist {
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
			return fmt.Errorf("tap %s: TUNSETPERSIST: %w", name, privileged(err))
		}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("tap %s: set non-blocking: %w", name, err)
	}
	return nil
}

// configure sets the tap's sysctls and brings it up. IPv6 is disabled on
// it before it goes up, so no autoconf or MLD frame reaches the punt
// queue. bpf_fib_lookup needs forwarding on the ingress device, the tap
// included, so net.ipv4.ip_forward is turned on (this also turns on
// forwarding on every interface, as a NAT director needs). It returns a
// warning for the log, or "".
func (t *Tap) configure() (warn string, err error) {
	sysctls := []struct {
		path, val string
		optional  bool // IPv6 may be disabled on the whole host
	}{
		{path: "net/ipv6/conf/" + t.name + "/disable_ipv6", val: "1", optional: true},
		// IPv6 fib lookups from the tap need forwarding on the tap only;
		// the host-wide IPv6 switch is the operator's (it changes RA handling).
		{path: "net/ipv6/conf/" + t.name + "/forwarding", val: "1", optional: true},
		{path: "net/ipv4/ip_forward", val: "1"},
		{path: "net/ipv4/conf/" + t.name + "/forwarding", val: "1"},
		{path: "net/ipv4/conf/" + t.name + "/rp_filter", val: "0"},
		{path: "net/ipv4/conf/" + t.name + "/accept_local", val: "1"},
	}
	for _, s := range sysctls {
		if err := writeSysctl(s.path, s.val); err != nil && !(s.optional && errors.Is(err, os.ErrNotExist)) {
			return "", fmt.Errorf("tap %s: %w", t.name, privileged(err))
		}
	}
	if err := netlink.LinkSetUp(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: t.name, Index: t.ifindex}}); err != nil {
		return "", fmt.Errorf("set tap %s up: %w", t.name, privileged(err))
	}
	// The kernel applies max(all, dev) for rp_filter: a strict "all"
	// drops the rewritten first packets it is handed back from the tap.
	if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/rp_filter"); err == nil && strings.TrimSpace(string(b)) == "1" {
		return "net.ipv4.conf.all.rp_filter=1 (strict) overrides the tap's 0: first packets whose next hop is unresolved may be dropped; consider 2 (loose)", nil
	}
	return "", nil
}

func writeSysctl(path, val string) error {
	full := filepath.Join("/proc/sys", path)
	if err := os.WriteFile(full, []byte(val), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(path, "/", "."), val, err)
	}
	return nil
}

// Ifindex is the tap's interface index (stable across restarts).
func (t *Tap) Ifindex() int { return t.ifindex }

// Name is the tap's interface name.
func (t *Tap) Name() string { return t.name }

// MAC is the tap's hardware address; point written-back frames at it
// (SetDstMAC) so that the kernel would accept one the datapath passes.
func (t *Tap) MAC() net.HardwareAddr { return t.mac }

// Queues is the number of open queues; Read and Write take 0..Queues()-1.
func (t *Tap) Queues() int { return len(t.queues) }

func (t *Tap) queue(q int) (*os.File, error) {
	if q < 0 || q >= len(t.queues) {
		return nil, fmt.Errorf("tap %s: no queue %d", t.name, q)
	}
	return t.queues[q], nil
}

// ReadBatch reads up to len(bufs) frames from queue q: it blocks in the
// Go netpoller until one is there, then takes what else the queue holds
// without waiting, so that a worker under load handles frames in batches.
// Frame i is bufs[i][:lens[i]]. It returns an error wrapping os.ErrClosed
// once the tap is closed, and os.ErrDeadlineExceeded after
// SetReadDeadline; frames read before an error are returned with it.
func (t *Tap) ReadBatch(q int, bufs [][]byte, lens []int) (int, error) {
	f, err := t.queue(q)
	if err != nil {
		return 0, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		if t.closed.Load() {
			err = os.ErrClosed
		}
		return 0, fmt.Errorf("tap %s: %w", t.name, err)
	}
	n := 0
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for n < len(bufs) && n < len(lens) {
			if len(bufs[n]) == 0 {
				rerr = errors.New("empty buffer")
				return true
			}
			// Raw, like Write: the queue is non-blocking.
			k, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&bufs[n][0])), uintptr(len(bufs[n])))
			switch {
			case errno == unix.EINTR:
				continue
			case errno == unix.EAGAIN:
				return n > 0 // wait in the netpoller only for the first
			case errno != 0:
				rerr = errno
				return true
			}
			lens[n] = int(k)
			n++
		}
		return true
	})
	switch {
	case err != nil && t.closed.Load():
		// The raw conn reports the closing file in the poller's own
		// words; say it as os.File does.
		err = fmt.Errorf("tap %s: read: %w", t.name, os.ErrClosed)
	case err == nil && rerr != nil:
		err = fmt.Errorf("tap %s: read: %w", t.name, rerr)
	}
	return n, err
}

// Write writes one whole frame into queue q; the kernel receives it on the
// tap as if it had arrived there. A tap write never blocks, and it is
// made as a raw syscall: a punt worker writes tens of thousands of frames
// a second, and the runtime's syscall bookkeeping (sysmon handing the
// worker's P to another thread while it is in the kernel) cost more CPU
// than the writes themselves.
func (t *Tap) Write(q int, frame []byte) error {
	f, err := t.queue(q)
	if err != nil {
		return err
	}
	if len(frame) == 0 {
		return fmt.Errorf("tap %s: write of an empty frame", t.name)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("tap %s: %w", t.name, err)
	}
	var n uintptr
	var errno unix.Errno
	err = rc.Write(func(fd uintptr) bool {
		n, _, errno = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&frame[0])), uintptr(len(frame)))
		return true
	})
	switch {
	case err != nil:
		return fmt.Errorf("tap %s: write: %w", t.name, err)
	case errno != 0:
		return fmt.Errorf("tap %s: write: %w", t.name, errno)
	case int(n) != len(frame):
		return fmt.Errorf("tap %s: short write %d of %d", t.name, n, len(frame))
	}
	return nil
}

// SetReadDeadline sets the read deadline of every queue.
func (t *Tap) SetReadDeadline(d time.Time) error {
	var errs []error
	for _, f := range t.queues {
		errs = append(errs, f.SetReadDeadline(d))
	}
	return errors.Join(errs...)
}

// Close closes the queues, which wakes blocked readers. The device stays
// (it is persistent); Down deletes it.
func (t *Tap) Close() error {
	t.closed.Store(true)
	var errs []error
	for _, f := range t.queues {
		if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteTap deletes the persistent tap, if it exists and is a tap.
func deleteTap(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("tap %s: %w", name, privileged(err))
	}
	if l.Type() != "tuntap" {
		return fmt.Errorf("%s is a %s device, not the punt tap: not deleting it", name, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("delete tap %s: %w", name, privileged(err))
	}
	return nil
}
