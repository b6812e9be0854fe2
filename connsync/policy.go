package connsync

import (
	"net/netip"
	"time"
)

// Rules are IPVS's sync sysctls (reference 5.9, 8.3).
type Rules struct {
	Threshold     int           // sync_threshold[0], default 3
	Period        int           // sync_threshold[1] (sync_period), default 50
	RefreshPeriod time.Duration // sync_refresh_period, default 0 (off)
	Retries       int           // sync_retries, 0..3, default 0
	PersistMode   bool          // sync_persist_mode: sync only the templates of persistent conns
}

// DefaultRules are the kernel's defaults: sync_threshold "3 50", no
// refresh period, no retries, sync_persist_mode 0.
func DefaultRules() Rules { return Rules{Threshold: 3, Period: 50} }

// PacketConn is what IPVS knows of a conn when it decides, after an inbound
// packet, whether to sync it: the conn's current protocol state and the
// bookkeeping of its last sync (cp->old_state, cp->sync_endtime).
type PacketConn struct {
	Proto   uint8
	Flags   uint32
	State   uint16        // state after this packet
	Timeout time.Duration // the state's timeout (cp->timeout)
	// InPersistence is set for a conn controlled by a template; with
	// Rules.PersistMode such conns are not synced (their template is).
	InPersistence bool

	oldState uint16    // state at the last sync
	syncEnd  time.Time // cp->sync_endtime: last sync time + timeout
	retries  int       // low bits of cp->sync_endtime
}

// OnPacket is ip_vs_sync_conn_needed: it reports whether the conn c must be
// synced after an inbound packet that brought its in_pkts to pkts, and
// updates c's sync bookkeeping when it must. A TCP or SCTP state change
// other than into ESTABLISHED is sent at once; otherwise the threshold and
// period rules decide (by default the 3rd, 53rd, 103rd... packet), and
// templates ignore the packet count when the period is set. Syncing the
// controlling template of c is the caller's next call, as in the kernel.
func (r Rules) OnPacket(c *PacketConn, pkts int, now time.Time) bool {
	if c.Flags&FlagOnePacket != 0 {
		return false
	}
	template := c.Flags&FlagTemplate != 0
	n := now.Add(c.Timeout)
	switch {
	case template:
	case r.PersistMode && c.InPersistence:
		return false
	default:
		if est, ok := establishedState(c.Proto); ok {
			if !isSyncState(c.Proto, c.State, c.Flags) {
				return false
			}
			if c.State != c.oldState && c.State != est {
				c.oldState, c.syncEnd, c.retries = c.State, n, 0
				return true
			}
		}
	}
	retries := 0
	if r.RefreshPeriod > 0 {
		diff := n.Sub(c.syncEnd)
		minDiff := max(c.Timeout/2, 10*time.Second)
		if diff.Abs() < min(r.RefreshPeriod, minDiff) {
			if c.retries >= r.Retries {
				return false
			}
			if now.Before(c.syncEnd.Add(-c.Timeout).Add(r.RefreshPeriod / 8)) {
				return false
			}
			retries = c.retries + 1
		}
	}
	if r.Period > 0 {
		if !template && pkts%r.Period != r.Threshold {
			return false
		}
	} else if r.RefreshPeriod == 0 && pkts != r.Threshold {
		return false
	}
	c.oldState, c.syncEnd, c.retries = c.State, n, retries
	return true
}

// Decision says whether and why Policy queues a conn.
type Decision uint8

// Decisions of Policy.Decide.
const (
	Skip        Decision = iota // not now
	SendNew                     // first seen in a state that is synced
	SendState                   // state changed since it was last sent
	SendDest                    // same client/virtual tuple, another real server
	SendRefresh                 // unchanged, but its backup copy needs refreshing
)

func (d Decision) String() string {
	switch d {
	case Skip:
		return "skip"
	case SendNew:
		return "new"
	case SendState:
		return "state"
	case SendDest:
		return "dest"
	case SendRefresh:
		return "refresh"
	}
	return "unknown"
}

// Sent is what the master last sent of a conn.
type Sent struct {
	State uint16
	Dest  netip.AddrPort
	At    time.Time
}

// Policy is the master's decision for xvs, whose datapath has no
// per-packet hook: the master looks at snapshots of the connection table
// (and at state-change events when the datapath reports them) instead of
// at packets. It approximates Rules.OnPacket as follows:
//
//   - which conns: the same. TCP and SCTP only in the synced states, UDP
//     and templates always, one-packet conns never;
//   - state changes: sent at once, as in IPVS. The change into ESTABLISHED,
//     which IPVS holds back until the 3rd inbound packet, is sent when
//     first seen: a snapshot has no packet count, and sending early costs
//     one record while sending late loses the conn on failover;
//   - the 3-then-every-50-packets refresh of busy conns becomes a refresh
//     by time: a conn that is still in the table is resent once its backup
//     copy has aged by max(timeout/2, 10 s), or RefreshPeriod when that is
//     shorter (IPVS's own sync_refresh_period rule). Unlike IPVS this also
//     keeps idle conns alive on the backup, which is what failover needs;
//   - a changed real server for the same client/virtual tuple (a reused
//     conn) is sent at once;
//   - sync_persist_mode and the template-with-every-conn resend are not
//     modelled: a snapshot does not say which template controls a conn,
//     so templates are sent when new or changed and refreshed like conns.
type Policy struct {
	// RefreshPeriod caps the refresh interval (sync_refresh_period);
	// 0 leaves it at max(timeout/2, 10 s).
	RefreshPeriod time.Duration
}

// Decide says whether c, last sent as last (nil: never), is sent at now.
func (p Policy) Decide(last *Sent, c *Conn, now time.Time) Decision {
	if c.Flags&FlagOnePacket != 0 || !isSyncState(c.Proto, c.State, c.Flags) {
		return Skip
	}
	switch {
	case last == nil:
		return SendNew
	case last.Dest != c.Dest:
		return SendDest
	case last.State != c.State:
		return SendState
	case now.Sub(last.At) >= p.RefreshInterval(c):
		return SendRefresh
	}
	return Skip
}

// RefreshInterval is how long a sent conn may go unsent while unchanged.
func (p Policy) RefreshInterval(c *Conn) time.Duration {
	t := time.Duration(c.Timeout) * time.Second
	if t == 0 {
		t = DefaultTimeout(c.Proto, c.State, c.Flags)
	}
	d := max(t/2, 10*time.Second)
	if p.RefreshPeriod > 0 {
		d = min(d, p.RefreshPeriod)
	}
	return d
}
