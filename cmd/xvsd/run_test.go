package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadStartChangesNothing checks the failures xvsd finds before it
// touches the machine: each exits 1 with one clear message.
func TestBadStartChangesNothing(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.rules")
	if err := os.WriteFile(bad, []byte("-A -t 10.0.0.1:80 -s rr\n\n-a -t 10.0.0.1:80 -r 172.16.0.2:80 -x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bpffs := filepath.Join(dir, "bpffs")
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "no interface", args: nil, wantErr: "no interface: give --iface"},
		{name: "stray argument", args: []string{"--iface", "eth0", "start"}, wantErr: `unexpected argument "start"`},
		{name: "missing rules file", args: []string{"--iface", "eth0", "--rules", filepath.Join(dir, "none")}, wantErr: "rules: open"},
		{name: "bad rules line", args: []string{"--iface", "eth0", "--rules", bad}, wantErr: "line 3: -x: missing argument"},
		{name: "unknown flag", args: []string{"--iface", "eth0", "--nosuch"}, wantErr: "flag provided but not defined: -nosuch"},
		{name: "bad flow cache size", args: []string{"--iface", "eth0", "--flow-cache", "1000"}, wantErr: "--flow-cache: flow cache of 1000 entries per CPU: want a power of two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"xvsd", "--bpffs", bpffs, "--socket", filepath.Join(dir, "s"), "--state", filepath.Join(dir, "state")}, tt.args...)
			if code := run(args, &out, &errb); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !strings.Contains(errb.String(), tt.wantErr) {
				t.Errorf("stderr = %q, want it to say %q", errb.String(), tt.wantErr)
			}
			if _, err := os.Stat(bpffs); !os.IsNotExist(err) {
				t.Errorf("bpffs dir created: %v", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "state")); !os.IsNotExist(err) {
				t.Errorf("state file created: %v", err)
			}
		})
	}
}
