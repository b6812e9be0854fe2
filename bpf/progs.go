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

// FlowsPerCPU is XVS_FLOWS: the entries of the flow cache (xvs_flows) each
// CPU owns, as compiled into the spec.
const FlowsPerCPU = 16384

// SizeFlows gives the flow cache of spec XVS_FLOWS entries for each
// possible CPU (lib/flow.h indexes it by CPU first). Unsized, only CPU 0
// would have entries: every other CPU would miss in it, correctly but
// always.
func SizeFlows(spec *ebpf.CollectionSpec) error {
	ms := spec.Maps[XvsMapXvsFlows]
	if ms == nil {
		return fmt.Errorf("size %s: no such map", XvsMapXvsFlows)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("size %s: possible cpus: %w", XvsMapXvsFlows, err)
	}
	ms.MaxEntries = uint32(FlowsPerCPU * ncpu)
	return nil
}
