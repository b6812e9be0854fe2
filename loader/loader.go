// Package loader loads the xvs datapath into the kernel, pins its maps and
// links under bpffs so that they outlive the daemon, attaches it to the
// interfaces (XDP or TC) and owns the punt tap.
//
// Load is load-or-adopt: a restart finds the pinned maps (connections
// survive) and swaps the program inside each pinned link, so traffic never
// sees a gap. Down undoes everything.
package loader

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"xvs/bpf"
)

// Mode is how the datapath is attached to an interface.
type Mode string

const (
	// ModeAuto picks per interface: tc on virtual devices, native XDP
	// where the driver has it, tc otherwise.
	ModeAuto Mode = "auto"
	// ModeXDP is native (driver) XDP; interfaces without it fail.
	ModeXDP Mode = "xdp"
	// ModeXDPGeneric is generic (skb) XDP, available everywhere.
	ModeXDPGeneric Mode = "xdpgeneric"
	// ModeTC is tcx ingress.
	ModeTC Mode = "tc"
)

func (m Mode) valid() bool {
	switch m {
	case ModeAuto, ModeXDP, ModeXDPGeneric, ModeTC:
		return true
	}
	return false
}

func (m Mode) isXDP() bool { return m == ModeXDP || m == ModeXDPGeneric }

// Defaults of Options.
const (
	DefaultDir       = "/sys/fs/bpf/xvs"
	DefaultConnMax   = 1048576
	DefaultTapName   = "xvs0"
	DefaultTapQueues = 2
)

// Options configure Load.
type Options struct {
	// Dir is the bpffs directory of the pins, default DefaultDir. If it
	// is not on a bpffs, a bpffs is mounted: on /sys/fs/bpf when Dir is
	// directly under it, else on Dir itself.
	Dir string
	// ConnMax is max_entries of xvs_conns and xvs_rconns. Pinned maps of
	// another size are refused (they cannot be resized in place).
	ConnMax uint32
	// HalfOpenMax is max_entries of the half-open pair, default a quarter
	// of ConnMax. Not preallocated: it costs memory only while filled.
	HalfOpenMax uint32
	// FlowCache is the flow cache's entries per CPU (64 bytes each), a
	// power of two; 0: bpf.FlowsPerCPU; negative: no flow cache.
	FlowCache int
	// Ifaces get the datapath. Interfaces attached by a previous run but
	// missing here are detached (their links unpinned) and removed from
	// the redirect map: the list given is the list served.
	Ifaces []string
	// Mode applies to every interface in Ifaces, default ModeAuto.
	Mode Mode
	// TapName is the punt device, default DefaultTapName.
	TapName string
	// TapQueues is the number of tap queues (one reader each), default 2.
	TapQueues int
	// Logger receives one line per interface saying which mode it got
	// and why; nil discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	o.Dir = filepath.Clean(o.Dir)
	if o.ConnMax == 0 {
		o.ConnMax = DefaultConnMax
	}
	if o.HalfOpenMax == 0 {
		o.HalfOpenMax = max(o.ConnMax/4, 1)
	}
	if o.Mode == "" {
		o.Mode = ModeAuto
	}
	if o.TapName == "" {
		o.TapName = DefaultTapName
	}
	if o.TapQueues == 0 {
		o.TapQueues = DefaultTapQueues
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Attachment says how one interface got the datapath.
type Attachment struct {
	Iface   string
	Ifindex int
	Mode    Mode   // never ModeAuto
	Reason  string // why this mode, for the log
	Adopted bool   // an existing pinned link got the new program
}

// Datapath is the loaded and attached datapath.
type Datapath struct {
	Objs    *bpf.XvsObjects
	Tap     *Tap
	Adopted bool // pinned maps were re-opened: connections were kept
	Dir     string
	// Attached lists Options.Ifaces in order, then the tap.
	Attached []Attachment

	links []link.Link
}

// Load loads the datapath, or adopts the one pinned in opts.Dir, attaches
// it to opts.Ifaces and to the punt tap, and fills xvs_tx with their
// ifindexes. The punt device is not written into xvs_cfg: the daemon does
// that with maps.SetPunt(uint32(d.Tap.Ifindex()), ...) together with the
// liveness settings it owns.
func Load(opts Options) (_ *Datapath, err error) {
	opts = opts.withDefaults()
	log := opts.Logger
	if !opts.Mode.valid() {
		return nil, fmt.Errorf("load: unknown mode %q (want auto, xdp, xdpgeneric or tc)", opts.Mode)
	}
	if opts.TapQueues < 1 {
		return nil, fmt.Errorf("load: tap queues %d, want at least 1", opts.TapQueues)
	}
	if err := bpf.CheckFlows(opts.FlowCache); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	links, err := resolveIfaces(opts.Ifaces, opts.TapName)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := ensureBPFFS(opts.Dir); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}

	spec, err := bpf.LoadXvs()
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	spec.Maps[bpf.XvsMapXvsConns].MaxEntries = opts.ConnMax
	spec.Maps[bpf.XvsMapXvsRconns].MaxEntries = opts.ConnMax
	// Half-open conns have their own, smaller pair (see docs/datapath.md).
	spec.Maps[bpf.XvsMapXvsConnsNew].MaxEntries = opts.HalfOpenMax
	spec.Maps[bpf.XvsMapXvsRconnsNew].MaxEntries = opts.HalfOpenMax
	if err := bpf.SizeFlows(spec, opts.FlowCache); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	adopted, err := checkPinnedMaps(spec, opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}

	objs := new(bpf.XvsObjects)
	if err := spec.LoadAndAssign(objs, &ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: opts.Dir},
	}); err != nil {
		return nil, fmt.Errorf("load: %w", loadError(err))
	}
	d := &Datapath{Objs: objs, Adopted: adopted, Dir: opts.Dir}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if err = bpf.FillProgs(objs); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}

	d.Tap, err = openTap(opts.TapName, opts.TapQueues)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	warn, err := d.Tap.configure()
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if warn != "" {
		log.Warn(warn, slog.String("tap", opts.TapName))
	}

	pins, err := pinnedLinks(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	allXDP := len(links) > 0
	for _, l := range links {
		a, err := d.attach(l, opts.Mode, pins)
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		allXDP = allXDP && a.Mode.isXDP()
		log.Info("attached", slog.String("iface", a.Iface), slog.String("mode", string(a.Mode)),
			slog.String("reason", a.Reason), slog.Bool("adopted", a.Adopted))
	}

	// The tap gets native XDP (tun has it) when the interfaces run XDP,
	// so that a frame written back meets the same kind of program; tc
	// otherwise, where punting is bpf_redirect from tc.
	tapMode, why := ModeTC, "not every interface runs xdp"
	if allXDP {
		tapMode, why = ModeXDP, "every interface runs xdp"
	}
	tapLink, err := netlink.LinkByName(opts.TapName)
	if err != nil {
		return nil, fmt.Errorf("load: tap %s: %w", opts.TapName, err)
	}
	a, err := d.attach(tapLink, tapMode, pins)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	a.Reason = "punt device: " + why
	d.Attached[len(d.Attached)-1] = a
	log.Info("attached", slog.String("iface", a.Iface), slog.String("mode", string(a.Mode)),
		slog.String("reason", a.Reason), slog.Bool("adopted", a.Adopted))

	for name, ps := range pins {
		if slices.ContainsFunc(d.Attached, func(a Attachment) bool { return a.Iface == name }) {
			continue
		}
		for _, p := range ps {
			if err := removePinnedLink(p.path); err != nil {
				return nil, fmt.Errorf("load: detach %s (no longer configured): %w", name, err)
			}
			log.Info("detached", slog.String("iface", name), slog.String("mode", string(p.mode)),
				slog.String("reason", "not in the interface list any more"))
		}
	}

	if err := d.fillTx(); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return d, nil
}

// resolveIfaces looks the interfaces up, in order, refusing duplicates and
// the tap itself.
func resolveIfaces(names []string, tap string) ([]netlink.Link, error) {
	seen := map[string]bool{}
	var out []netlink.Link
	for _, name := range names {
		if seen[name] {
			return nil, fmt.Errorf("interface %s given twice", name)
		}
		seen[name] = true
		if name == tap {
			return nil, fmt.Errorf("interface %s is the punt tap", name)
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return nil, fmt.Errorf("interface %s not found", name)
			}
			return nil, fmt.Errorf("interface %s: %w", name, privileged(err))
		}
		out = append(out, l)
	}
	return out, nil
}

// checkPinnedMaps reports whether pinned maps exist in dir (a restart) and
// refuses, with what to do about it, a pinned map that does not fit spec.
func checkPinnedMaps(spec *ebpf.CollectionSpec, dir string) (adopted bool, err error) {
	// In name order, so that xvs_conns is reported before xvs_rconns.
	for _, name := range slices.Sorted(maps.Keys(spec.Maps)) {
		ms := spec.Maps[name]
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("open pinned map %s: %w", path, privileged(err))
		}
		adopted = true
		cerr := ms.Compatible(m)
		have := m.MaxEntries()
		m.Close()
		if cerr == nil {
			continue
		}
		flag := ""
		switch name {
		case bpf.XvsMapXvsConns, bpf.XvsMapXvsRconns:
			flag = "--conn-max"
		case bpf.XvsMapXvsConnsNew, bpf.XvsMapXvsRconnsNew:
			flag = "--half-open-max"
		}
		if flag != "" && have != ms.MaxEntries {
			return false, fmt.Errorf("pinned map %s holds %d connections but %s is %d: "+
				"start with %s %d as before, or run `xvsd down` first (drops all connections): %w",
				path, have, flag, ms.MaxEntries, flag, have, cerr)
		}
		return false, fmt.Errorf("pinned map %s was made by an incompatible xvsd: "+
			"run `xvsd down` first to remove the old datapath (drops all connections): %w", path, cerr)
	}
	return adopted, nil
}

// fillTx puts every attached ifindex (the tap included) into xvs_tx and
// removes entries of interfaces no longer attached.
func (d *Datapath) fillTx() error {
	want := map[uint32]bool{}
	for _, a := range d.Attached {
		idx := uint32(a.Ifindex)
		want[idx] = true
		if err := d.Objs.XvsTx.Put(idx, idx); err != nil {
			return fmt.Errorf("add %s to xvs_tx: %w", a.Iface, err)
		}
	}
	var stale []uint32
	var k, v uint32
	it := d.Objs.XvsTx.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list xvs_tx: %w", err)
	}
	for _, k := range stale {
		if err := d.Objs.XvsTx.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove ifindex %d from xvs_tx: %w", k, err)
		}
	}
	return nil
}

// Close releases this process's hold: program, map, link and tap queue
// file descriptors. Pins, links and the persistent tap stay, so traffic
// keeps flowing (first packets are dropped as stale once the heartbeat
// stops). Readers blocked in Tap.Read return.
func (d *Datapath) Close() error {
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	d.links = nil
	if d.Tap != nil {
		errs = append(errs, d.Tap.Close())
	}
	if d.Objs != nil {
		errs = append(errs, d.Objs.Close())
	}
	return errors.Join(errs...)
}

// mapPinPrefix starts the name of every map pin (the maps' names).
const mapPinPrefix = "xvs_"

// Down removes everything Load made: it detaches and unpins the links,
// removes the map pins and dir (unmounting it if it is its own bpffs) and
// deletes the tap. Interfaces are left as they were before Load. Whatever
// is already gone is not an error.
func Down(dir, tapName string) error {
	if dir == "" {
		dir = DefaultDir
	}
	if tapName == "" {
		tapName = DefaultTapName
	}
	dir = filepath.Clean(dir)
	var errs []error
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("down: %w", err))
	}
	// Links first, so no program runs on maps being removed.
	for _, e := range entries {
		if _, _, ok := parseLinkPin(e.Name()); ok {
			if err := removePinnedLink(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, fmt.Errorf("down: %w", err))
			}
		}
	}
	for _, e := range entries {
		// Only our map pins: a fresh bpffs also holds the kernel's
		// maps.debug and progs.debug, which go with the unmount.
		if !strings.HasPrefix(e.Name(), mapPinPrefix) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("down: remove pin: %w", privileged(err)))
		}
	}
	if err == nil {
		if ownMount(dir) {
			if err := unix.Unmount(dir, 0); err != nil {
				errs = append(errs, fmt.Errorf("down: unmount %s: %w", dir, err))
			}
		}
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("down: %w", err))
		}
	}
	if err := deleteTap(tapName); err != nil {
		errs = append(errs, fmt.Errorf("down: %w", err))
	}
	return errors.Join(errs...)
}

// privileged adds the privileges to a permission error, which is what a
// non-root user gets from every BPF and netlink call.
func privileged(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w (privileges CAP_BPF and CAP_NET_ADMIN needed)", err)
	}
	return err
}

// verifierTail is how many lines of the verifier log a load error keeps.
const verifierTail = 20

// loadError shortens a verifier rejection to the end of its log, where
// the reason is, and adds privileges to a permission error.
func loadError(err error) error {
	var ve *ebpf.VerifierError
	if !errors.As(err, &ve) {
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return fmt.Errorf("%w: run `xvsd down` first, or start with the old --conn-max", err)
		}
		return privileged(err)
	}
	var tail []string
	omitted := max(len(ve.Log)-verifierTail, 0)
	if omitted > 0 {
		tail = append(tail, fmt.Sprintf("\t(%d line(s) omitted)", omitted))
	}
	for _, l := range ve.Log[omitted:] {
		tail = append(tail, "\t"+l)
	}
	return &rejectedError{log: strings.Join(tail, "\n"), err: err}
}

// rejectedError is a verifier rejection with the tail of its log.
type rejectedError struct {
	log string
	err error
}

func (e *rejectedError) Error() string {
	return "kernel rejected the datapath: " + e.err.Error() + "\nverifier log, last lines:\n" + e.log
}

func (e *rejectedError) Unwrap() error { return e.err }
