package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"xvs/testutil"
)

// daemon is one xvsd running in a topology's director namespace, with its
// own control socket, bpffs and punt tap, so that cases never share state.
type daemon struct {
	t     *testing.T
	tp    *testutil.Topo
	mode  testutil.Mode
	dir   string
	sock  string
	bpffs string
	tap   string
	log   string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result, valid after done closes
}

// startDaemon starts xvsd on both director interfaces and waits until
// `xvsadm -L -n` answers. Cleanup stops it, runs `xvsd down` and removes the
// pins; on failure the topology dump includes xvsadm's view and the log.
func startDaemon(t *testing.T, tp *testutil.Topo, mode testutil.Mode) *daemon {
	t.Helper()
	needBinaries(t)
	dir, err := os.MkdirTemp("", "xvst-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A failure while stopping shows here, with the log still on disk.
		if t.Failed() {
			tp.Dump()
		}
		os.RemoveAll(dir)
	})
	d := &daemon{
		t: t, tp: tp, mode: mode, dir: dir,
		sock:  filepath.Join(dir, "xvsd.sock"),
		bpffs: filepath.Join(dir, "bpffs"),
		// The tap lives in the director namespace; the prefix's random
		// part still makes it unique per case, as the brief asks.
		tap: "xvs" + strings.TrimPrefix(tp.Prefix, "xvst-"),
		log: filepath.Join(dir, "xvsd.log"),
	}
	if err := os.Mkdir(d.bpffs, 0o700); err != nil {
		t.Fatal(err)
	}
	// `ip netns exec` remounts /sys privately, so pins must live on a
	// bpffs mounted outside /sys for a restarted xvsd to find them.
	if out, err := exec.Command("mount", "-t", "bpf", "bpf", d.bpffs).CombinedOutput(); err != nil {
		t.Fatalf("mount bpffs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// `xvsd down` may already have unmounted and removed it.
		if !mounted(d.bpffs) {
			return
		}
		if out, err := exec.Command("umount", d.bpffs).CombinedOutput(); err != nil {
			t.Errorf("umount bpffs: %v: %s", err, out)
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		args := append([]string{"down", "--bpffs", d.bpffs, "--tap", d.tap}, d.stateArgs()...)
		out, err := tp.Director.Exec(ctx, bins.xvsd, args...).CombinedOutput()
		if err != nil {
			t.Errorf("xvsd down: %v: %s", err, out)
		}
	})
	tp.AddDiag(d.diag)
	d.start()
	// Registered last, so it runs first: dump while everything is up.
	t.Cleanup(func() {
		if t.Failed() {
			tp.Dump()
		}
		d.stop()
	})
	d.waitReady()
	return d
}

func (d *daemon) args() []string {
	return append([]string{
		"--iface", testutil.DirectorExtIf, "--iface", testutil.DirectorIntIf,
		"--mode", string(d.mode), "--socket", d.sock, "--bpffs", d.bpffs, "--tap", d.tap,
		// Inside the director namespace only; read by diag.
		"--metrics", metricsAddr,
	}, d.stateArgs()...)
}

// stateArgs keeps the daemon's saved table private to the case.
func (d *daemon) stateArgs() []string {
	if !bins.stateFlag {
		return nil
	}
	return []string{"--state", filepath.Join(d.dir, "state.json")}
}

func (d *daemon) start() {
	d.t.Helper()
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== start %s %s\n", bins.xvsd, strings.Join(d.args(), " "))
	// `ip netns exec` execs the command in place, so the PID is xvsd's.
	cmd := d.tp.Director.Exec(context.Background(), bins.xvsd, d.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start xvsd: %v", err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		d.err = cmd.Wait()
		close(done)
	}(d.done)
}

func (d *daemon) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// waitReady polls `xvsadm -L -n` (bounded) until the daemon answers.
func (d *daemon) waitReady() {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if !d.alive() {
			d.t.Fatalf("xvsd exited during start-up: %v\n%s", d.err, tail(d.logText(), 8))
		}
		out, errOut, code := d.adm("", "-L", "-n")
		if code == 0 {
			return
		}
		last = fmt.Sprintf("exit %d: %s%s", code, out, errOut)
		time.Sleep(50 * time.Millisecond)
	}
	d.t.Fatalf("xvsd not ready after 15s; last xvsadm -L -n: %s\n%s", last, tail(d.logText(), 8))
}

// stop sends SIGTERM and, if xvsd does not exit within 5 s, SIGKILL.
// Exiting on a signal is asserted by TestDaemonStopsOnSignal; here a slow
// exit is only logged, so that every case reports on its own subject.
func (d *daemon) stop() {
	if d.cmd == nil || !d.alive() {
		return
	}
	if !d.signal(syscall.SIGTERM, 5*time.Second) {
		d.t.Logf("xvsd (pid %d) still running 5s after SIGTERM; killing it", d.cmd.Process.Pid)
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// signal sends sig and reports whether xvsd exited within wait.
func (d *daemon) signal(sig syscall.Signal, wait time.Duration) bool {
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
		return true
	case <-time.After(wait):
		return false
	}
}

// kill9 kills xvsd with SIGKILL, as a crash would, and waits for it.
func (d *daemon) kill9() {
	d.t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		d.t.Fatalf("kill -9 xvsd: %v", err)
	}
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.t.Fatal("xvsd still running 10s after SIGKILL")
	}
}

// restart starts xvsd again with the same arguments.
func (d *daemon) restart() {
	d.t.Helper()
	if d.alive() {
		d.t.Fatal("restart: xvsd still running")
	}
	d.start()
	d.waitReady()
}

// adm runs xvsadm with args inside the director namespace (so that names
// resolve through the namespace's /etc/netns hosts file) and returns stdout,
// stderr and the exit code (-1 if it could not run).
func (d *daemon) adm(stdin string, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := d.tp.Director.Exec(ctx, bins.xvsadm, args...)
	cmd.Env = append(os.Environ(), "XVS_SOCKET="+d.sock)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else {
			code = -1
			stderr.WriteString(err.Error())
		}
	}
	return stdout.String(), stderr.String(), code
}

// must runs xvsadm and fails the test unless it exits 0.
func (d *daemon) must(args ...string) string {
	d.t.Helper()
	out, errOut, code := d.adm("", args...)
	if code != 0 {
		d.t.Fatalf("xvsadm %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// mustIn is must with standard input (for -R).
func (d *daemon) mustIn(stdin string, args ...string) string {
	d.t.Helper()
	out, errOut, code := d.adm(stdin, args...)
	if code != 0 {
		d.t.Fatalf("xvsadm %s < input: exit %d\ninput:\n%s\nstdout: %s\nstderr: %s",
			strings.Join(args, " "), code, stdin, out, errOut)
	}
	return out
}

func (d *daemon) logText() string {
	b, err := os.ReadFile(d.log)
	if err != nil {
		return fmt.Sprintf("(no xvsd log: %v)", err)
	}
	return "--- xvsd log ---\n" + tail(string(b), 200)
}

// diag is the daemon's part of a failure dump.
func (d *daemon) diag() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- xvsd (mode %s, socket %s, bpffs %s, tap %s, running %v) ---\n",
		d.mode, d.sock, d.bpffs, d.tap, d.cmd != nil && d.alive())
	for _, args := range [][]string{
		{"-L", "-n"}, {"-L", "-n", "--stats"}, {"-L", "-n", "-c"}, {"-L", "--timeout"},
	} {
		out, errOut, code := d.adm("", args...)
		fmt.Fprintf(&b, "$ xvsadm %s (exit %d)\n%s%s", strings.Join(args, " "), code, tail(out, 60), errOut)
	}
	b.WriteString(d.datapathCounters())
	for _, ifname := range []string{testutil.DirectorExtIf, testutil.DirectorIntIf, d.tap} {
		out, _ := d.tp.Director.Run("tc", "-s", "filter", "show", "dev", ifname, "ingress")
		fmt.Fprintf(&b, "$ tc -s filter show dev %s ingress\n%s", ifname, out)
	}
	b.WriteString(d.logText())
	return b.String()
}

const metricsAddr = "127.0.0.1:9472"

// datapathCounters returns the non-zero xvs_datapath_events_total counters
// (passes, drops and punts by reason) from the daemon's metrics endpoint.
func (d *daemon) datapathCounters() string {
	if d.cmd == nil || !d.alive() {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body, err := testutil.Get(ctx, testutil.NewHTTPClient(d.tp.Director, netip.Addr{}), "http://"+metricsAddr+"/metrics")
	if err != nil {
		return fmt.Sprintf("(metrics: %v)\n", err)
	}
	var b strings.Builder
	b.WriteString("$ curl http://" + metricsAddr + "/metrics | grep xvs_datapath_events_total (non-zero)\n")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "xvs_datapath_events_total{") && !strings.HasSuffix(line, " 0") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// tail keeps the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return s
	}
	return fmt.Sprintf("(%d lines cut)\n", len(lines)-n) + strings.Join(lines[len(lines)-n:], "")
}

// mounted says whether dir is a mount point, from /proc/self/mounts.
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return true // let umount decide
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}
