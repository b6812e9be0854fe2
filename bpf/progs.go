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
// CPU owns by default.
const FlowsPerCPU = 16384

// maxFlowsPerCPU bounds SizeFlows: 64 MiB of copies per CPU.
const maxFlowsPerCPU = 1 << 20

// SizeFlows gives the flow cache of spec perCPU entries for each possible
// CPU (lib/flow.h indexes it by CPU first): 0 is FlowsPerCPU, a negative
// count turns the cache off (every packet looks its conn up). Else perCPU
// must be a power of two from 2 (one set) to 1,048,576.
func SizeFlows(spec *ebpf.CollectionSpec, perCPU int) error {
	ms, v := spec.Maps[XvsMapXvsFlows], spec.Variables["xvs_flows_per_cpu"]
	if ms == nil || v == nil {
		return fmt.Errorf("size %s: not in the object", XvsMapXvsFlows)
	}
	if err := CheckFlows(perCPU); err != nil {
		return err
	}
	switch {
	case perCPU == 0:
		perCPU = FlowsPerCPU
	case perCPU < 0:
		ms.MaxEntries = 1 // the smallest array; nothing reads it
		if err := v.Set(uint32(0)); err != nil {
			return fmt.Errorf("size %s: %w", XvsMapXvsFlows, err)
		}
		return nil
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("size %s: possible cpus: %w", XvsMapXvsFlows, err)
	}
	ms.MaxEntries = uint32(perCPU * ncpu)
	if err := v.Set(uint32(perCPU)); err != nil {
		return fmt.Errorf("size %s: %w", XvsMapXvsFlows, err)
	}
	return nil
}

// CheckFlows reports whether SizeFlows takes perCPU: 0, negative, or a
// power of two from 2 to 1,048,576.
func CheckFlows(perCPU int) error {
	if perCPU > 0 && (perCPU < 2 || perCPU > maxFlowsPerCPU || perCPU&(perCPU-1) != 0) {
		return fmt.Errorf("flow cache of %d entries per CPU: want a power of two from 2 to %d", perCPU, maxFlowsPerCPU)
	}
	return nil
}
