package bpf

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// FillProgs puts each entry point into its own program array, where a
// packet starts over: a SYN whose reused port's old conn the datapath has
// just removed runs again as a first packet (lib/punt.h, punt_reuse).
// Without them such a SYN goes to the daemon instead.
func FillProgs(objs *XvsObjects) error {
	for _, p := range []struct {
		name  string
		array *ebpf.Map
		prog  *ebpf.Program
	}{{XvsMapXvsProgsXdp, objs.XvsProgsXdp, objs.XvsXdp}, {XvsMapXvsProgsTc, objs.XvsProgsTc, objs.XvsTc}} {
		if err := p.array.Put(uint32(0), p.prog); err != nil {
			return fmt.Errorf("%s[0]: %w", p.name, err)
		}
	}
	return nil
}
