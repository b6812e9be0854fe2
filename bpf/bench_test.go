package bpf

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"xvs/testutil"
)

// passProgram is the baseline: an XDP program that only returns XDP_PASS.
func passProgram(b *testing.B) *ebpf.Program {
	b.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS
			asm.Return(),
		},
		License: "GPL",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// benchRun returns the mean time of one run of prog on in, as timed by
// the kernel. Each run is its own BPF_PROG_TEST_RUN with repeat 1, so
// every run sees the original frame (with repeat > 1 the kernel would run
// the program again on the already rewritten frame, which then misses).
// Without a context the ingress device is the namespace's loopback; fib
// lookups from it route like from any device.
func (e *env) benchRun(b *testing.B, prog *ebpf.Program, in []byte, want uint32) float64 {
	b.Helper()
	var total time.Duration
	err := e.ns.do(func() error {
		for i := 0; i < b.N; i++ {
			ret, d, err := prog.Benchmark(in, 1, nil)
			if err != nil {
				return err
			}
			if ret != want {
				return fmt.Errorf("verdict %d, want %d", ret, want)
			}
			total += d
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return float64(total.Nanoseconds()) / float64(b.N)
}

func benchHit(b *testing.B, reverse bool) {
	e := newEnv(b)
	setupConns(e)
	cport := cportOf(0, 0)
	cli, vip, rs := ap(cli4, cport), ap(vip4, vport), ap(rs4, rport)
	f := frame(cli, vip, testutil.ProtoTCP, testutil.TCPAck|testutil.TCPPsh, macCli, macExt)
	if reverse {
		f = frame(rs, cli, testutil.ProtoTCP, testutil.TCPAck|testutil.TCPPsh, macRS, macInt)
	}
	in := f.Bytes()
	pass := passProgram(b)
	b.ResetTimer()
	hit := e.benchRun(b, e.objs.XvsXdp, in, 4) // XDP_REDIRECT
	base := e.benchRun(b, pass, in, 2)
	b.ReportMetric(hit, "ns/op")
	b.ReportMetric(base, "pass-ns/op")
	if base > 0 {
		b.ReportMetric(hit/base, "x-pass")
	}
}

// BenchmarkXDPForwardHit: client -> VIP packet of an established IPv4 TCP
// conn, rewritten and redirected, next to an XDP_PASS-only program.
func BenchmarkXDPForwardHit(b *testing.B) { benchHit(b, false) }

// BenchmarkXDPReverseHit: the real server's reply, rewritten to the VIP.
func BenchmarkXDPReverseHit(b *testing.B) { benchHit(b, true) }
