package ctl

import (
	"fmt"
	"net/netip"
	"slices"

	"xvs/ipvsadm"
	"xvs/sched"
)

// shadow is the table reduced to what decides whether a command can
// succeed, so that a batch (a restore) is checked whole before any of it
// touches the datapath.
type shadow struct {
	svcs  map[svcKey][]netip.AddrPort
	dests int
}

func (t *Table) shadow() *shadow {
	sh := &shadow{svcs: make(map[svcKey][]netip.AddrPort, len(t.svcs))}
	for k, s := range t.svcs {
		for _, d := range s.dests {
			sh.svcs[k] = append(sh.svcs[k], d.cfg.Addr)
		}
		if sh.svcs[k] == nil {
			sh.svcs[k] = []netip.AddrPort{}
		}
	}
	sh.dests = t.destIDs.count()
	return sh
}

// check validates c against the shadow state and, if it would succeed,
// applies it to the shadow. The checks are the kernel's (ip_vs_ctl.c):
// ipvsadm's own argument checks already ran in ipvsadm.Parse.
func (sh *shadow) check(c *ipvsadm.Command) error {
	switch c.Kind {
	case ipvsadm.CmdAddService, ipvsadm.CmdEditService:
		if err := checkService(c.Service); err != nil {
			return err
		}
		k := keyOf(c.Service)
		_, exists := sh.svcs[k]
		if c.Kind == ipvsadm.CmdAddService {
			if exists {
				return ErrServiceExists
			}
			if len(sh.svcs) >= maxServices {
				return ErrFull
			}
			sh.svcs[k] = []netip.AddrPort{}
		} else if !exists {
			return ErrNoService
		}
	case ipvsadm.CmdDelService:
		k := keyOf(c.Service)
		if _, ok := sh.svcs[k]; !ok {
			return ErrNoService
		}
		delete(sh.svcs, k)
	case ipvsadm.CmdFlush:
		clear(sh.svcs)
	case ipvsadm.CmdAddDest, ipvsadm.CmdEditDest, ipvsadm.CmdDelDest:
		return sh.checkDest(c)
	case ipvsadm.CmdZero:
		if c.Service != nil {
			if _, ok := sh.svcs[keyOf(c.Service)]; !ok {
				return ErrNoService
			}
		}
	case ipvsadm.CmdSet:
	default:
		return fmt.Errorf("command %v: %w", c.Kind, ErrNotSupported)
	}
	return nil
}

func checkService(s *ipvsadm.Service) error {
	if s.Proto != protoTCP && s.Proto != protoUDP {
		return fmt.Errorf("protocol %d: %w", s.Proto, ErrNotSupported)
	}
	if s.OnePacket {
		return fmt.Errorf("one-packet scheduling: %w", ErrNotSupported)
	}
	if !slices.Contains(sched.Names(), schedName(s.Scheduler)) {
		return ErrNoScheduler
	}
	if !s.Addr.Addr().IsValid() || s.Addr.Addr().Is4In6() {
		return ErrInvalid
	}
	if bits := s.Addr.Addr().BitLen(); s.Persistent && (s.Netmask < 1 || s.Netmask > bits) {
		return ErrInvalid
	}
	return nil
}

func schedName(s string) string {
	if s == "" {
		return "wlc"
	}
	return s
}

func (sh *shadow) checkDest(c *ipvsadm.Command) error {
	k := keyOf(c.Service)
	list, ok := sh.svcs[k]
	if !ok {
		return ErrServiceNotDefined
	}
	d := c.Dest
	i := slices.Index(list, d.Addr)
	switch c.Kind {
	case ipvsadm.CmdAddDest:
		if i >= 0 {
			return ErrDestExists
		}
		if err := checkDest(c.Service, d); err != nil {
			return err
		}
		if sh.dests >= maxDests {
			return ErrFull
		}
		sh.dests++
		sh.svcs[k] = append(list, d.Addr)
	case ipvsadm.CmdEditDest:
		if i < 0 {
			return ErrNoDest
		}
		return checkDest(c.Service, d)
	case ipvsadm.CmdDelDest:
		if i < 0 {
			return ErrNoDest
		}
		sh.svcs[k] = slices.Delete(list, i, i+1)
	}
	return nil
}

func checkDest(s *ipvsadm.Service, d *ipvsadm.Dest) error {
	if d.Method != ipvsadm.MethodMasq && d.Method != ipvsadm.MethodUnset {
		return fmt.Errorf("forwarding method: %w", ErrNotSupported)
	}
	if d.Weight < 0 || (d.LThreshold > d.UThreshold) {
		return ErrRange
	}
	a := d.Addr.Addr()
	if !a.IsValid() || a.Is4() != s.Addr.Addr().Is4() || a.IsMulticast() || a.IsUnspecified() || (a.Is6() && a.IsLinkLocalUnicast()) {
		return ErrInvalid
	}
	return nil
}

const (
	protoTCP = 6
	protoUDP = 17
)
