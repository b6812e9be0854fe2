package connsync

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"xvs/testutil"
)

// syncPair builds
//
//	netns <prefix>-ma  sync0 ──veth── sync0  netns <prefix>-bk
//	10.99.0.1/24, fd99::1/64          10.99.0.2/24, fd99::2/64
//
// with DAD off so that IPv6 addresses are usable at once.
func syncPair(t *testing.T) (master, backup *testutil.NetNS) {
	t.Helper()
	prefix := testutil.RunPrefix("xvst")
	master = testutil.NewNetNS(t, prefix+"-ma")
	backup = testutil.NewNetNS(t, prefix+"-bk")
	for _, n := range []*testutil.NetNS{master, backup} {
		if err := n.Sysctl("net.ipv6.conf.default.accept_dad", "0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := testutil.Veth(master, "sync0", backup, "sync0"); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		n    *testutil.NetNS
		args []string
	}{
		{master, []string{"addr", "add", "10.99.0.1/24", "dev", "sync0"}},
		{backup, []string{"addr", "add", "10.99.0.2/24", "dev", "sync0"}},
		{master, []string{"addr", "add", "fd99::1/64", "dev", "sync0", "nodad"}},
		{backup, []string{"addr", "add", "fd99::2/64", "dev", "sync0", "nodad"}},
	} {
		if err := step.n.IP(step.args...); err != nil {
			t.Fatal(err)
		}
	}
	return master, backup
}

// connID orders conns for comparison.
func connID(c Conn) string {
	return fmt.Sprintf("%d %v %d %v", c.Proto, c.Client, c.Flags&FlagTemplate, c.VIP)
}

func TestSenderToReceiver(t *testing.T) {
	testutil.NeedRoot(t)
	ma, bk := syncPair(t)
	tests := []struct {
		name  string
		group netip.Addr
	}{
		{name: "ipv4 default group"},
		{name: "ipv6 link-local group", group: netip.MustParseAddr("ff02::1:81")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const syncid = 7
			var r *Receiver
			if err := bk.Do(func() (err error) {
				r, err = NewReceiver(Options{Interface: "sync0", SyncID: syncid, Group: tt.group})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var s, stranger *Sender
			if err := ma.Do(func() (err error) {
				if s, err = NewSender(Options{Interface: "sync0", SyncID: syncid, Group: tt.group}); err != nil {
					return err
				}
				stranger, err = NewSender(Options{Interface: "sync0", SyncID: syncid + 1, Group: tt.group})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			defer stranger.Close()
			if !tt.group.IsValid() {
				if got := s.LocalAddr().Addr(); got != netip.MustParseAddr("10.99.0.1") {
					t.Errorf("master bound to %v, want the interface's address 10.99.0.1", got)
				}
			}
			if got := s.Options(); got.Port != DefaultPort || got.TTL != 1 || got.MaxLen != DefaultMaxLen(RoleMaster, 1500, got.Group) {
				t.Errorf("sender options %+v", got)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var (
				mu       sync.Mutex
				received []Conn
				batches  int
				all      = make(chan struct{})
			)
			want := manyConns(300)
			runErr := make(chan error, 2)
			go func() {
				runErr <- r.Run(ctx, func(c []Conn) {
					mu.Lock()
					defer mu.Unlock()
					received = append(received, c...)
					batches++
					if len(received) == len(want) {
						close(all)
					}
				})
			}()

			// Rejected datagrams first: another syncid, and garbage.
			if err := stranger.Send(mustEncode(t, syncid+1, want[:3])[0]); err != nil {
				t.Fatal(err)
			}
			if err := s.Send([]byte{0, syncid, 0, 9, 1}); err != nil {
				t.Fatal(err)
			}

			m := NewMaster(MasterConfig{SyncID: syncid, MaxLen: s.Options().MaxLen, FlushAfter: 50 * time.Millisecond, Tick: 10 * time.Millisecond})
			go func() { runErr <- m.Run(ctx, s.Send) }()
			if n := m.Observe(want, time.Now()); n != len(want) {
				t.Fatalf("master queued %d of %d", n, len(want))
			}
			select {
			case <-all:
			case <-ctx.Done():
				mu.Lock()
				t.Fatalf("received %d of %d conns before the deadline", len(received), len(want))
			}
			cancel()
			for range 2 {
				if err := <-runErr; err != context.Canceled {
					t.Errorf("run: %v", err)
				}
			}

			sortByID := func(cs []Conn) {
				slices.SortFunc(cs, func(a, b Conn) int { return strings.Compare(connID(a), connID(b)) })
			}
			got := slices.Clone(received)
			exp := slices.Clone(want)
			sortByID(got)
			sortByID(exp)
			if len(got) != len(exp) {
				t.Fatalf("received %d conns, want %d", len(got), len(exp))
			}
			for i := range exp {
				if !reflect.DeepEqual(got[i], exp[i]) {
					t.Fatalf("conn %d:\n got %+v\nwant %+v", i, got[i], exp[i])
				}
			}
			if batches < 2 {
				t.Errorf("300 conns arrived in %d message(s), want several", batches)
			}
			st := r.Stats()
			if st.Conns != uint64(len(want)) || st.Datagrams != uint64(batches) || st.Dropped["syncid"] != 1 || st.Dropped["size"] != 1 {
				t.Errorf("receiver stats %+v", st)
			}
			if ms := m.Stats(); ms.Messages != uint64(batches) || ms.SendErrors != 0 || ms.Deferred != 0 {
				t.Errorf("master stats %+v (backup got %d messages)", ms, batches)
			}
		})
	}
}

func mustEncode(t *testing.T, syncid uint8, conns []Conn) [][]byte {
	t.Helper()
	msgs, err := Encode(syncid, conns, 1472)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestSocketErrors(t *testing.T) {
	testutil.NeedRoot(t)
	n := testutil.NewNetNS(t, testutil.RunPrefix("xvst")+"-solo")
	err := n.Do(func() error {
		if _, err := NewSender(Options{Interface: "nosuch0"}); err == nil {
			return fmt.Errorf("sender on a missing interface accepted")
		}
		if _, err := NewReceiver(Options{Interface: "nosuch0"}); err == nil {
			return fmt.Errorf("receiver on a missing interface accepted")
		}
		unicast := netip.MustParseAddr("10.0.0.1")
		if _, err := NewSender(Options{Interface: "lo", Group: unicast}); err == nil {
			return fmt.Errorf("sender to a unicast group accepted")
		}
		if _, err := NewReceiver(Options{Interface: "lo", Group: unicast}); err == nil {
			return fmt.Errorf("receiver of a unicast group accepted")
		}
		// Like the kernel, a master on an interface without a global IPv4
		// address starts, unbound.
		s, err := NewSender(Options{Interface: "lo"})
		if err != nil {
			return fmt.Errorf("sender on lo: %w", err)
		}
		return s.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}
