package loader

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func TestLoadErrorVerifier(t *testing.T) {
	var log []string
	for i := range 50 {
		log = append(log, fmt.Sprintf("%d: insn %d", i, i))
	}
	ve := &ebpf.VerifierError{Cause: unix.EACCES, Log: log}
	err := loadError(fmt.Errorf("program xvs_xdp: %w", ve))
	msg := err.Error()
	if !errors.Is(err, unix.EACCES) {
		t.Errorf("cause lost: %v", err)
	}
	if !strings.Contains(msg, "program xvs_xdp") || !strings.Contains(msg, "(30 line(s) omitted)") {
		t.Errorf("message lacks context or omission count:\n%s", msg)
	}
	if !strings.Contains(msg, "\t30: insn 30") || !strings.Contains(msg, "\t49: insn 49") || strings.Contains(msg, "\t29: insn 29") {
		t.Errorf("message does not hold exactly the last 20 lines:\n%s", msg)
	}

	perm := loadError(fmt.Errorf("create map: %w", unix.EPERM))
	if !errors.Is(perm, unix.EPERM) || !strings.Contains(perm.Error(), "CAP_BPF") {
		t.Errorf("permission error: %v", perm)
	}
}
