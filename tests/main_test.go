package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"xvs/testutil"
)

// binaries are built once per `go test` run, into a temporary directory.
type binaries struct {
	xvsd, xvsadm string
	err          error // why the build failed; every root test then fails with it
	// stateFlag: xvsd takes --state FILE (its table across restarts,
	// default /run/xvs/state.json); each case then gets its own file.
	stateFlag bool
}

var bins binaries

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run() // every test skips; nothing to build
	}
	dir, err := os.MkdirTemp("", "xvst-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins = build(dir)
	return m.Run()
}

func build(dir string) binaries {
	b := binaries{xvsd: filepath.Join(dir, "xvsd"), xvsadm: filepath.Join(dir, "xvsadm")}
	for _, t := range []struct{ out, pkg string }{{b.xvsd, "./cmd/xvsd"}, {b.xvsadm, "./cmd/xvsadm"}} {
		cmd := exec.Command("go", "build", "-o", t.out, t.pkg)
		cmd.Dir = ".." // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", t.pkg, err, out)
			return b
		}
	}
	out, _ := exec.Command(b.xvsd, "--help").CombinedOutput()
	b.stateFlag = strings.Contains(string(out), "--state")
	return b
}

// needBinaries skips without root and fails when the build failed.
func needBinaries(t *testing.T) {
	t.Helper()
	testutil.NeedRoot(t)
	if bins.err != nil {
		t.Fatalf("binaries not built: %v", bins.err)
	}
}
