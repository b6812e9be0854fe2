package bpf

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"xvs/testutil"
)

// TestLoad loads both programs through the verifier.
func TestLoad(t *testing.T) {
	e := newEnv(t)
	if e.objs.XvsXdp == nil || e.objs.XvsTc == nil {
		t.Fatal("programs missing")
	}
}

// verifierShare is how much of the verifier's budget of a million
// processed instructions a program may use. Past it the next change to
// the hit path is likely to fail to load on this kernel (it did at 89%:
// one more inlined branch took xvs_xdp over), so the guard fails first,
// with the figure, while there is still room to restructure.
const verifierShare = 0.8

// TestVerifierBudget: each program's processed-instruction count, as the
// verifier reports it, stays under verifierShare of the limit.
func TestVerifierBudget(t *testing.T) {
	testutil.NeedRoot(t)
	spec, err := LoadXvs()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats},
	})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer coll.Close()
	re := regexp.MustCompile(`processed (\d+) insns \(limit (\d+)\)`)
	for _, name := range []string{XvsProgXvsXdp, XvsProgXvsTc} {
		m := re.FindStringSubmatch(coll.Programs[name].VerifierLog)
		if m == nil {
			t.Fatalf("%s: no instruction count in the verifier's log:\n%s", name, coll.Programs[name].VerifierLog)
		}
		n, _ := strconv.Atoi(m[1])
		limit, _ := strconv.Atoi(m[2])
		t.Logf("%s: %d of %d instructions processed (%.0f%%)", name, n, limit, 100*float64(n)/float64(limit))
		if float64(n) > verifierShare*float64(limit) {
			t.Errorf("%s: the verifier processed %d instructions, over %.0f%% of its limit %d", name, n, 100*verifierShare, limit)
		}
	}
}
