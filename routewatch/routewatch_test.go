package routewatch

import (
	"context"
	"testing"
	"time"

	"xvs/testutil"
)

// TestWatch: each kind of change in the watched namespace is reported; a
// change in another namespace is not; Run ends with its context.
func TestWatch(t *testing.T) {
	testutil.NeedRoot(t)
	prefix := testutil.RunPrefix("rw")
	ns := testutil.NewNetNS(t, prefix+"a")
	other := testutil.NewNetNS(t, prefix+"b")
	var w *Watcher
	if err := ns.Do(func() (err error) { w, err = Open(); return err }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan struct{}, 1024)
	done := make(chan error, 1)
	go func() {
		done <- w.Run(ctx, func() error { changes <- struct{}{}; return nil })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not end with its context")
		}
	})
	drain := func() {
		for {
			select {
			case <-changes:
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	}
	steps := []struct {
		name string
		ns   *testutil.NetNS
		args []string
		want bool
	}{
		{"link", ns, []string{"link", "add", "d0", "type", "veth", "peer", "name", "d0p"}, true},
		{"link up", ns, []string{"link", "set", "d0", "up"}, true},
		{"address", ns, []string{"addr", "add", "192.0.2.1/24", "dev", "d0"}, true},
		{"route", ns, []string{"route", "add", "198.51.100.0/24", "via", "192.0.2.2"}, true},
		{"ipv6 route", ns, []string{"-6", "route", "add", "2001:db8:1::/64", "dev", "d0"}, true},
		{"neighbour", ns, []string{"neigh", "add", "192.0.2.2", "lladdr", "02:00:00:00:00:09", "dev", "d0"}, true},
		{"neighbour changed", ns, []string{"neigh", "replace", "192.0.2.2", "lladdr", "02:00:00:00:00:0a", "dev", "d0"}, true},
		{"rule", ns, []string{"rule", "add", "from", "192.0.2.0/24", "table", "100"}, true},
		{"route deleted", ns, []string{"route", "del", "198.51.100.0/24"}, true},
		{"other namespace", other, []string{"link", "add", "d1", "type", "veth", "peer", "name", "d1p"}, false},
	}
	for _, s := range steps {
		drain()
		if err := s.ns.IP(s.args...); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		wait := 2 * time.Second
		if !s.want {
			wait = 300 * time.Millisecond
		}
		select {
		case <-changes:
			if !s.want {
				t.Errorf("%s: reported as a change", s.name)
			}
		case <-time.After(wait):
			if s.want {
				t.Errorf("%s: no change reported within %v", s.name, wait)
			}
		}
	}
}
