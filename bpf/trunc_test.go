package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"xvs/testutil"
)

// validFrames are hits and first packets of every family and protocol,
// with and without VLAN tag and IPv4 options, and the interface each
// arrives on.
func validFrames(e *env) []struct {
	name    string
	b       []byte
	ingress int
} {
	var out []struct {
		name    string
		b       []byte
		ingress int
	}
	add := func(name string, f testutil.Frame, ingress int) {
		out = append(out, struct {
			name    string
			b       []byte
			ingress int
		}{name, f.Bytes(), ingress})
	}
	for fi, fa := range families {
		for pi, pr := range protos {
			cport := cportOf(fi, pi)
			cli, vip, rs := ap(fa.cli, cport), ap(fa.vip, vport), ap(fa.rs, rport)
			pfx := fa.name + "/" + pr.name + "/"
			fwd := frame(cli, vip, pr.proto, testutil.TCPAck, macCli, macExt)
			add(pfx+"forward", fwd, e.ext.index)
			add(pfx+"reverse", frame(rs, cli, pr.proto, testutil.TCPAck, macRS, macInt), e.intl.index)
			add(pfx+"first", frame(ap(fa.cli, cport+50), vip, pr.proto, testutil.TCPSyn, macCli, macExt), e.ext.index)
			vlan := fwd
			vlan.VLAN, vlan.VLANID = true, 7
			add(pfx+"vlan", vlan, e.ext.index)
			if fa.cli.Is4() {
				opts := fwd
				opts.IPOptions = []byte{1, 1, 1, 0}
				add(pfx+"options", opts, e.ext.index)
			}
		}
	}
	return out
}

// TestTruncated feeds every prefix of valid frames: each is passed
// unchanged or dropped, never rewritten, and counts one reason.
func TestTruncated(t *testing.T) {
	e := newEnv(t)
	setupConns(e)
	for _, en := range entries {
		for _, vf := range validFrames(e) {
			t.Run(en.name+"/"+vf.name, func(t *testing.T) {
				for n := 14; n < len(vf.b); n++ {
					in := append([]byte(nil), vf.b[:n]...)
					e.resetReasons()
					got, out, err := e.run(en, in, vf.ingress)
					if skbRefused(en, in, err) {
						continue
					}
					if err != nil {
						t.Fatalf("len %d: %v", n, err)
					}
					r := e.reasons()
					switch got {
					case en.code(vDrop):
						if r[XvsReasonREASON_DROP_MALFORMED] != 1 || len(r) != 1 {
							t.Errorf("len %d: dropped with reasons %v", n, r)
						}
					case en.code(vPass):
						if !bytes.Equal(out, in) {
							t.Errorf("len %d: passed changed", n)
						}
						if r[XvsReasonREASON_PASS_NOT_IP] != 1 || len(r) != 1 {
							t.Errorf("len %d: passed with reasons %v", n, r)
						}
					default:
						t.Errorf("len %d: verdict %d, want pass or drop (reasons %v)", n, got, r)
					}
				}
			})
		}
	}
}

// FuzzXDP feeds random frames to both entries with services and conns
// installed: the verdict is one of the known ones, exactly one reason
// counts, the length changes only for an ICMP answer the datapath built
// (sent back, never passed), and a frame that came out changed from one
// with valid checksums has valid IP, L4 and ICMP checksums, quoted
// headers included. Seeds: hits, first packets, ICMP errors with quoted
// headers in both directions, fragments.
func FuzzXDP(f *testing.F) {
	e := newEnv(f)
	setupConns(e)
	for _, vf := range validFrames(e) {
		f.Add(vf.b, vf.ingress == e.intl.index)
	}
	for _, b := range icmpSeeds(e) {
		p, err := testutil.ParseFrame(b)
		f.Add(b, err == nil && (p.Src == rs4 || p.Src == rs6 || p.Src == noNeigh4 || p.Src == noNeigh6))
	}
	f.Fuzz(func(t *testing.T, in []byte, internal bool) {
		if len(in) < 15 || len(in) > 1500 {
			return
		}
		e := e.with(t)
		ingress := e.ext.index
		if internal {
			ingress = e.intl.index
		}
		validIn := testutil.VerifyChecksums(in) == nil
		for _, en := range entries {
			before := total(e.reasons())
			got, out, err := e.run(en, append([]byte(nil), in...), ingress)
			if skbRefused(en, in, err) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := total(e.reasons()) - before; n != 1 {
				t.Errorf("%s: %d reasons counted", en.name, n)
			}
			v, ok := verdictOf(en, got)
			if !ok {
				t.Fatalf("%s: unknown verdict %d", en.name, got)
			}
			if len(out) != len(in) {
				p, err := testutil.ParseFrame(out)
				icmp := err == nil && (p.Proto == testutil.ProtoICMP || p.Proto == testutil.ProtoICMPv6)
				if !icmp || (v != vTX && v != vRedirect) {
					t.Fatalf("%s: length %d -> %d, verdict %v", en.name, len(in), len(out), v)
				}
			}
			if bytes.Equal(out, in) {
				continue
			}
			if v == vDrop {
				continue
			}
			if _, err := testutil.ParseFrame(out); err != nil {
				t.Errorf("%s: rewritten frame unparsable: %v", en.name, err)
			}
			if validIn {
				if err := testutil.VerifyChecksums(out); err != nil {
					t.Errorf("%s: %v\n in %x\nout %x", en.name, err, in, out)
				}
			}
		}
	})
}

// skbRefused: the kernel's skb test run refuses (EINVAL) an IPv4 or IPv6
// frame too short for the fixed IP header; such an skb never reaches TC.
func skbRefused(en entry, in []byte, err error) bool {
	if en.xdp || !errors.Is(err, unix.EINVAL) || len(in) < 14 {
		return false
	}
	switch binary.BigEndian.Uint16(in[12:]) {
	case testutil.EtherTypeIPv4:
		return len(in) < 14+20
	case testutil.EtherTypeIPv6:
		return len(in) < 14+40
	}
	return false
}

func total(r map[XvsReason]uint64) uint64 {
	var n uint64
	for _, v := range r {
		n += v
	}
	return n
}

func verdictOf(en entry, code uint32) (verdict, bool) {
	for _, v := range []verdict{vPass, vDrop, vTX, vRedirect} {
		if en.code(v) == code {
			return v, true
		}
	}
	return 0, false
}
