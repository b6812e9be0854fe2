// Package ipvsadm speaks ipvsadm's language as pure Go: it parses ipvsadm
// command lines (option legality, messages and exit codes included), prints
// ipvsadm's listing formats and its save format, and parses restore input.
//
// Nothing here talks to a kernel or a daemon: the types below are plain data
// (they double as the JSON API between xvsadm and xvsd) and name lookups go
// through an injectable Resolver, so everything is testable without DNS.
package ipvsadm

import (
	"net/netip"
	"time"
)

// ProgName is the program name printed where ipvsadm prints its own name
// (the "Try ..." line and xvs's own refusal messages).
const ProgName = "xvsadm"

// Method is a forwarding method, numbered as IPVS numbers them.
type Method uint8

// Forwarding methods. MethodUnset means "not given on the command line"
// (an -e without a method keeps the server's current method).
const (
	MethodMasq   Method = 0
	MethodLocal  Method = 1
	MethodTunnel Method = 2
	MethodRoute  Method = 3
	MethodUnset  Method = 255
)

// String returns the name ipvsadm prints in the Forward column.
func (m Method) String() string {
	switch m {
	case MethodMasq:
		return "Masq"
	case MethodLocal:
		return "Local"
	case MethodTunnel:
		return "Tunnel"
	case MethodRoute:
		return "Route"
	}
	return ""
}

// Scheduler flag bits (IP_VS_SVC_F_SCHED1..3).
const (
	FlagSched1 uint32 = 0x0008 // flag-1, sh-fallback, mh-fallback
	FlagSched2 uint32 = 0x0010 // flag-2, sh-port, mh-port
	FlagSched3 uint32 = 0x0020 // flag-3
)

// Protocol numbers used in Service.Proto and ConnEntry.Proto.
const (
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// DefaultScheduler is used by -A/-E without -s.
const DefaultScheduler = "wlc"

// DefaultPersistTimeout is the timeout of a bare -p (libipvs.h; the man page's 300 is wrong).
const DefaultPersistTimeout = 360

// Service is a virtual service.
type Service struct {
	Proto uint8          // 6 TCP, 17 UDP (132 SCTP is parsed, then refused)
	Addr  netip.AddrPort // for a fwmark service: 0.0.0.0:0 or [::]:0, giving the family
	// Scheduler is the -s value, cut to 15 bytes; wlc when -A/-E omit it.
	// Services that only name a service (-D, -a, -L -t, ...) leave it empty.
	Scheduler  string
	Flags      uint32 // scheduler flags 0x08/0x10/0x20
	Persistent bool
	Timeout    uint32 // persistence seconds (360 for a bare -p), 0 if not persistent
	Netmask    int    // persistence granularity as a prefix length; 32/128 = none
	OnePacket  bool
	FwMark     uint32 `json:",omitempty"` // -f (parsed, refused by xvs)
}

// Dest is a real server.
type Dest struct {
	Addr       netip.AddrPort
	Method     Method
	Weight     int32
	UThreshold uint32
	LThreshold uint32
}

// Stats are counters (or, as a rate, the same fields per second:
// CPS, InPPS, OutPPS, InBPS, OutBPS).
type Stats struct{ Conns, InPkts, OutPkts, InBytes, OutBytes uint64 }

// DestEntry is a real server as listed.
type DestEntry struct {
	Dest
	ActiveConns, InactConns, PersistConns int64
	Stats, Rate                           Stats
}

// ServiceEntry is a virtual service as listed, with its real servers.
type ServiceEntry struct {
	Service
	Stats, Rate Stats
	Dests       []DestEntry
}

// ConnEntry is one connection (or persistence template) as listed by -L -c.
type ConnEntry struct {
	Proto                 uint8 // 0 for fwmark templates (printed "IP")
	Template              bool
	Client, Virtual, Dest netip.AddrPort
	State                 string
	Expires               time.Duration
}

// Timeouts are the --set values in seconds (0 = keep).
type Timeouts struct{ TCP, TCPFin, UDP uint32 }

// Info feeds the first line of a full listing.
type Info struct {
	Version       string
	ConnTableSize int
}

// Kind is the command of a command line.
type Kind int

// Commands.
const (
	CmdAddService Kind = iota + 1
	CmdEditService
	CmdDelService
	CmdFlush
	CmdList
	CmdAddDest
	CmdEditDest
	CmdDelDest
	CmdSet
	CmdStartDaemon
	CmdStopDaemon
	CmdRestore
	CmdSave
	CmdZero
	CmdHelp
	CmdVersion
)

// String returns ipvsadm's name of the command (as used in its messages).
func (k Kind) String() string {
	switch k {
	case CmdAddService:
		return "add-service"
	case CmdEditService:
		return "edit-service"
	case CmdDelService:
		return "delete-service"
	case CmdFlush:
		return "flush"
	case CmdList:
		return "list"
	case CmdAddDest:
		return "add-server"
	case CmdEditDest:
		return "edit-server"
	case CmdDelDest:
		return "delete-server"
	case CmdSet:
		return "set"
	case CmdStartDaemon:
		return "start-daemon"
	case CmdStopDaemon:
		return "stop-daemon"
	case CmdRestore:
		return "restore"
	case CmdSave:
		return "save"
	case CmdZero:
		return "zero"
	case CmdHelp:
		return "help"
	case CmdVersion:
		return "version"
	}
	return "unknown"
}

// ListOptions select the listing variant (and -S's numeric mode).
type ListOptions struct {
	Numeric, Conns, Stats, Rate, Thresholds, PersistConn, Timeout, Daemon, Exact, NoSort bool

	// TunInfo is --tun-info.
	TunInfo bool
	// OneService is set for -L with a service: the listing has no version line.
	OneService bool
}

// DaemonOptions are the sync daemon options of --start-daemon/--stop-daemon.
type DaemonOptions struct {
	State          string // "master" or "backup"
	McastInterface string // eth0 when --start-daemon omits it
	SyncID         int
	McastGroup     netip.Addr `json:",omitzero"`
	McastPort      uint16     `json:",omitempty"`
	McastTTL       uint8      `json:",omitempty"`
	SyncMaxLen     uint16     `json:",omitempty"`
}

// Tunnel holds the --tun-* options of -a/-e (only legal with -i, which xvs refuses).
type Tunnel struct {
	Type string // ipip, gue, gre
	Port uint16
	Csum string // "", "nocsum", "csum", "remcsum"
}

// Command is one parsed command line.
type Command struct {
	Kind     Kind
	Service  *Service // nil when no -t/-u/-f/--sctp-service was given
	Dest     *Dest    // set for -a/-e/-d
	Timeouts Timeouts // --set
	List     ListOptions

	PE     string         `json:",omitempty"` // --pe (refused)
	Daemon *DaemonOptions `json:",omitempty"` // --start-daemon/--stop-daemon
	Tunnel *Tunnel        `json:",omitempty"` // --tun-* (refused with -i)
	// Unsupported names the ipvsadm feature that was asked for and that xvs
	// refuses (e.g. "-f", "-g", "--pe"); empty when supported.
	// Parse returns such a command together with an *Error of code 2.
	Unsupported string `json:",omitempty"`
	// Line is the input line a restore command came from (0 otherwise),
	// so that the daemon's whole-batch validation can name it.
	Line int `json:",omitempty"`
}

// Error is a failure with ipvsadm's message and exit code: 2 for
// validation errors, 255 for popt errors, unknown options and the "Try" line.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
