package maps

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"xvs/bpf"
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
// (lib/flow.h): the caller has just removed a conn, or shadowed one's
// server-side key, which a copy on some CPU may still stand in for. Raises
// the time with a compare-and-swap, as the datapath does, so that neither
// side lowers it. The datapath's clock is the coarse one, up to a tick
// behind Now: copies made in the rest of that tick are void too, until
// their flow's next full lookup in a later tick copies it again.
func (m *Maps) voidFlows() {
	v, now := m.voidTime(), uint64(Now())
	for {
		old := atomic.LoadUint64(v)
		if old >= now || atomic.CompareAndSwapUint64(v, old, now) {
			return
		}
	}
}

// voidTime is xvs_flow_void's one value, in the shared mapping.
func (m *Maps) voidTime() *uint64 { return (*uint64)(unsafe.Pointer(&m.voidMem[0])) }

// flowLife is how long after its conn's last_seen a copy in the flow
// cache may still answer: XVS_FLOW_TTL_NS (a copy is never newer than
// its conn's stamp), and XVS_FLOW_MARGIN_NS for the coarse clock, a tick
// behind the precise one (at most 10 ms, HZ >= 100); the datapath's
// conn_copied_lately uses the same.
const flowLife = 100*time.Millisecond + 50*time.Millisecond

// voidFlowsOf voids the flow cache if removed conn v may have a live copy
// (see xvs.h): a packet was forwarded (CONN_F_NEW clear) within flowLife.
// A conn idle for longer, as every one expiry removes and the half-open
// ones a full new pair gives up (makeRoom), has none: a flood's evictions
// do not void the copies of the established flows.
func (m *Maps) voidFlowsOf(v bpf.XvsConn) {
	if v.Flags&uint8(bpf.XvsConnFlagsCONN_F_NEW) != 0 || Now()-time.Duration(v.LastSeen) >= flowLife {
		return
	}
	m.voidFlows()
}

// flowVoidTime reads the time (the datapath's clock, as Now) before which
// flow cache copies are void.
func (m *Maps) flowVoidTime() uint64 { return atomic.LoadUint64(m.voidTime()) }
