package ctl

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"xvs/ctl/ctltest"
	"xvs/ipvsadm"
)

func TestServerClient(t *testing.T) {
	tb := NewTable(ctltest.New(), TableOptions{})
	path := filepath.Join(t.TempDir(), "xvsd.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&Server{Table: tb, Info: ipvsadm.Info{Version: "test", ConnTableSize: 42}}).Serve(ctx, l)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	if _, err := Listen(path); err == nil {
		t.Error("second Listen on a live socket succeeded")
	}

	c := &Client{Path: path}
	add := parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:80 -m")
	if _, err := c.Do(&Request{Op: OpApply, Cmds: add}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(&Request{Op: OpServices})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Info.ConnTableSize != 42 || len(resp.Services) != 1 || len(resp.Services[0].Dests) != 1 {
		t.Fatalf("services = %+v", resp)
	}
	_, err = c.Do(&Request{Op: OpApply, Cmds: add[:1]})
	var de *Error
	if !errors.As(err, &de) || !errors.Is(err, ErrServiceExists) || de.Msg != "Service already exists" {
		t.Errorf("duplicate add: %v, want Service already exists", err)
	}
	_, err = c.Do(&Request{Op: OpApply, Cmds: parseAll(t, "-A -t 10.0.0.2:80", "-D -t 10.0.0.3:80"), Lines: []int{4, 7}})
	if !errors.As(err, &de) || de.Line != 7 || !errors.Is(err, ErrNoService) {
		t.Errorf("batch: %v, want line 7 No such service", err)
	}
	_, err = (&Client{Path: filepath.Join(t.TempDir(), "none.sock")}).Do(&Request{Op: OpServices})
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("no daemon: %v, want ErrUnreachable", err)
	}
}
