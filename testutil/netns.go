package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// NetNS is a named network namespace (a bind mount under /run/netns, as
// `ip netns add` makes it) that a test created and will delete.
type NetNS struct {
	// Name is the full name, usable with `ip netns exec` and `ip -n`.
	Name string
}

// RunPrefix returns a fresh per-run prefix such as "xvst-3fa9c1", so that
// concurrent or leftover runs never collide on namespace names.
func RunPrefix(base string) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("read random prefix: %v", err)) // crypto/rand never fails on Linux
	}
	return base + "-" + hex.EncodeToString(b[:])
}

// NewNetNS creates the namespace name and registers its deletion in
// t.Cleanup right away, so that it goes even if the test fails or panics
// later. Loopback is brought up.
func NewNetNS(t testing.TB, name string) *NetNS {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("create netns %s: %v: %s", name, err, out)
	}
	n := &NetNS{Name: name}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete netns %s: %v: %s", name, err, out)
		}
		// ip netns exec bind-mounts /etc/netns/NAME/* over /etc; remove what
		// a test may have put there.
		_ = os.RemoveAll(filepath.Join("/etc/netns", name))
	})
	if err := n.IP("link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	return n
}

// Path is the bind mount that holds the namespace.
func (n *NetNS) Path() string { return filepath.Join("/run/netns", n.Name) }

// Do runs fn with the calling OS thread switched into the namespace. It uses
// a fresh goroutine locked to its thread; if switching back fails, the
// thread stays locked and dies with the goroutine rather than carrying the
// wrong namespace into the rest of the program. Sockets created inside fn
// stay in the namespace and may be used from any goroutine afterwards.
func (n *NetNS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("panic in netns %s: %v", n.Name, r)
			}
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			restored = true // nothing switched yet
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(n.Path(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			restored = true
			errc <- fmt.Errorf("open netns %s: %w", n.Name, err)
			return
		}
		err = unix.Setns(target, unix.CLONE_NEWNET)
		unix.Close(target)
		if err != nil {
			restored = true
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it exits with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave netns %s: %w", n.Name, err))
			return
		}
		restored = true
		errc <- ferr
	}()
	return <-errc
}

// Exec returns a command that runs name inside the namespace through
// `ip netns exec`. That also gives the command a private mount namespace with
// /sys remounted and /etc/netns/NAME/* bind-mounted over /etc.
func (n *NetNS) Exec(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and returns its combined output;
// the error names the command and includes the output.
func (n *NetNS) Run(name string, args ...string) (string, error) {
	out, err := n.Exec(context.Background(), name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// IP runs `ip -n NAME args...`.
func (n *NetNS) IP(args ...string) error {
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Sysctl sets a namespaced sysctl such as "net.ipv4.ip_forward" by writing
// /proc/sys from inside the namespace.
func (n *NetNS) Sysctl(key, value string) error {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	return n.Do(func() error {
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, n.Name, err)
		}
		return nil
	})
}

// Ethtool runs `ethtool -K ifname feature on|off ...` inside the namespace.
func (n *NetNS) Ethtool(ifname string, features ...string) error {
	_, err := n.Run("ethtool", append([]string{"-K", ifname}, features...)...)
	return err
}

// Veth creates a veth pair with one end, aName, in a and the other, bName,
// in b, and brings both up. The namespaces' deletion removes the pair.
func Veth(a *NetNS, aName string, b *NetNS, bName string) error {
	out, err := exec.Command("ip", "link", "add", aName, "netns", a.Name, "type", "veth",
		"peer", "name", bName, "netns", b.Name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("add veth %s/%s - %s/%s: %w: %s", a.Name, aName, b.Name, bName, err, strings.TrimSpace(string(out)))
	}
	if err := a.IP("link", "set", aName, "up"); err != nil {
		return err
	}
	return b.IP("link", "set", bName, "up")
}
