package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"xvs/connsync"
	"xvs/ctl"
	"xvs/ipvsadm"
)

// version is xvs's version, printed by -v and in listings.
const version = "0.1.0"

// Exit codes as ipvsadm's.
const (
	exitOK      = 0
	exitList    = 1   // a listing call failed (-L -t of a missing service)
	exitInvalid = 2   // bad arguments; daemon not reachable
	exitFailed  = 255 // the daemon refused the operation
)

// env is what one invocation reads and writes, so tests run it in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	resolver       ipvsadm.Resolver
	socket         string
}

// run is xvsadm. ipvsadm's options are not flags in urfave/cli's sense
// (the first option must be a command, -p takes an optional value, short
// options bundle), so the app passes the words through to ipvsadm.Parse and
// only owns --socket.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, resolver: ipvsadm.SystemResolver()}
	code := exitOK
	app := &cli.App{
		Name:            "xvsadm",
		Usage:           "administer the xvs director with ipvsadm's command line",
		HideHelp:        true,
		HideVersion:     true,
		SkipFlagParsing: true,
		Writer:          stdout,
		ErrWriter:       stderr,
		Action: func(c *cli.Context) error {
			code = e.main(c.Args().Slice())
			return nil
		},
	}
	if err := app.Run(args); err != nil {
		fmt.Fprintln(stderr, "xvsadm:", err)
		return exitInvalid
	}
	return code
}

// socketPath takes --socket PATH / --socket=PATH out of args (anywhere), then
// falls back to $XVS_SOCKET and the default.
func socketPath(args []string) (string, []string, error) {
	path := ""
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--socket":
			if i+1 >= len(args) {
				return "", nil, errors.New("--socket: missing argument")
			}
			path = args[i+1]
			i++
		case strings.HasPrefix(a, "--socket="):
			path = strings.TrimPrefix(a, "--socket=")
		default:
			rest = append(rest, a)
		}
	}
	if path == "" {
		path = os.Getenv("XVS_SOCKET")
	}
	if path == "" {
		path = ctl.DefaultSocket
	}
	return path, rest, nil
}

func (e *env) main(args []string) int {
	sock, args, err := socketPath(args)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitInvalid
	}
	e.socket = sock
	if len(args) == 1 && args[0] == "--counters" {
		return e.counters()
	}
	cmd, err := ipvsadm.Parse(args, e.resolver)
	if err != nil {
		var pe *ipvsadm.Error
		if errors.As(err, &pe) {
			if pe.Msg != "" {
				fmt.Fprintln(e.stderr, pe.Msg)
			}
			return pe.Code
		}
		fmt.Fprintln(e.stderr, err)
		return exitInvalid
	}
	switch cmd.Kind {
	case ipvsadm.CmdHelp:
		ipvsadm.Usage(e.stdout, "xvsadm")
		fmt.Fprintf(e.stdout, "\nxvs only:\n  %-27s %s\n  %-27s %s\n", "--counters", "list the datapath's packet and first-packet counters by reason",
			"--socket PATH", "control socket of xvsd (or $XVS_SOCKET; default "+ctl.DefaultSocket+")")
		return exitOK
	case ipvsadm.CmdVersion:
		fmt.Fprintf(e.stdout, "xvsadm v%s (ipvsadm v1.31 command line and formats)\n", version)
		return exitOK
	case ipvsadm.CmdList:
		return e.list(cmd)
	case ipvsadm.CmdSave:
		return e.save(cmd)
	case ipvsadm.CmdRestore:
		return e.restore()
	case ipvsadm.CmdStartDaemon, ipvsadm.CmdStopDaemon:
		return e.daemon(cmd)
	}
	return e.apply([]ipvsadm.Command{*cmd}, nil)
}

func (e *env) client() *ctl.Client { return &ctl.Client{Path: e.socket} }

// fail prints a daemon call's failure and returns ipvsadm's exit code for it.
func (e *env) fail(err error, refused int) int {
	var de *ctl.Error
	switch {
	case errors.Is(err, ctl.ErrUnreachable):
		fmt.Fprintf(e.stderr, "xvsadm: %v (is xvsd running? set --socket or XVS_SOCKET)\n", err)
		return exitInvalid
	case errors.As(err, &de):
		fmt.Fprintln(e.stderr, de.Error())
		return refused
	}
	fmt.Fprintln(e.stderr, "xvsadm:", err)
	return refused
}

func (e *env) apply(cmds []ipvsadm.Command, lines []int) int {
	if _, err := e.client().Do(&ctl.Request{Op: ctl.OpApply, Cmds: cmds, Lines: lines}); err != nil {
		return e.fail(err, exitFailed)
	}
	return exitOK
}

func (e *env) list(cmd *ipvsadm.Command) int {
	opt := cmd.List
	switch {
	case opt.Daemon:
		// One line per running sync daemon; nothing when none runs.
		resp, err := e.client().Do(&ctl.Request{Op: ctl.OpDaemons})
		if err != nil {
			return e.fail(err, exitList)
		}
		for _, d := range resp.Daemons {
			fmt.Fprintln(e.stdout, connsync.FormatDaemon(d.State, d.Options))
		}
		return exitOK
	case opt.Timeout:
		resp, err := e.client().Do(&ctl.Request{Op: ctl.OpTimeouts})
		if err != nil {
			return e.fail(err, exitList)
		}
		if err := ipvsadm.WriteTimeout(e.stdout, *resp.Timeouts); err != nil {
			return e.fail(err, exitList)
		}
		return exitOK
	case opt.Conns:
		resp, err := e.client().Do(&ctl.Request{Op: ctl.OpConns})
		if err != nil {
			return e.fail(err, exitList)
		}
		if err := ipvsadm.WriteConns(e.stdout, resp.Conns, opt, e.resolver); err != nil {
			return e.fail(err, exitList)
		}
		return exitOK
	}
	resp, err := e.client().Do(&ctl.Request{Op: ctl.OpServices, Service: cmd.Service})
	if err != nil {
		return e.fail(err, exitList)
	}
	if err := ipvsadm.WriteList(e.stdout, *resp.Info, resp.Services, opt, e.resolver); err != nil {
		return e.fail(err, exitList)
	}
	return exitOK
}

func (e *env) save(cmd *ipvsadm.Command) int {
	resp, err := e.client().Do(&ctl.Request{Op: ctl.OpServices})
	if err != nil {
		return e.fail(err, exitFailed)
	}
	if err := ipvsadm.WriteSave(e.stdout, resp.Services, cmd.List.Numeric, e.resolver); err != nil {
		return e.fail(err, exitFailed)
	}
	return exitOK
}

// restore reads save-format lines from stdin; xvsd validates them whole
// and applies all or nothing.
func (e *env) restore() int {
	cmds, err := ipvsadm.ParseRestore(e.stdin, e.resolver)
	if err != nil {
		var pe *ipvsadm.Error
		if errors.As(err, &pe) {
			fmt.Fprintln(e.stderr, pe.Msg)
			return pe.Code
		}
		fmt.Fprintln(e.stderr, err)
		return exitInvalid
	}
	// The table's commands are applied as one batch; sync daemon lines
	// (runtime state, never written by -S) then start or stop in order.
	var table, daemons []ipvsadm.Command
	var lines []int
	for _, c := range cmds {
		if c.Kind == ipvsadm.CmdStartDaemon || c.Kind == ipvsadm.CmdStopDaemon {
			daemons = append(daemons, c)
			continue
		}
		table = append(table, c)
		lines = append(lines, c.Line)
	}
	if len(table) > 0 {
		if code := e.apply(table, lines); code != exitOK {
			return code
		}
	}
	for i := range daemons {
		if code := e.daemon(&daemons[i]); code != exitOK {
			return code
		}
	}
	return exitOK
}

// daemon starts or stops a sync daemon (--start-daemon, --stop-daemon).
func (e *env) daemon(cmd *ipvsadm.Command) int {
	op := ctl.OpStartDaemon
	if cmd.Kind == ipvsadm.CmdStopDaemon {
		op = ctl.OpStopDaemon
	}
	if _, err := e.client().Do(&ctl.Request{Op: op, Daemon: cmd.Daemon}); err != nil {
		return e.fail(err, exitFailed)
	}
	return exitOK
}

// counters prints the datapath's counters by reason: every packet the
// datapath passed or dropped, and what the first-packet loop did.
func (e *env) counters() int {
	resp, err := e.client().Do(&ctl.Request{Op: ctl.OpDatapath})
	if err != nil {
		return e.fail(err, exitList)
	}
	fmt.Fprintf(e.stdout, "%-24s %12s\n", "Reason", "Count")
	for _, c := range resp.Counters {
		fmt.Fprintf(e.stdout, "%-24s %12d\n", c.Name, c.Value)
	}
	return exitOK
}
