package bpf

import "testing"

// TestLoad loads both programs through the verifier.
func TestLoad(t *testing.T) {
	e := newEnv(t)
	if e.objs.XvsXdp == nil || e.objs.XvsTc == nil {
		t.Fatal("programs missing")
	}
}
