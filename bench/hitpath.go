package bench

import (
	"fmt"
	"time"

	"xvs/testutil"
)

// RefHitNs is the static reference's cost per packet as the kernel times
// BPF_PROG_TEST_RUN, measured like ./bpf's BenchmarkXDPForwardHit measures
// xvs: a client -> VIP TCP ACK; warm, the mean over calls of repeat
// back-to-back runs, and cold, one run per call. For every run to be a
// full hit this copy rewrites the VIP to itself (the same loads, checksum
// arithmetic, stores and redirect as a real rewrite). It runs in the
// director namespace with no context, so that the ingress device is its
// loopback (ifindex 1), which this copy takes for its external side.
func RefHitNs(tp *Topo, calls, repeat int) (warm, cold float64, err error) {
	a := tp.Addrs
	objs, err := loadBench(func(s *BenchSpecs) error {
		return setVars(kv{s.RefVip, be32(a.VIP)}, kv{s.RefRs, be32(a.VIP)},
			kv{s.RefExtIdx, uint32(1)},
			kv{s.RefExtSrc, mac6(tp.ExtMAC)}, kv{s.RefExtDst, mac6(tp.GenMAC)},
			kv{s.RefIntSrc, mac6(tp.IntMAC)}, kv{s.RefIntDst, mac6(tp.RSMAC)},
			kv{s.GenFlows, uint32(1)})
	})
	if err != nil {
		return 0, 0, err
	}
	defer objs.Close()
	in := testutil.Frame{SrcMAC: tp.GenMAC, DstMAC: tp.ExtMAC, Src: a.Gen, Dst: a.VIP,
		SrcPort: 40000, DstPort: httpPort, TCPFlags: testutil.TCPAck | testutil.TCPPsh}.Bytes()
	mean := func(repeat int) (float64, error) {
		var total time.Duration
		for range calls {
			ret, d, err := objs.RefXdp.Benchmark(in, repeat, nil)
			if err != nil {
				return 0, err
			}
			if ret != 4 { // XDP_REDIRECT
				return 0, fmt.Errorf("ref_xdp returned %d, want XDP_REDIRECT", ret)
			}
			total += d
		}
		return float64(total.Nanoseconds()) / float64(calls), nil
	}
	err = tp.Dir.Do(func() error {
		for k, idx := range []uint32{uint32(tp.IntIdx), uint32(tp.ExtIdx)} {
			if err := objs.RefTx.Put(uint32(k), idx); err != nil {
				return fmt.Errorf("fill ref_tx: %w", err)
			}
		}
		var err error
		if warm, err = mean(repeat); err != nil {
			return err
		}
		cold, err = mean(1)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("time ref_xdp: %w", err)
	}
	return warm, cold, nil
}
