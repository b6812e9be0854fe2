package loader

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Links are pinned as Dir/link_<mode>_<ifname>: the mode is in the name
// because an XDP link does not say whether it is native or generic.
const linkPrefix = "link_"

func linkPinName(mode Mode, ifname string) string {
	return linkPrefix + string(mode) + "_" + ifname
}

// parseLinkPin splits a pin file name made by linkPinName.
func parseLinkPin(name string) (Mode, string, bool) {
	rest, ok := strings.CutPrefix(name, linkPrefix)
	if !ok {
		return "", "", false
	}
	// xdpgeneric before xdp: "xdp_" is not a prefix of "xdpgeneric_",
	// but keep the longer one first anyway.
	for _, m := range []Mode{ModeXDPGeneric, ModeXDP, ModeTC} {
		if ifname, ok := strings.CutPrefix(rest, string(m)+"_"); ok && ifname != "" {
			return m, ifname, true
		}
	}
	return "", "", false
}

type pinnedLink struct {
	mode Mode
	path string
}

// pinnedLinks lists the pinned links in dir by interface name.
func pinnedLinks(dir string) (map[string][]pinnedLink, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list pinned links: %w", err)
	}
	out := map[string][]pinnedLink{}
	for _, e := range entries {
		if mode, ifname, ok := parseLinkPin(e.Name()); ok {
			out[ifname] = append(out[ifname], pinnedLink{mode: mode, path: filepath.Join(dir, e.Name())})
		}
	}
	return out, nil
}

// attach gives one interface the datapath and records it in d.Attached.
//
// A pinned link of the wanted mode (in auto mode: of any mode) that still
// targets this interface gets the new program in place (link update): no
// packet goes unprocessed. Otherwise a new link is attached and pinned and
// the old ones are removed; two XDP links cannot coexist, so an old XDP
// link goes first when the new one is XDP too.
func (d *Datapath) attach(l netlink.Link, want Mode, pins map[string][]pinnedLink) (Attachment, error) {
	name := l.Attrs().Name
	a := Attachment{Iface: name, Ifindex: l.Attrs().Index}
	old := pins[name]
	mode, reason := want, "configured"
	if want == ModeAuto && l.Type() != "device" {
		mode = ModeTC
		reason = fmt.Sprintf("virtual device (%s): locally generated packets may carry partial checksums that XDP cannot fix", l.Type())
	}

	for i, p := range old {
		if mode != ModeAuto && p.mode != mode {
			continue
		}
		ok, err := d.adopt(p, a.Ifindex)
		if err != nil {
			return a, fmt.Errorf("attach %s: %w", name, err)
		}
		if !ok {
			continue
		}
		a.Mode, a.Adopted, a.Reason = p.mode, true, reason
		if mode == ModeAuto {
			a.Reason = "kept from the previous run"
		}
		for j, q := range old {
			if j != i {
				if err := removePinnedLink(q.path); err != nil {
					return a, fmt.Errorf("attach %s: %w", name, err)
				}
			}
		}
		d.Attached = append(d.Attached, a)
		return a, nil
	}

	// Nothing to adopt: XDP links of another mode must go before a new
	// XDP link can be made; the rest go after, so the interface is never
	// without a program longer than necessary.
	removeOld := func(xdpOnly bool) error {
		for _, p := range old {
			if xdpOnly && !p.mode.isXDP() {
				continue
			}
			if err := removePinnedLink(p.path); err != nil {
				return err
			}
		}
		return nil
	}

	var lk link.Link
	var err error
	if mode == ModeAuto {
		if err := removeOld(true); err != nil {
			return a, fmt.Errorf("attach %s: %w", name, err)
		}
		lk, err = d.attachXDP(a.Ifindex, link.XDPDriverMode)
		if err == nil {
			mode, reason = ModeXDP, "driver supports native XDP"
		} else if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, ebpf.ErrNotSupported) {
			mode, reason = ModeTC, fmt.Sprintf("no native XDP (%v)", errors.Unwrap(err))
			lk = nil
		} else {
			return a, fmt.Errorf("attach xdp to %s: %w", name, attachHint(err))
		}
	}

	if lk == nil {
		if mode.isXDP() {
			if err := removeOld(true); err != nil {
				return a, fmt.Errorf("attach %s: %w", name, err)
			}
			flags := link.XDPDriverMode
			if mode == ModeXDPGeneric {
				flags = link.XDPGenericMode
			}
			lk, err = d.attachXDP(a.Ifindex, flags)
			if err != nil {
				if mode == ModeXDP && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
					return a, fmt.Errorf("attach xdp to %s: the driver has no native XDP (use --mode xdpgeneric, tc or auto): %w", name, err)
				}
				return a, fmt.Errorf("attach %s to %s: %w", mode, name, attachHint(err))
			}
		} else {
			lk, err = link.AttachTCX(link.TCXOptions{
				Interface: a.Ifindex,
				Program:   d.Objs.XvsTc,
				Attach:    ebpf.AttachTCXIngress,
			})
			if err != nil {
				return a, fmt.Errorf("attach tc to %s: %w", name, attachHint(err))
			}
		}
	}
	d.links = append(d.links, lk)
	path := filepath.Join(d.Dir, linkPinName(mode, name))
	if err := lk.Pin(path); err != nil {
		return a, fmt.Errorf("pin %s link of %s: %w", mode, name, err)
	}
	// Old links of other modes (tc after a switch to XDP, or the other
	// way round) go now that the new one runs.
	for _, p := range old {
		if p.path == path {
			continue
		}
		if err := removePinnedLink(p.path); err != nil {
			return a, fmt.Errorf("attach %s: %w", name, err)
		}
	}
	a.Mode, a.Reason = mode, reason
	d.Attached = append(d.Attached, a)
	return a, nil
}

func (d *Datapath) attachXDP(ifindex int, flags link.XDPAttachFlags) (link.Link, error) {
	return link.AttachXDP(link.XDPOptions{Program: d.Objs.XvsXdp, Interface: ifindex, Flags: flags})
}

// adopt swaps the program inside pinned link p if it still targets
// ifindex. It reports false (and removes the pin) for a link left over
// from an interface that was deleted or renamed meanwhile.
func (d *Datapath) adopt(p pinnedLink, ifindex int) (bool, error) {
	lk, err := link.LoadPinnedLink(p.path, nil)
	if err != nil {
		return false, fmt.Errorf("open pinned link %s: %w", p.path, privileged(err))
	}
	info, err := lk.Info()
	if err != nil {
		lk.Close()
		return false, fmt.Errorf("pinned link %s: %w", p.path, err)
	}
	target := uint32(0)
	if x := info.XDP(); x != nil && p.mode.isXDP() {
		target = x.Ifindex
	} else if t := info.TCX(); t != nil && p.mode == ModeTC {
		target = t.Ifindex
	}
	if target != uint32(ifindex) {
		lk.Close()
		return false, removePinnedLink(p.path)
	}
	prog := d.Objs.XvsTc
	if p.mode.isXDP() {
		prog = d.Objs.XvsXdp
	}
	if err := lk.Update(prog); err != nil {
		lk.Close()
		return false, fmt.Errorf("update program of pinned link %s: %w", p.path, privileged(err))
	}
	d.links = append(d.links, lk)
	return true, nil
}

// removePinnedLink detaches a pinned link, even if another process still
// holds it, and removes its pin.
func removePinnedLink(path string) error {
	lk, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		// Not a link we can open: at least drop the pin.
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("remove pinned link %s: %w", path, privileged(err))
		}
		return nil
	}
	defer lk.Close()
	if err := lk.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, unix.ENOLINK) {
		return fmt.Errorf("detach pinned link %s: %w", path, err)
	}
	if err := lk.Unpin(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unpin link %s: %w", path, err)
	}
	return nil
}

// attachHint explains the attach errors an operator can do something about.
func attachHint(err error) error {
	switch {
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%w (another XDP program is attached; remove it first, e.g. ip link set dev IFACE xdp off)", err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w (the kernel lacks this attach type; tcx needs Linux 6.6)", err)
	}
	return privileged(err)
}
