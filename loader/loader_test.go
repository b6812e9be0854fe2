package loader

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"xvs/bpf"
	"xvs/testutil"
)

// Topology of every test, inside a network namespace of its own:
//
//	v0 <-veth-> v1     b0 (bridge)     xvst0 (the punt tap Load makes)
//
// Pins go to a bpffs mounted in a temporary directory.

// testNS is a fresh network namespace; do runs code inside it.
type testNS struct {
	name string
	h    netns.NsHandle
}

func newTestNS(t *testing.T) *testNS {
	t.Helper()
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	name := "xvst-" + hex.EncodeToString(rnd[:]) + "-ld"
	errc := make(chan error, 1)
	var h netns.NsHandle
	go func() {
		// NewNamed moves this thread into the namespace; the thread is
		// never unlocked, so it dies with the goroutine.
		runtime.LockOSThread()
		var err error
		h, err = netns.NewNamed(name)
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	ns := &testNS{name: name, h: h}
	t.Cleanup(func() {
		ns.h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return ns
}

// do runs fn on a locked OS thread inside the namespace. If the thread
// cannot be moved back, it is left locked so that it dies with its
// goroutine instead of running other code in the wrong namespace.
func (ns *testNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns.h); err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// mustDo is do for the test goroutine.
func (ns *testNS) mustDo(t *testing.T, fn func() error) {
	t.Helper()
	if err := ns.do(fn); err != nil {
		t.Fatal(err)
	}
}

// newBPFFS mounts a bpffs in a temporary directory, unmounted at cleanup.
func newBPFFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs: %v", err)
		}
	})
	return dir
}

// topology sets up the netns, its links and a bpffs, and registers Down
// so that nothing is left even when the test fails.
func topology(t *testing.T) (*testNS, string) {
	t.Helper()
	testutil.NeedRoot(t)
	ns := newTestNS(t)
	dir := filepath.Join(newBPFFS(t), "xvs")
	ns.mustDo(t, func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v0"}, PeerName: "v1"}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		// A bridge stands for "another virtual device without native
		// XDP": this kernel has no dummy driver.
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "b0"}}); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		for _, n := range []string{"v0", "v1", "b0"} {
			if err := netlink.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: n}}); err != nil {
				return fmt.Errorf("up %s: %w", n, err)
			}
		}
		return nil
	})
	t.Cleanup(func() {
		if err := ns.do(func() error { return Down(dir, testTap) }); err != nil {
			t.Errorf("cleanup Down: %v", err)
		}
	})
	return ns, dir
}

const testTap = "xvst0"

func opts(t *testing.T, dir string, mode Mode, ifaces ...string) Options {
	return Options{
		Dir: dir, ConnMax: 1024, Ifaces: ifaces, Mode: mode, TapName: testTap, TapQueues: 2,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

func load(ns *testNS, o Options) (*Datapath, error) {
	var d *Datapath
	err := ns.do(func() error {
		var err error
		d, err = Load(o)
		return err
	})
	return d, err
}

func mustLoad(t *testing.T, ns *testNS, o Options) *Datapath {
	t.Helper()
	d, err := load(ns, o)
	if err != nil {
		t.Fatalf("Load(%+v): %v", o, err)
	}
	return d
}

// progState is what is attached to one interface, seen from the kernel.
type progState struct {
	xdpMode uint32 // netlink XDP_ATTACHED_*: 0 none, 1 drv, 2 skb
	xdpProg uint32
	tcx     []ebpf.ProgramID
}

func attached(t *testing.T, ns *testNS, ifname string) progState {
	t.Helper()
	var s progState
	ns.mustDo(t, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			s.xdpMode, s.xdpProg = x.AttachMode, x.ProgId
		}
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		for _, p := range res.Programs {
			s.tcx = append(s.tcx, p.ID)
		}
		return nil
	})
	return s
}

func progID(t *testing.T, p *ebpf.Program) ebpf.ProgramID {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

func wantModes(t *testing.T, d *Datapath, want map[string]Mode) {
	t.Helper()
	if len(d.Attached) != len(want) {
		t.Fatalf("attached %+v, want modes %v", d.Attached, want)
	}
	for _, a := range d.Attached {
		if a.Mode != want[a.Iface] {
			t.Errorf("%s got %s (%s), want %s", a.Iface, a.Mode, a.Reason, want[a.Iface])
		}
		if a.Reason == "" {
			t.Errorf("%s: no reason", a.Iface)
		}
	}
}

func txKeys(t *testing.T, d *Datapath) map[uint32]bool {
	t.Helper()
	out := map[uint32]bool{}
	var k, v uint32
	it := d.Objs.XvsTx.Iterate()
	for it.Next(&k, &v) {
		if k != v {
			t.Errorf("xvs_tx[%d] = %d", k, v)
		}
		out[k] = true
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantTx(t *testing.T, d *Datapath) {
	t.Helper()
	got := txKeys(t, d)
	if len(got) != len(d.Attached) {
		t.Errorf("xvs_tx %v, attached %+v", got, d.Attached)
	}
	for _, a := range d.Attached {
		if !got[uint32(a.Ifindex)] {
			t.Errorf("xvs_tx lacks %s (%d)", a.Iface, a.Ifindex)
		}
	}
}

func TestLoadTCAdoptDown(t *testing.T) {
	ns, dir := topology(t)
	d := mustLoad(t, ns, opts(t, dir, ModeTC, "v0", "b0"))
	wantModes(t, d, map[string]Mode{"v0": ModeTC, "b0": ModeTC, testTap: ModeTC})
	if d.Adopted {
		t.Error("first Load says Adopted")
	}
	wantTx(t, d)
	for _, name := range []string{"xvs_conns", "xvs_rconns", "xvs_dests", "xvs_cfg", "xvs_tx",
		linkPinName(ModeTC, "v0"), linkPinName(ModeTC, "b0"), linkPinName(ModeTC, testTap)} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("pin %s: %v", name, err)
		}
	}
	tcID := progID(t, d.Objs.XvsTc)
	if s := attached(t, ns, "v0"); len(s.tcx) != 1 || s.tcx[0] != tcID || s.xdpMode != 0 {
		t.Errorf("v0 after Load: %+v, want tcx program %d only", s, tcID)
	}
	if d.Objs.XvsConns.MaxEntries() != 1024 || d.Objs.XvsRconns.MaxEntries() != 1024 {
		t.Errorf("conn maps sized %d/%d, want 1024", d.Objs.XvsConns.MaxEntries(), d.Objs.XvsRconns.MaxEntries())
	}

	// The tap: persistent, up, IPv6 off, queues open.
	tapIndex, tapMAC := d.Tap.Ifindex(), d.Tap.MAC()
	if d.Tap.Queues() != 2 || len(tapMAC) != 6 || tapIndex <= 0 {
		t.Errorf("tap: queues %d mac %v ifindex %d", d.Tap.Queues(), tapMAC, tapIndex)
	}
	ns.mustDo(t, func() error {
		l, err := netlink.LinkByName(testTap)
		if err != nil {
			return err
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			t.Error("tap is not up")
		}
		for path, want := range map[string]string{
			"net/ipv6/conf/" + testTap + "/disable_ipv6": "1",
			"net/ipv4/conf/" + testTap + "/forwarding":   "1",
			"net/ipv4/conf/" + testTap + "/rp_filter":    "0",
			"net/ipv4/conf/" + testTap + "/accept_local": "1",
			"net/ipv4/ip_forward":                        "1",
		} {
			b, err := os.ReadFile("/proc/sys/" + path)
			if err != nil {
				return err
			}
			if got := strings.TrimSpace(string(b)); got != want {
				t.Errorf("sysctl %s = %s, want %s", path, got, want)
			}
		}
		return nil
	})

	// A conn the next run must find.
	key := bpf.XvsConnKey{Proto: 6, Family: 2, Sport: 1, Dport: 2}
	key.Saddr[0], key.Daddr[0] = 10, 20
	if err := d.Objs.XvsConns.Put(&key, &bpf.XvsConn{DestId: 42}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if s := attached(t, ns, "v0"); len(s.tcx) != 1 || s.tcx[0] != tcID {
		t.Errorf("v0 after Close: %+v, want program %d still attached", s, tcID)
	}

	d2 := mustLoad(t, ns, opts(t, dir, ModeTC, "v0", "b0"))
	defer d2.Close()
	if !d2.Adopted {
		t.Error("second Load did not adopt")
	}
	for _, a := range d2.Attached {
		if !a.Adopted {
			t.Errorf("%s: link not adopted", a.Iface)
		}
	}
	var got bpf.XvsConn
	if err := d2.Objs.XvsConns.Lookup(&key, &got); err != nil || got.DestId != 42 {
		t.Errorf("conn after adopt: %+v, %v", got, err)
	}
	// The pinned link now runs the new program: still exactly one.
	newID := progID(t, d2.Objs.XvsTc)
	if s := attached(t, ns, "v0"); len(s.tcx) != 1 || s.tcx[0] != newID {
		t.Errorf("v0 after adopt: %+v, want program %d only", s, newID)
	}
	if d2.Tap.Ifindex() != tapIndex || d2.Tap.MAC().String() != tapMAC.String() {
		t.Errorf("tap changed across restart: %d %v -> %d %v", tapIndex, tapMAC, d2.Tap.Ifindex(), d2.Tap.MAC())
	}
	wantTx(t, d2)

	// A different --conn-max or --half-open-max cannot reuse the pinned
	// conns; the error names the flag and the size to start with.
	for _, c := range []struct {
		set  func(*Options)
		want []string
	}{
		{func(o *Options) { o.ConnMax = 2048 }, []string{"xvs_conns", "--conn-max 1024"}},
		{func(o *Options) { o.HalfOpenMax = 4096 }, []string{"xvs_conns_new", "--half-open-max 256"}},
	} {
		o := opts(t, dir, ModeTC, "v0", "b0")
		c.set(&o)
		_, err := load(ns, o)
		t.Logf("size mismatch: %v", err)
		if err == nil || !strings.Contains(err.Error(), c.want[0]) ||
			!strings.Contains(err.Error(), c.want[1]) || !errors.Is(err, ebpf.ErrMapIncompatible) {
			t.Errorf("Load with another size: %v, want %v", err, c.want)
		}
	}

	d2.Close()
	ns.mustDo(t, func() error { return Down(dir, testTap) })
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir after Down: %v", err)
	}
	for _, ifname := range []string{"v0", "b0"} {
		if s := attached(t, ns, ifname); len(s.tcx) != 0 || s.xdpMode != 0 {
			t.Errorf("%s after Down: %+v", ifname, s)
		}
	}
	ns.mustDo(t, func() error {
		if _, err := netlink.LinkByName(testTap); err == nil {
			t.Error("tap still there after Down")
		}
		if _, err := netlink.LinkByName("v0"); err != nil {
			t.Errorf("v0 gone after Down: %v", err)
		}
		// Down of what is gone is fine.
		return Down(dir, testTap)
	})
}

func TestLoadXDPModes(t *testing.T) {
	ns, dir := topology(t)

	d := mustLoad(t, ns, opts(t, dir, ModeXDPGeneric, "v0", "b0"))
	// Every interface runs XDP, so the tap gets native XDP.
	wantModes(t, d, map[string]Mode{"v0": ModeXDPGeneric, "b0": ModeXDPGeneric, testTap: ModeXDP})
	xdpID := progID(t, d.Objs.XvsXdp)
	if s := attached(t, ns, "v0"); s.xdpMode != 2 || s.xdpProg != uint32(xdpID) || len(s.tcx) != 0 {
		t.Errorf("v0: %+v, want generic xdp %d", s, xdpID)
	}
	if s := attached(t, ns, testTap); s.xdpMode != 1 || s.xdpProg != uint32(xdpID) {
		t.Errorf("tap: %+v, want native xdp %d", s, xdpID)
	}
	wantTx(t, d)
	d.Close()

	// Switch to tc on restart: no XDP left, tc attached, old pins gone.
	d = mustLoad(t, ns, opts(t, dir, ModeTC, "v0", "b0"))
	wantModes(t, d, map[string]Mode{"v0": ModeTC, "b0": ModeTC, testTap: ModeTC})
	for _, ifname := range []string{"v0", "b0", testTap} {
		if s := attached(t, ns, ifname); s.xdpMode != 0 || len(s.tcx) != 1 {
			t.Errorf("%s after switch to tc: %+v", ifname, s)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, linkPinName(ModeXDPGeneric, "v0"))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old xdpgeneric pin: %v", err)
	}
	d.Close()

	// Native XDP: veth has it, so v0 and the tap run xdp; b0 is dropped
	// from the list and detached.
	d = mustLoad(t, ns, opts(t, dir, ModeXDP, "v0"))
	wantModes(t, d, map[string]Mode{"v0": ModeXDP, testTap: ModeXDP})
	if s := attached(t, ns, "v0"); s.xdpMode != 1 || len(s.tcx) != 0 {
		t.Errorf("v0 native: %+v", s)
	}
	if s := attached(t, ns, "b0"); s.xdpMode != 0 || len(s.tcx) != 0 {
		t.Errorf("b0 still attached after leaving the list: %+v", s)
	}
	wantTx(t, d)
	d.Close()

	// The bridge has no native XDP: a clear error.
	_, err := load(ns, opts(t, dir, ModeXDP, "b0"))
	t.Logf("native xdp on bridge: %v", err)
	if err == nil || !strings.Contains(err.Error(), "no native XDP") || !strings.Contains(err.Error(), "b0") {
		t.Errorf("native xdp on bridge: %v", err)
	}
}

func TestLoadAuto(t *testing.T) {
	ns, dir := topology(t)
	d := mustLoad(t, ns, opts(t, dir, ModeAuto, "v0", "b0"))
	defer d.Close()
	wantModes(t, d, map[string]Mode{"v0": ModeTC, "b0": ModeTC, testTap: ModeTC})
	for _, a := range d.Attached[:2] {
		if !strings.Contains(a.Reason, "virtual device") {
			t.Errorf("%s reason %q", a.Iface, a.Reason)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	ns, dir := topology(t)
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "missing interface", opts: opts(t, dir, ModeTC, "v0", "eth9"), want: "interface eth9 not found"},
		{name: "bad mode", opts: opts(t, dir, "fast", "v0"), want: `unknown mode "fast"`},
		{name: "interface twice", opts: opts(t, dir, ModeTC, "v0", "v0"), want: "v0 given twice"},
		{name: "tap as interface", opts: opts(t, dir, ModeTC, testTap), want: "is the punt tap"},
		{name: "flow cache size", opts: func() Options {
			o := opts(t, dir, ModeTC, "v0")
			o.FlowCache = 1000
			return o
		}(), want: "flow cache of 1000 entries per CPU: want a power of two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := load(ns, tt.opts)
			if err == nil {
				d.Close()
				t.Fatal("Load succeeded")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
	// A device of the tap's name that is not a tap (a bridge) is refused, not taken.
	ns.mustDo(t, func() error {
		return netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: testTap}})
	})
	if d, err := load(ns, opts(t, dir, ModeTC, "v0")); err == nil || !strings.Contains(err.Error(), "not a multi-queue tap") {
		if d != nil {
			d.Close()
		}
		t.Errorf("Load with a bridge named like the tap: %v", err)
	}
	if err := ns.do(func() error { return deleteTap(testTap) }); err == nil || !strings.Contains(err.Error(), "not the punt tap") {
		t.Errorf("deleteTap on a bridge: %v", err)
	}
	ns.mustDo(t, func() error {
		return netlink.LinkDel(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: testTap}})
	})
}

// TestTapIO sends a frame into the tap from a packet socket (as the
// datapath's redirect would) and reads it from a queue; then Close wakes
// a blocked reader.
func TestTapIO(t *testing.T) {
	ns, dir := topology(t)
	d := mustLoad(t, ns, opts(t, dir, ModeTC, "v0"))
	defer d.Close()

	frame := frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_TCP, flags: synFlag, payload: 10}.build()
	SetDstMAC(frame, d.Tap.MAC())
	sendToTap(t, ns, d.Tap, frame)

	if err := d.Tap.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatalf("SetReadDeadline: %v (queue fds not in the netpoller?)", err)
	}
	type result struct {
		b   []byte
		err error
	}
	res := make(chan result, d.Tap.Queues())
	for q := range d.Tap.Queues() {
		go func() {
			n, err := readOne(d.Tap, q, 2048)
			res <- result{n, err}
		}()
	}
	first := <-res
	if first.err != nil {
		t.Fatalf("read: %v", first.err)
	}
	if !bytes.Equal(first.b, frame) {
		t.Errorf("read %x\nwant %x", first.b, frame)
	}
	if f, err := ParseFrame(first.b); err != nil || f.Dst != vip4 || f.TCPFlags != synFlag {
		t.Errorf("ParseFrame of the read frame: %+v, %v", f, err)
	}
	if err := d.Tap.Write(0, frame); err != nil {
		t.Errorf("write: %v", err)
	}

	// The other reader is blocked; Close must wake it.
	if err := d.Tap.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if err := d.Tap.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if !errors.Is(r.err, os.ErrClosed) {
			t.Errorf("blocked read after Close: %v, want os.ErrClosed", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked read did not return after Close")
	}
	if _, err := readOne(d.Tap, 0, 10); !errors.Is(err, os.ErrClosed) {
		t.Errorf("read after Close: %v", err)
	}
	if _, err := readOne(d.Tap, 5, 10); err == nil {
		t.Error("read from queue 5 succeeded")
	}
}

// readOne reads one frame of at most size bytes from queue q.
func readOne(tap *Tap, q, size int) ([]byte, error) {
	buf := make([]byte, size)
	var n [1]int
	k, err := tap.ReadBatch(q, [][]byte{buf}, n[:])
	if k == 0 {
		return nil, err
	}
	return buf[:n[0]], err
}

// TestOwnBPFFS: a Dir outside any bpffs gets a bpffs mounted on itself,
// which Down unmounts and removes.
func TestOwnBPFFS(t *testing.T) {
	ns, _ := topology(t)
	dir := filepath.Join(t.TempDir(), "pins")
	t.Cleanup(func() {
		// Only if the test failed half way: Down unmounts otherwise.
		if ok, _ := isBPFFS(dir); ok {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	d := mustLoad(t, ns, opts(t, dir, ModeTC, "v0"))
	d.Close()
	if ok, err := isBPFFS(dir); !ok || err != nil {
		t.Fatalf("%s is not a bpffs after Load: %v", dir, err)
	}
	if !ownMount(dir) {
		t.Errorf("%s not seen as its own mount", dir)
	}
	ns.mustDo(t, func() error { return Down(dir, testTap) })
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dir after Down: %v", err)
	}
	if s := attached(t, ns, "v0"); len(s.tcx) != 0 {
		t.Errorf("v0 after Down: %+v", s)
	}
}

// sendToTap transmits frames on the tap with a packet socket: they reach
// its queues, as frames the datapath redirects there do.
func sendToTap(t *testing.T, ns *testNS, tap *Tap, frames ...[]byte) {
	t.Helper()
	ns.mustDo(t, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: tap.Ifindex(), Halen: 6}
		copy(sa.Addr[:], tap.MAC())
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return err
			}
		}
		return nil
	})
}

// TestTapReadBatch: ReadBatch takes every frame the queue holds in one
// call, and waits (until the read deadline) only when it holds none.
func TestTapReadBatch(t *testing.T) {
	ns, dir := topology(t)
	o := opts(t, dir, ModeTC, "v0")
	o.TapQueues = 1
	d := mustLoad(t, ns, o)
	defer d.Close()

	var frames [][]byte
	for i := range 5 {
		f := frameSpec{src: cli4, dst: vip4, proto: unix.IPPROTO_TCP, flags: synFlag, payload: 10 + i}.build()
		SetDstMAC(f, d.Tap.MAC())
		frames = append(frames, f)
	}
	sendToTap(t, ns, d.Tap, frames...)
	if err := d.Tap.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	lens := make([]int, len(bufs))
	n, err := d.Tap.ReadBatch(0, bufs, lens)
	if err != nil || n != len(frames) {
		t.Fatalf("ReadBatch = %d, %v; want %d frames", n, err, len(frames))
	}
	for i, f := range frames {
		if !bytes.Equal(bufs[i][:lens[i]], f) {
			t.Errorf("frame %d: read %x\nwant %x", i, bufs[i][:lens[i]], f)
		}
	}
	if err := d.Tap.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if n, err := d.Tap.ReadBatch(0, bufs, lens); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadBatch of an empty queue = %d, %v; want 0, deadline exceeded", n, err)
	}
}
