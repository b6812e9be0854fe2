package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"xvs/ipvsadm"
)

// APIVersion is the version of the control socket's JSON protocol. A
// request names it; the server refuses versions it does not speak.
const APIVersion = 1

// DefaultSocket is where xvsd listens and xvsadm connects by default.
const DefaultSocket = "/run/xvs/xvsd.sock"

// Operations of the control socket.
const (
	OpApply    = "apply"    // Cmds (and Lines): validated whole, then applied
	OpServices = "services" // Info and Services (Service: only that one)
	OpConns    = "conns"    // Conns
	OpTimeouts = "timeouts" // Timeouts
	OpDatapath = "datapath" // Counters

	OpStartDaemon = "start-daemon" // Daemon: start a sync daemon (--start-daemon)
	OpStopDaemon  = "stop-daemon"  // Daemon.State: stop it (--stop-daemon)
	OpDaemons     = "daemons"      // Daemons: the running sync daemons (-L --daemon)
)

// Request is one call on the control socket: one JSON object per
// connection, answered by one Response.
type Request struct {
	Version int                    `json:"version"`
	Op      string                 `json:"op"`
	Cmds    []ipvsadm.Command      `json:"cmds,omitempty"`
	Lines   []int                  `json:"lines,omitempty"`
	Service *ipvsadm.Service       `json:"service,omitempty"`
	Daemon  *ipvsadm.DaemonOptions `json:"daemon,omitempty"`
}

// Response answers a Request.
type Response struct {
	Error    *WireError             `json:"error,omitempty"`
	Info     *ipvsadm.Info          `json:"info,omitempty"`
	Services []ipvsadm.ServiceEntry `json:"services,omitempty"`
	Conns    []ipvsadm.ConnEntry    `json:"conns,omitempty"`
	Timeouts *ipvsadm.Timeouts      `json:"timeouts,omitempty"`
	Counters []Counter              `json:"counters,omitempty"`
	Daemons  []DaemonStatus         `json:"daemons,omitempty"`
}

// Counter is one datapath or daemon counter (by reason).
type Counter struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// WireError carries an error over the socket: a stable code, ipvsadm's
// message and, for a batch, the failing line.
type WireError struct {
	Code string `json:"code"`
	Msg  string `json:"msg"`
	Line int    `json:"line,omitempty"`
}

// Error is a failure reported by xvsd; errors.Is matches its sentinel.
type Error struct {
	WireError
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return sentinel(e.Code) }

func wireError(err error) *WireError {
	w := &WireError{Code: Code(err), Msg: Message(err)}
	var le *LineError
	if errors.As(err, &le) {
		w.Line = le.Line
	}
	return w
}

// Server answers control requests from the table.
type Server struct {
	Table    *Table
	Info     ipvsadm.Info
	Counters func() ([]Counter, error) // datapath and punt counters; nil = none
	Sync     *Sync                     // connection sync daemons; nil = not available
	Logger   *slog.Logger
}

// Listen opens the control socket at path, root only (0600). A socket file
// left by a dead daemon is replaced; one with a live daemon behind it is
// an error.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another xvsd is listening", path)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, nil
}

// Serve answers connections on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept control connection: %w", err)
		}
		go s.serveConn(ctx, c)
	}
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	var req Request
	var resp *Response
	if err := json.NewDecoder(io.LimitReader(c, 64<<20)).Decode(&req); err != nil {
		resp = &Response{Error: &WireError{Code: "bad_request", Msg: "bad request: " + err.Error()}}
	} else {
		resp = s.Handle(ctx, &req)
	}
	if err := json.NewEncoder(c).Encode(resp); err != nil && s.Logger != nil {
		s.Logger.Warn("answer control request", slog.String("op", req.Op), slog.Any("err", err))
	}
}

// Handle answers one request.
func (s *Server) Handle(ctx context.Context, req *Request) *Response {
	if req.Version != APIVersion {
		return &Response{Error: &WireError{Code: "version", Msg: fmt.Sprintf("xvsd speaks API version %d, not %d", APIVersion, req.Version)}}
	}
	resp := &Response{}
	var err error
	switch req.Op {
	case OpApply:
		err = s.Table.Apply(req.Cmds, req.Lines)
		if err == nil && s.Logger != nil {
			s.Logger.Info("configuration changed", slog.Int("commands", len(req.Cmds)))
		}
	case OpServices:
		info := s.Info
		resp.Info = &info
		resp.Services, err = s.Table.Services(req.Service)
	case OpConns:
		resp.Conns, err = s.Table.Conns(ctx)
	case OpTimeouts:
		to := s.Table.Timeouts()
		resp.Timeouts = &to
	case OpDatapath:
		if s.Counters != nil {
			resp.Counters, err = s.Counters()
		}
	case OpStartDaemon, OpStopDaemon:
		err = s.daemon(req)
	case OpDaemons:
		if s.Sync != nil {
			resp.Daemons = s.Sync.Daemons()
		}
	default:
		return &Response{Error: &WireError{Code: "bad_request", Msg: "unknown operation " + req.Op}}
	}
	if err != nil {
		return &Response{Error: wireError(err)}
	}
	return resp
}

// daemon starts or stops a sync daemon.
func (s *Server) daemon(req *Request) error {
	if s.Sync == nil {
		return fmt.Errorf("sync daemons: %w", ErrNotSupported)
	}
	if req.Daemon == nil {
		return fmt.Errorf("%s without daemon options: %w", req.Op, ErrInvalid)
	}
	role, o, err := DaemonOptions(*req.Daemon)
	if err != nil {
		return err
	}
	if req.Op == OpStopDaemon {
		err = s.Sync.Stop(role)
	} else {
		err = s.Sync.Start(role, o)
	}
	if err == nil && s.Logger != nil {
		s.Logger.Info("sync daemon "+req.Op, slog.String("state", role.String()))
	}
	return err
}

// ErrUnreachable means no xvsd answers on the socket.
var ErrUnreachable = errors.New("cannot reach xvsd")

// Client calls xvsd over its control socket.
type Client struct {
	Path    string
	Timeout time.Duration // whole call; 0 = 60 s
}

// Do sends req and returns the response; a failure reported by xvsd is an
// *Error, a socket failure wraps ErrUnreachable.
func (c *Client) Do(req *Request) (*Response, error) {
	req.Version = APIVersion
	to := c.Timeout
	if to == 0 {
		to = time.Minute
	}
	conn, err := net.DialTimeout("unix", c.Path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.Path, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(to))
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.Path, err)
	}
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return nil, fmt.Errorf("%w at %s: read answer: %w", ErrUnreachable, c.Path, err)
	}
	if resp.Error != nil {
		return nil, &Error{WireError: *resp.Error}
	}
	return &resp, nil
}
