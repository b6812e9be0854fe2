package maps

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// mmapFlowVoid maps xvs_flow_void, one 8-byte time, shared.
func mmapFlowVoid(mp *ebpf.Map) ([]byte, error) {
	if mp.ValueSize() != 8 || mp.MaxEntries() != 1 {
		return nil, fmt.Errorf("xvs_flow_void holds %d values of %d bytes, want one of 8", mp.MaxEntries(), mp.ValueSize())
	}
	if mp.Flags()&unix.BPF_F_MMAPABLE == 0 {
		return nil, errors.New("xvs_flow_void is not mmapable")
	}
	mem, err := unix.Mmap(mp.FD(), 0, unix.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap xvs_flow_void: %w", err)
	}
	return mem, nil
}

// voidFlows voids every copy in the datapath's flow cache made up to now
// (lib/flow.h): the caller has just removed a conn, which a copy on some
// CPU may still stand in for. Expiry does not call it: it removes only
// conns idle for longer than a copy lives. Raises the time with a
// compare-and-swap, as the datapath does, so that neither side lowers it.
// The datapath's clock is the coarse one, up to a tick behind Now: copies
// made in the rest of that tick are void too, until their flow's next
// full lookup in a later tick copies it again.
func (m *Maps) voidFlows() {
	v := (*uint64)(unsafe.Pointer(&m.voidMem[0]))
	now := uint64(Now())
	for {
		old := atomic.LoadUint64(v)
		if old >= now || atomic.CompareAndSwapUint64(v, old, now) {
			return
		}
	}
}

// FlowVoid reports the time (the datapath's clock, as Now) before which
// flow cache copies are void.
func (m *Maps) FlowVoid() uint64 {
	return atomic.LoadUint64((*uint64)(unsafe.Pointer(&m.voidMem[0])))
}
