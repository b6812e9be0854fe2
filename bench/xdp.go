package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"xvs/testutil"
)

// GenConfig configures the generator program.
type GenConfig struct {
	Flows    uint32 // established mode: number of flows (source ports)
	NewFlows bool   // every frame a new flow
	Sport    uint16 // first source port in established mode
	Salt     uint32 // new-flow mode (and the mixed-in flood): where the flow numbers start
	// FloodEvery makes every Nth frame of established mode a new flow: a
	// flood mixed into the established traffic, at a fixed share of it,
	// costing the generator nothing extra. 0: none.
	FloodEvery uint32
	// PPS paces the generator to at most this many frames per second
	// per CPU it runs on (it drops the early ones before the veth).
	// 0: as fast as it goes.
	PPS uint64
}

// loadBench loads the benchmark object with the given constants set.
func loadBench(set func(*BenchSpecs) error) (*BenchObjects, error) {
	spec, err := LoadBench()
	if err != nil {
		return nil, fmt.Errorf("load bench spec: %w", err)
	}
	var specs BenchSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, fmt.Errorf("assign bench spec: %w", err)
	}
	if err := set(&specs); err != nil {
		return nil, err
	}
	var objs BenchObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load bench programs: %+v", ve)
		}
		return nil, fmt.Errorf("load bench programs: %w", err)
	}
	return &objs, nil
}

func setVars(vs ...struct {
	v   *ebpf.VariableSpec
	val any
}) error {
	for _, x := range vs {
		if err := x.v.Set(x.val); err != nil {
			return fmt.Errorf("set %s: %w", x.v.Name, err)
		}
	}
	return nil
}

type kv = struct {
	v   *ebpf.VariableSpec
	val any
}

func be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func mac6(m net.HardwareAddr) [6]byte {
	var b [6]byte
	copy(b[:], m)
	return b
}

// Generator puts UDP frames on the generator's veth with
// BPF_PROG_TEST_RUN in live frame mode: the kernel runs gen_xdp on a
// template frame Repeat times and transmits each result (XDP_TX), with no
// socket and no skb on the sending side.
type Generator struct {
	objs     *BenchObjects
	ns       *testutil.NetNS
	ifindex  int
	template []byte
}

// NewGenerator loads a generator for frames from src to dst:port leaving
// the generator's interface towards the director's external MAC.
func NewGenerator(tp *Topo, cfg GenConfig, src netip.Addr, dst netip.AddrPort) (*Generator, error) {
	template := udpFrame(tp.GenMAC, tp.ExtMAC, src, dst)
	var hdr [21]uint16
	for i := range hdr {
		hdr[i] = binary.NativeEndian.Uint16(template[2*i:])
	}
	objs, err := loadBench(func(s *BenchSpecs) error {
		flows := cfg.Flows
		if flows == 0 {
			flows = 1
		}
		var nf uint32
		if cfg.NewFlows {
			nf = 1
		}
		var gap uint64
		if cfg.PPS > 0 {
			gap = max(uint64(time.Second)/cfg.PPS, 1)
		}
		return setVars(kv{s.GenGapNs, gap}, kv{s.GenFlows, flows}, kv{s.GenNewFlows, nf}, kv{s.GenSport, cfg.Sport},
			kv{s.GenSalt, cfg.Salt}, kv{s.GenFloodEvery, cfg.FloodEvery}, kv{s.SinkPort, uint16(udpPort)}, kv{s.GenHdr, hdr})
	})
	if err != nil {
		return nil, err
	}
	return &Generator{
		objs:     objs,
		ns:       tp.Gen,
		ifindex:  tp.GenIdx,
		template: template,
	}, nil
}

// Close unloads the generator.
func (g *Generator) Close() error { return g.objs.Close() }

// udpFrame is a 60-byte Ethernet/IPv4/UDP frame with a zero UDP checksum
// (none, legal on IPv4); gen_xdp rewrites the source.
func udpFrame(srcMAC, dstMAC net.HardwareAddr, src netip.Addr, dst netip.AddrPort) []byte {
	f := make([]byte, 60)
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-14))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	s, d := src.As4(), dst.Addr().As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:], 1024)
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], "xvs-bench")
	return f
}

func ipChecksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i == 10 {
			continue
		}
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// Sent is the number of frames generated so far, over all CPUs.
func (g *Generator) Sent() (uint64, error) { return sumCPU(g.objs.BenchCnt, cntGen) }

// FloodSent is how many of the frames Sent counts were new flows mixed in
// (GenConfig.FloodEvery).
func (g *Generator) FloodSent() (uint64, error) { return sumCPU(g.objs.BenchCnt, cntFlood) }

const (
	cntGen   uint32 = 0
	cntSink  uint32 = 1
	cntFlood uint32 = 2
)

func sumCPU(m *ebpf.Map, key uint32) (uint64, error) {
	var vals []uint64
	if err := m.Lookup(&key, &vals); err != nil {
		return 0, fmt.Errorf("read counter %d: %w", key, err)
	}
	var n uint64
	for _, v := range vals {
		n += v
	}
	return n, nil
}

// Burst sends n frames from the calling CPU, at the kernel's pace.
func (g *Generator) Burst(n uint32) error {
	return g.ns.Do(func() error { return g.run(n) })
}

func (g *Generator) run(n uint32) error {
	// In live frame mode the kernel reports no return value: the frames
	// went wherever gen_xdp sent them (XDP_TX), which Sent counts.
	_, err := g.objs.GenXdp.Run(&ebpf.RunOptions{
		Data:      g.template,
		Repeat:    n,
		Flags:     unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		Context:   &xdpMD{DataEnd: uint32(len(g.template)), IngressIfindex: uint32(g.ifindex)},
		BatchSize: 64,
	})
	if err != nil {
		return fmt.Errorf("generate %d frames: %w", n, err)
	}
	return nil
}

// xdpMD is struct xdp_md, the context of an XDP program run.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// Flood sends from one thread per CPU in cpus, each pinned to its CPU,
// until d has passed or ctx ends, and returns the time it took.
func (g *Generator) Flood(ctx context.Context, cpus []int, d time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	errs := make([]error, len(cpus))
	for i, cpu := range cpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = g.ns.Do(func() error {
				restore, err := pinCPU(cpu)
				if err != nil {
					return err
				}
				defer restore()
				chunk := uint32(1 << 14)
				for time.Now().Before(deadline) && ctx.Err() == nil {
					t0 := time.Now()
					if err := g.run(chunk); err != nil {
						return err
					}
					// Aim at ~20 ms per call so the deadline holds.
					if el := time.Since(t0); el < 10*time.Millisecond && chunk < 1<<24 {
						chunk *= 2
					} else if el > 40*time.Millisecond && chunk > 1024 {
						chunk /= 2
					}
				}
				return nil
			})
		}()
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// pinCPU pins the calling (locked) thread to cpu and returns how to undo it.
func pinCPU(cpu int) (func(), error) {
	runtime.LockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("get affinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("pin to cpu %d: %w", cpu, err)
	}
	return func() {
		_ = unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	}, nil
}

// Sink counts and drops the UDP benchmark traffic on the real servers'
// veth, so that receiving costs one XDP run per frame and no socket.
type Sink struct {
	objs *BenchObjects
	l    link.Link
}

// AttachSink attaches sink_xdp to the real servers' interface.
func AttachSink(tp *Topo) (*Sink, error) {
	objs, err := loadBench(func(s *BenchSpecs) error {
		return setVars(kv{s.SinkPort, uint16(udpPort)}, kv{s.GenFlows, uint32(1)})
	})
	if err != nil {
		return nil, err
	}
	var l link.Link
	err = tp.RS.Do(func() error {
		var err error
		l, err = link.AttachXDP(link.XDPOptions{Program: objs.SinkXdp, Interface: tp.RSIdx})
		return err
	})
	if err != nil {
		objs.Close()
		return nil, fmt.Errorf("attach sink to %s: %w", tp.RS.Name, err)
	}
	return &Sink{objs: objs, l: l}, nil
}

// Count is the number of frames counted so far.
func (s *Sink) Count() (uint64, error) { return sumCPU(s.objs.BenchCnt, cntSink) }

// Answer switches the sink between dropping what it counts (off) and
// answering it (on).
func (s *Sink) Answer(on bool) error {
	var v uint32
	if on {
		v = 1
	}
	if err := s.objs.SinkCtl.Update(uint32(0), v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("switch the sink's answers: %w", err)
	}
	return nil
}

// Close detaches and unloads the sink.
func (s *Sink) Close() error {
	return errors.Join(s.l.Close(), s.objs.Close())
}
