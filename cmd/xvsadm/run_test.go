package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"xvs/connsync"
	"xvs/ctl"
	"xvs/ctl/ctltest"
	"xvs/ipvsadm"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// daemon runs a control plane over an in-memory datapath on a socket of
// its own, as xvsd would serve it.
func daemon(t *testing.T) (string, *ctltest.Datapath) {
	t.Helper()
	dp := ctltest.New()
	tb := ctl.NewTable(dp, ctl.TableOptions{})
	sy := ctl.NewSync(tb, ctl.SyncConfig{Sockets: fakeSyncSockets("eth0", "sync0")})
	path := filepath.Join(t.TempDir(), "xvsd.sock")
	l, err := ctl.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := &ctl.Server{Table: tb, Sync: sy, Info: ipvsadm.Info{Version: version, ConnTableSize: 1048576},
		Counters: func() ([]ctl.Counter, error) {
			return []ctl.Counter{{Name: "fwd_in", Value: 12}, {Name: "drop_malformed", Value: 3}}, nil
		}}
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		<-done
		sy.Close()
	})
	return path, dp
}

// fakeSyncSockets stands in for the sync daemons' multicast sockets: the
// named interfaces exist (with an MTU of 1500), sends go nowhere, and a
// backup receives nothing. What the daemons do with real sockets is
// tested in ctl and in the end-to-end suite.
func fakeSyncSockets(ifaces ...string) ctl.SyncSockets {
	known := func(o connsync.Options) error {
		if slices.Contains(ifaces, o.Interface) {
			return nil
		}
		return &ctl.DeviceError{Name: o.Interface}
	}
	return ctl.SyncSockets{
		NewSender: func(o connsync.Options) (ctl.SyncSender, error) {
			if err := known(o); err != nil {
				return nil, err
			}
			return fakeSyncSocket{o.Resolve(connsync.RoleMaster, 1500)}, nil
		},
		NewReceiver: func(o connsync.Options) (ctl.SyncReceiver, error) {
			if err := known(o); err != nil {
				return nil, err
			}
			return fakeSyncSocket{o.Resolve(connsync.RoleBackup, 1500)}, nil
		},
	}
}

type fakeSyncSocket struct{ o connsync.Options }

func (f fakeSyncSocket) Send([]byte) error         { return nil }
func (f fakeSyncSocket) Options() connsync.Options { return f.o }
func (f fakeSyncSocket) Close() error              { return nil }
func (f fakeSyncSocket) Run(ctx context.Context, _ func([]connsync.Conn)) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestCLI runs xvsadm command lines in order against one daemon and
// compares exit code, stdout and stderr with testdata/<step>.golden.
func TestCLI(t *testing.T) {
	sock, _ := daemon(t)
	const vip = "202.103.106.5:80"
	steps := []struct {
		name  string
		args  string
		stdin string
	}{
		{name: "add-service", args: "-A -t " + vip + " -s rr"},
		{name: "add-server-1", args: "-a -t " + vip + " -r 172.16.0.2:80 -m"},
		{name: "add-server-2", args: "-a -t " + vip + " -r 172.16.0.3:80 -m -w 3"},
		{name: "add-udp", args: "-A -u 202.103.106.5:53 -s wlc -p"},
		{name: "add-v6", args: "-A -t [2001:db8::5]:80 -s sh -b sh-port"},
		{name: "add-v6-server", args: "-a -t [2001:db8::5]:80 -r [2001:db8:2::2]:8080 -m -x 100 -y 50"},
		{name: "list", args: "-L -n"},
		{name: "list-bundled", args: "-Ln"},
		{name: "list-stats", args: "-L -n --stats"},
		{name: "list-rate", args: "-L -n --rate"},
		{name: "list-thresholds", args: "-L -n --thresholds"},
		{name: "list-one", args: "-L -n -t " + vip},
		{name: "list-missing", args: "-L -n -t 10.9.9.9:80"},
		{name: "duplicate-service", args: "-A -t " + vip + " -s rr"},
		{name: "duplicate-server", args: "-a -t " + vip + " -r 172.16.0.2:80 -m"},
		{name: "server-no-service", args: "-a -t 10.9.9.9:80 -r 172.16.0.2:80 -m"},
		{name: "edit-missing-server", args: "-e -t " + vip + " -r 172.16.0.9:80 -m"},
		{name: "delete-missing", args: "-D -t 10.9.9.9:80"},
		{name: "direct-routing-refused", args: "-a -t " + vip + " -r 172.16.0.4:80"},
		{name: "fwmark-refused", args: "-A -f 1 -s rr"},
		{name: "not-a-command-first", args: "-n -L"},
		{name: "missing-service", args: "-A -s rr"},
		{name: "illegal-option", args: "-d -t " + vip + " -r 172.16.0.2 -m"},
		{name: "set", args: "--set 5 6 7"},
		{name: "timeout", args: "-L --timeout"},
		{name: "save", args: "-S -n"},
		{name: "edit-weight", args: "-e -t " + vip + " -r 172.16.0.3:80 -w 0"},
		{name: "delete-server", args: "-d -t " + vip + " -r 172.16.0.2:80"},
		{name: "list-after-edit", args: "-L -n"},
		{name: "restore-bad-line-3", args: "-R", stdin: "-A -t 10.1.1.1:80 -s rr\n# comment\n-a -t 10.1.1.2:80 -r 172.16.0.2 -m\n"},
		{name: "unchanged-after-bad-restore", args: "-S -n"},
		{name: "clear", args: "-C"},
		{name: "restore", args: "-R", stdin: "-A -t 202.103.106.5:80 -s rr\n-a -t 202.103.106.5:80 -r 172.16.0.2:80 -m -w 1\n-a -t 202.103.106.5:80 -r 172.16.0.3:80 -m -w 1\n"},
		{name: "save-after-restore", args: "-S -n"},
		{name: "conns-empty", args: "-L -n -c"},
		{name: "help", args: "-h"},
		{name: "counters", args: "--counters"},
		// Sync daemons (after everything else, so that the goldens above
		// stay as they were).
		{name: "daemon-none", args: "-L --daemon"},
		{name: "daemon-start-master", args: "--start-daemon master --mcast-interface sync0 --syncid 7"},
		{name: "daemon-start-master-again", args: "--start-daemon master --mcast-interface sync0"},
		{name: "daemon-start-backup", args: "--start-daemon backup --mcast-interface sync0 --syncid 7 --sync-maxlen 9000 --mcast-group 239.0.0.81 --mcast-port 8849 --mcast-ttl 2"},
		{name: "daemon-list-both", args: "-L --daemon"},
		{name: "daemon-stop-master", args: "--stop-daemon master"},
		{name: "daemon-stop-master-again", args: "--stop-daemon master"},
		{name: "daemon-unknown-interface", args: "--start-daemon master --mcast-interface nosuch0"},
		{name: "daemon-list-backup", args: "-L --daemon"},
		{name: "daemon-default-interface", args: "--start-daemon master"},
		{name: "daemon-list-default", args: "-L --daemon"},
		{name: "daemon-bad-state", args: "--start-daemon primary"},
		{name: "daemon-bad-stop-state", args: "--stop-daemon primary"},
		{name: "daemon-conflicts-with-stats", args: "-L --daemon --stats"},
		{name: "daemon-stop-all", args: "--stop-daemon master"},
		{name: "daemon-stop-backup", args: "--stop-daemon backup"},
		{name: "daemon-save-has-no-daemons", args: "-S -n"},
		{name: "daemon-restore-starts-them", args: "-R", stdin: "-A -t 10.7.7.7:80 -s rr\n--start-daemon master --mcast-interface sync0 --syncid 3\n"},
		{name: "daemon-after-restore", args: "-L --daemon"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			args := append([]string{"xvsadm", "--socket", sock}, strings.Fields(st.args)...)
			var out, errb bytes.Buffer
			code := run(args, strings.NewReader(st.stdin), &out, &errb)
			got := fmt.Sprintf("$ xvsadm %s\nexit %d\n--- stdout\n%s--- stderr\n%s", st.args, code, out.String(), errb.String())
			golden := filepath.Join("testdata", st.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if got != string(want) {
				t.Errorf("xvsadm %s:\n%s\nwant:\n%s", st.args, got, want)
			}
		})
	}
}

func TestNoDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	var out, errb bytes.Buffer
	t.Setenv("XVS_SOCKET", sock)
	code := run([]string{"xvsadm", "-L", "-n"}, strings.NewReader(""), &out, &errb)
	if code != exitInvalid {
		t.Errorf("exit %d, want %d", code, exitInvalid)
	}
	if lines := strings.Split(strings.TrimSpace(errb.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], sock) || !strings.Contains(lines[0], "is xvsd running?") {
		t.Errorf("stderr = %q, want one line naming %s", errb.String(), sock)
	}
	if out.Len() != 0 {
		t.Errorf("stdout = %q, want nothing", out.String())
	}
}
