// Package testutil holds what tests share: privilege checks, packet
// builders for datapath tests and network-namespace topologies.
package testutil

import (
	"os"
	"testing"
)

// NeedRoot skips t unless it runs as root, which BPF program runs and
// namespace topologies need.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: CAP_BPF, CAP_NET_ADMIN")
	}
}
