package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"xvs/bpf"
	"xvs/connsync"
	"xvs/ctl"
	"xvs/ipvsadm"
	"xvs/loader"
	"xvs/maps"
	"xvs/routewatch"
)

const version = "0.1.0"

// Defaults of the daemon's flags.
const (
	defaultBPFFS = "/sys/fs/bpf/xvs"
	defaultState = "/run/xvs/state.json"
	defaultTap   = "xvs0"
	// heartbeat refreshes the datapath's liveness stamp; first packets are
	// dropped (and clients retry) when it is older than staleAfter.
	heartbeat  = 250 * time.Millisecond
	staleAfter = 2 * time.Second
	expiryTick = time.Second
)

func run(args []string, stdout, stderr io.Writer) int {
	app := &cli.App{
		Name:      "xvsd",
		Usage:     "the xvs director: an XDP/TC LVS-NAT load balancer",
		Version:   version,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "iface", Aliases: []string{"i"}, Usage: "attach to `IFACE` (repeat for each external and internal interface)"},
			&cli.StringFlag{Name: "mode", Value: "auto", Usage: "attach mode: auto (native XDP on NICs that support it, tc on virtual devices), xdp, xdpgeneric or tc"},
			&cli.StringFlag{Name: "rules", Usage: "load rules in ipvsadm-save format from `FILE` at start (ignored when a restart re-adopts a table)"},
			&cli.StringFlag{Name: "socket", Value: ctl.DefaultSocket, Usage: "control socket `PATH` for xvsadm"},
			&cli.StringFlag{Name: "bpffs", Value: defaultBPFFS, Usage: "`DIR` on a bpffs for pinned maps and links (mounted if needed)"},
			&cli.StringFlag{Name: "state", Value: defaultState, Usage: "`FILE` keeping the service table across restarts"},
			&cli.UintFlag{Name: "conn-max", Value: 1048576, Usage: "size of the connection table (entries)"},
			&cli.IntFlag{Name: "sweep-max-conns", Value: ctl.DefaultSweepMaxConns, Usage: "expire idle connections in the kernel (a third of the CPU of a walk from the daemon) while the tables hold at most this many; a kernel sweep holds its CPU for its whole run, about 0.15 µs per connection looked at on a small VM, and removes at most 1024 (negative: always walk)"},
			&cli.UintFlag{Name: "flow-cache", Value: bpf.FlowsPerCPU, Usage: "entries per CPU of the flow cache, which answers established flows' packets without the connection table (64 bytes each, a power of two; 0: off)"},
			&cli.UintFlag{Name: "half-open-max", Usage: "size of the table of connections not yet answered by their real server (SYN received, or UDP without a reply); allocated as it fills", DefaultText: "conn-max/4"},
			&cli.StringFlag{Name: "metrics", Usage: "serve Prometheus metrics on `ADDR` (e.g. :9472); off when empty"},
			&cli.StringFlag{Name: "tap", Value: defaultTap, Usage: "`NAME` of the punt device for first packets"},
			&cli.IntFlag{Name: "workers", Value: 2, Usage: "first-packet workers (punt device queues)"},
			&cli.Uint64Flag{Name: "first-packet-rate", Value: 25000, Usage: "global budget of first packets (new connections) per second, scheduled in the datapath or sent to the workers; the datapath drops the excess (0 = unlimited). Keep it well below what the workers can do (each first packet sent to them costs the daemon about 17 µs of CPU on a small VM): what it admits, it takes from the CPUs that forward established flows"},
			&cli.BoolFlag{Name: "datapath-sched", Value: true, Usage: "let the datapath schedule the first packets of rr, wrr, sh, dh and mh services without persistence or thresholds itself, from the scheduler's picks (a cycle of them, or one per hash bucket) (false: every first packet goes to the workers)"},
			&cli.Uint64Flag{Name: "first-packet-burst", Value: 2500, Usage: "burst of the global first-packet budget"},
			&cli.Uint64Flag{Name: "service-first-packet-rate", Value: 0, Usage: "per virtual service budget of first packets per second (0 = only the global budget)"},
			&cli.Uint64Flag{Name: "service-first-packet-burst", Value: 0, Usage: "burst of the per-service budget (0 = one second's worth)"},
			&cli.BoolFlag{Name: "debug", Usage: "log at debug level"},
			// Connection sync daemons, as xvsadm --start-daemon starts
			// them; runtime state, so that a unit file can start them.
			&cli.StringFlag{Name: "sync-master", Usage: "run the connection sync master, sending on `IFACE` (xvsadm --start-daemon master)"},
			&cli.StringFlag{Name: "sync-backup", Usage: "run the connection sync backup, receiving on `IFACE` (xvsadm --start-daemon backup)"},
			&cli.UintFlag{Name: "syncid", Usage: "sync daemons' syncid `N` (0-255; a backup with 0 accepts every syncid)"},
			&cli.StringFlag{Name: "sync-group", Usage: "sync multicast group `ADDR`", DefaultText: "224.0.0.81"},
			&cli.UintFlag{Name: "sync-port", Usage: "sync UDP `PORT`", DefaultText: "8848"},
			&cli.UintFlag{Name: "sync-ttl", Usage: "sync multicast `TTL`", DefaultText: "1"},
			&cli.UintFlag{Name: "sync-maxlen", Usage: "largest sync message, `BYTES` without IP/UDP headers", DefaultText: "from the MTU"},
		},
		Action: daemon,
		Commands: []*cli.Command{{
			Name:  "down",
			Usage: "detach the datapath and remove everything xvsd created (pins, punt device, state); connections are dropped",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "bpffs", Value: defaultBPFFS, Usage: "`DIR` of the pins"},
				&cli.StringFlag{Name: "tap", Value: defaultTap, Usage: "`NAME` of the punt device"},
				&cli.StringFlag{Name: "state", Value: defaultState, Usage: "state `FILE`"},
			},
			Action: down,
		}},
	}
	if err := app.Run(args); err != nil {
		fmt.Fprintln(stderr, "xvsd:", err)
		return 1
	}
	return 0
}

func down(c *cli.Context) error {
	if err := loader.Down(c.String("bpffs"), c.String("tap")); err != nil {
		return err
	}
	if err := os.Remove(c.String("state")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove state: %w", err)
	}
	return nil
}

func daemon(c *cli.Context) error {
	level := slog.LevelInfo
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
	ifaces := c.StringSlice("iface")
	if len(ifaces) == 0 {
		return errors.New("no interface: give --iface for the external and internal interfaces")
	}
	if c.Args().Len() > 0 {
		return fmt.Errorf("unexpected argument %q", c.Args().First())
	}
	syncOpts, err := syncOptions(c)
	if err != nil {
		return err
	}
	if err := bpf.CheckFlows(flowCache(c.Uint("flow-cache"))); err != nil {
		return fmt.Errorf("--flow-cache: %w", err)
	}
	// Parse the rules before touching anything, so that a bad file leaves
	// the machine as it was.
	var rules []ipvsadm.Command
	if path := c.String("rules"); path != "" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("rules: %w", err)
		}
		rules, err = ipvsadm.ParseRestore(f, ipvsadm.SystemResolver())
		f.Close()
		if err != nil {
			return fmt.Errorf("rules %s: %w", path, err)
		}
	}
	rules, ruleDaemons := splitDaemons(rules)

	dp, err := loader.Load(loader.Options{
		Dir:         c.String("bpffs"),
		ConnMax:     uint32(c.Uint("conn-max")),
		HalfOpenMax: uint32(c.Uint("half-open-max")),
		FlowCache:   flowCache(c.Uint("flow-cache")),
		Ifaces:      ifaces,
		Mode:        loader.Mode(c.String("mode")),
		TapName:     c.String("tap"),
		TapQueues:   c.Int("workers"),
		Logger:      log,
	})
	if err != nil {
		return err
	}
	defer dp.Close()
	m, err := maps.New(&dp.Objs.XvsMaps)
	if err != nil {
		return err
	}
	defer m.Close()

	statePath := c.String("state")
	table := ctl.NewTable(m, ctl.TableOptions{
		OnChange: func(sn *ctl.Snapshot) {
			if err := ctl.WriteSnapshotFile(statePath, sn); err != nil {
				log.Error("save state", slog.Any("err", err))
			}
		},
		Budget:        ctl.Budget{Rate: c.Uint64("service-first-packet-rate"), Burst: c.Uint64("service-first-packet-burst")},
		SweepMaxConns: c.Int("sweep-max-conns"),
		NoRings:       !c.Bool("datapath-sched"),
	})
	if err := m.SetBudget(0, true, c.Uint64("first-packet-rate"), c.Uint64("first-packet-burst")); err != nil {
		return err
	}
	if err := setup(log, dp, table, statePath, rules); err != nil {
		if !dp.Adopted {
			// Nothing of a previous run to keep: leave the machine as found.
			dp.Close()
			if derr := loader.Down(c.String("bpffs"), c.String("tap")); derr != nil {
				log.Error("undo after failed start", slog.Any("err", derr))
			}
		}
		return err
	}
	if err := m.SetPunt(uint32(dp.Tap.Ifindex()), staleAfter); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	syncs := ctl.NewSync(table, ctl.SyncConfig{OnError: func(role connsync.Role, err error) {
		log.Error("sync daemon stopped", slog.String("state", role.String()), slog.Any("err", err))
	}})
	defer syncs.Close()
	for _, d := range []struct {
		role  connsync.Role
		iface string
	}{{connsync.RoleMaster, c.String("sync-master")}, {connsync.RoleBackup, c.String("sync-backup")}} {
		if d.iface == "" {
			continue
		}
		o := syncOpts
		o.Interface = d.iface
		if err := syncs.Start(d.role, o); err != nil {
			return fmt.Errorf("sync %s: %s", d.role, ctl.Message(err))
		}
		log.Info("sync daemon started", slog.String("state", d.role.String()), slog.String("iface", d.iface))
	}
	for _, cmd := range ruleDaemons {
		role, o, err := ctl.DaemonOptions(*cmd.Daemon)
		if err == nil && cmd.Kind == ipvsadm.CmdStopDaemon {
			err = syncs.Stop(role)
		} else if err == nil {
			err = syncs.Start(role, o)
		}
		if err != nil {
			return fmt.Errorf("rules line %d: %s", cmd.Line, ctl.Message(err))
		}
	}

	var punts ctl.PuntStats
	counters := func() ([]ctl.Counter, error) {
		cs, err := datapathCounters(m, &punts)
		return append(cs, syncs.Counters()...), err
	}
	l, err := ctl.Listen(c.String("socket"))
	if err != nil {
		return err
	}
	srv := &ctl.Server{
		Table:    table,
		Info:     ipvsadm.Info{Version: version, ConnTableSize: int(c.Uint("conn-max"))},
		Counters: counters,
		Sync:     syncs,
		Logger:   log,
	}

	routes, err := routewatch.Open()
	if err != nil {
		return err
	}
	defer routes.Close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx, l) })
	icmp, err := loader.NewUnreachable()
	if err != nil {
		return err
	}
	defer icmp.Close()
	g.Go(func() error { return table.RunPunt(ctx, dp.Tap, &punts, icmp) })
	g.Go(func() error {
		table.RunExpiry(ctx, expiryTick, func(err error) { log.Warn("expire connections", slog.Any("err", err)) })
		return nil
	})
	g.Go(func() error {
		table.RunEstimator(ctx, func(err error) { log.Warn("estimate rates", slog.Any("err", err)) })
		return nil
	})
	g.Go(func() error { return beat(ctx, m) })
	// Next hops the datapath cached while no daemon watched may be stale.
	if err := m.BumpRouteGen(); err != nil {
		return err
	}
	g.Go(func() error { return routes.Run(ctx, m.BumpRouteGen) })
	g.Go(func() error {
		<-ctx.Done()
		syncs.Close()
		return nil
	})
	if addr := c.String("metrics"); addr != "" {
		g.Go(func() error { return serveMetrics(ctx, addr, table, counters) })
	}
	log.Info("xvsd running", slog.Any("ifaces", ifaces), slog.String("socket", c.String("socket")),
		slog.Bool("adopted", dp.Adopted), slog.String("tap", c.String("tap")))
	err = g.Wait()
	log.Info("xvsd stopped; the datapath stays attached (xvsd down removes it)")
	return err
}

// splitDaemons takes the sync daemon lines (--start-daemon, --stop-daemon)
// out of a rules file: they are runtime state, not the table's, and run
// after the table is loaded, as with xvsadm -R.
func splitDaemons(cmds []ipvsadm.Command) (table, daemons []ipvsadm.Command) {
	for _, c := range cmds {
		if c.Kind == ipvsadm.CmdStartDaemon || c.Kind == ipvsadm.CmdStopDaemon {
			daemons = append(daemons, c)
		} else {
			table = append(table, c)
		}
	}
	return table, daemons
}

// syncOptions are the sync daemons' options from the flags (the interface
// is per daemon).
func syncOptions(c *cli.Context) (connsync.Options, error) {
	id, port, ttl, maxlen := c.Uint("syncid"), c.Uint("sync-port"), c.Uint("sync-ttl"), c.Uint("sync-maxlen")
	switch {
	case id > 255:
		return connsync.Options{}, fmt.Errorf("--syncid %d: want 0-255", id)
	case port > 65535:
		return connsync.Options{}, fmt.Errorf("--sync-port %d: want 1-65535", port)
	case ttl > 255:
		return connsync.Options{}, fmt.Errorf("--sync-ttl %d: want 1-255", ttl)
	case maxlen > 65507:
		return connsync.Options{}, fmt.Errorf("--sync-maxlen %d: want 1-65507", maxlen)
	}
	// Checked before anything is loaded, so that a typo leaves the
	// machine as it was.
	for _, f := range []string{"sync-master", "sync-backup"} {
		if name := c.String(f); name != "" {
			if _, err := net.InterfaceByName(name); err != nil {
				return connsync.Options{}, fmt.Errorf("--%s %s: no such interface", f, name)
			}
		}
	}
	o := connsync.Options{SyncID: uint8(id), Port: uint16(port), TTL: uint8(ttl), MaxLen: int(maxlen)}
	if g := c.String("sync-group"); g != "" {
		a, err := netip.ParseAddr(g)
		if err != nil || !a.IsMulticast() {
			return o, fmt.Errorf("--sync-group %q: want a multicast address", g)
		}
		o.Group = a
	}
	return o, nil
}

// setup fills the table: from the state file when the datapath was
// re-adopted (a restart: connections and ids must match), else from the
// rules file.
func setup(log *slog.Logger, dp *loader.Datapath, table *ctl.Table, statePath string, rules []ipvsadm.Command) error {
	if dp.Adopted {
		sn, err := ctl.ReadSnapshotFile(statePath)
		if err != nil {
			return err
		}
		if sn != nil {
			if err := table.Adopt(sn); err != nil {
				return err
			}
			log.Info("re-adopted pinned datapath and service table", slog.Int("services", len(sn.Services)))
			if len(rules) > 0 {
				log.Warn("--rules ignored: the running table was re-adopted (use xvsadm -R to change it)")
			}
			return nil
		}
		log.Warn("pinned datapath found without a state file: starting with an empty table")
	}
	if len(rules) > 0 {
		lines := make([]int, len(rules))
		for i, c := range rules {
			lines[i] = c.Line
		}
		if err := table.Apply(rules, lines); err != nil {
			return fmt.Errorf("rules: %s", ctl.Message(err))
		}
		log.Info("rules loaded", slog.Int("commands", len(rules)))
	}
	return nil
}

func beat(ctx context.Context, m *maps.Maps) error {
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		if err := m.Heartbeat(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func datapathCounters(m *maps.Maps, p *ctl.PuntStats) ([]ctl.Counter, error) {
	rs, err := m.Reasons()
	if err != nil {
		return nil, err
	}
	evs, err := m.Events()
	if err != nil {
		return nil, err
	}
	var out []ctl.Counter
	for r, v := range rs {
		out = append(out, ctl.Counter{Name: maps.ReasonName(bpf.XvsReason(r)), Value: v})
	}
	for ev, v := range evs {
		out = append(out, ctl.Counter{Name: maps.EventName(bpf.XvsEvent(ev)), Value: v})
	}
	return append(out,
		ctl.Counter{Name: "punt_scheduled", Value: p.Scheduled.Load()},
		ctl.Counter{Name: "punt_existing", Value: p.Existing.Load()},
		ctl.Counter{Name: "punt_no_dest", Value: p.NoDest.Load()},
		ctl.Counter{Name: "punt_no_service", Value: p.NoService.Load()},
		ctl.Counter{Name: "punt_malformed", Value: p.Malformed.Load()},
		ctl.Counter{Name: "punt_errors", Value: p.Errors.Load()},
		ctl.Counter{Name: "punt_reused", Value: p.Reused.Load()},
		ctl.Counter{Name: "half_open_evicted", Value: m.HalfOpenEvicted()},
		ctl.Counter{Name: "punt_icmp_sent", Value: p.ICMPSent.Load()},
		ctl.Counter{Name: "punt_icmp_limited", Value: p.ICMPLimit.Load()},
	), nil
}

func serveMetrics(ctx context.Context, addr string, t *ctl.Table, counters func() ([]ctl.Counter, error)) error {
	reg := prometheus.NewRegistry()
	if err := reg.Register(&ctl.Metrics{Table: t, Counters: counters}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// flowCache is loader.Options.FlowCache for --flow-cache n (0: off).
func flowCache(n uint) int {
	if n == 0 {
		return -1
	}
	return int(min(n, 1<<30))
}
