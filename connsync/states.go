package connsync

import "time"

// IP protocol numbers carried in records.
const (
	ProtoNone uint8 = 0 // fwmark persistence templates
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// IPVS connection flags as they appear on the wire (uapi linux/ip_vs.h).
const (
	FlagFwdMask   uint32 = 0x0007 // forwarding method
	FlagMasq      uint32 = 0x0000
	FlagLocalNode uint32 = 0x0001
	FlagTunnel    uint32 = 0x0002
	FlagDRoute    uint32 = 0x0003
	FlagBypass    uint32 = 0x0004
	FlagSync      uint32 = 0x0020 // set by the receiver on installed conns
	FlagHashed    uint32 = 0x0040 // kernel-internal; never sent
	FlagNoOutput  uint32 = 0x0080
	FlagInactive  uint32 = 0x0100
	FlagOutSeq    uint32 = 0x0200
	FlagInSeq     uint32 = 0x0400
	FlagSeqMask   uint32 = 0x0600
	FlagNoCPort   uint32 = 0x0800
	FlagTemplate  uint32 = 0x1000
	FlagOnePacket uint32 = 0x2000

	// FlagsBackupMask is what a kernel backup keeps of a record's flags
	// (IP_VS_CONN_F_BACKUP_MASK); it then adds FlagSync.
	FlagsBackupMask uint32 = FlagFwdMask | FlagNoOutput | FlagInactive | FlagSeqMask | FlagNoCPort | FlagTemplate
)

// TCP states, numbered as on the wire (reference 5.3).
const (
	TCPNone uint16 = iota
	TCPEstablished
	TCPSynSent
	TCPSynRecv
	TCPFinWait
	TCPTimeWait
	TCPClose
	TCPCloseWait
	TCPLastAck
	TCPListen
	TCPSynAck
	tcpStates
)

// SCTP states, numbered as on the wire (enum ip_vs_sctp_states).
const (
	SCTPNone uint16 = iota
	SCTPInit1
	SCTPInit
	SCTPCookieSent
	SCTPCookieReplied
	SCTPCookieWait
	SCTPCookie
	SCTPCookieEchoed
	SCTPEstablished
	SCTPShutdownSent
	SCTPShutdownReceived
	SCTPShutdownAckSent
	SCTPRejected
	SCTPClosed
	sctpStates
)

// Template states (IP_VS_CTPL_S_*).
const (
	TemplateNone    uint16 = 0
	TemplateAssured uint16 = 1
	templateStates         = 2
)

// UDPNormal is UDP's only state.
const UDPNormal uint16 = 0

// numStates is pp->num_states of the kernel's protocol handlers; 0 means
// the protocol is unknown.
func numStates(proto uint8) uint16 {
	switch proto {
	case ProtoTCP:
		return tcpStates
	case ProtoUDP:
		return 1
	case ProtoSCTP:
		return sctpStates
	}
	return 0
}

// IsTemplate reports whether c is a persistence template.
func (c *Conn) IsTemplate() bool { return c.Flags&FlagTemplate != 0 }

// checkProtoState validates protocol and state as a backup must. Templates
// may carry protocol 0 (fwmark services) and only the states NONE/ASSURED.
// The kernel only logs a bad template state; a kernel master never sends
// one, so rejecting it costs no interoperability.
func checkProtoState(proto uint8, state uint16, flags uint32) error {
	if flags&FlagTemplate != 0 {
		if proto != ProtoNone && numStates(proto) == 0 {
			return errorf(ErrProto, "template protocol %d", proto)
		}
		if state >= templateStates {
			return errorf(ErrState, "template state %d", state)
		}
		return nil
	}
	n := numStates(proto)
	if n == 0 {
		return errorf(ErrProto, "protocol %d", proto)
	}
	if state >= n {
		return errorf(ErrState, "protocol %d state %d", proto, state)
	}
	return nil
}

// Default state timeouts of the kernel's protocol handlers, in seconds.
var (
	tcpTimeouts = [tcpStates]uint32{
		TCPNone: 2, TCPEstablished: 900, TCPSynSent: 120, TCPSynRecv: 60,
		TCPFinWait: 120, TCPTimeWait: 120, TCPClose: 10, TCPCloseWait: 60,
		TCPLastAck: 30, TCPListen: 120, TCPSynAck: 120,
	}
	sctpTimeouts = [sctpStates]uint32{
		SCTPNone: 2, SCTPInit1: 10, SCTPInit: 10, SCTPCookieSent: 10,
		SCTPCookieReplied: 10, SCTPCookieWait: 10, SCTPCookie: 10,
		SCTPCookieEchoed: 10, SCTPEstablished: 900, SCTPShutdownSent: 10,
		SCTPShutdownReceived: 10, SCTPShutdownAckSent: 10, SCTPRejected: 10,
		SCTPClosed: 10,
	}
)

const (
	udpTimeout      = 300
	templateTimeout = 180 // what a kernel backup gives a template without a timeout
)

// DefaultTimeout is the timeout a kernel backup gives a conn whose record
// carries none (version 0, or a version 1 timeout of 0): the protocol's
// default for the state, 180 s for templates (ip_vs_proc_conn). It returns
// 0 for an unknown protocol or state. xvs's own --set values, when
// changed, are the caller's to apply instead.
func DefaultTimeout(proto uint8, state uint16, flags uint32) time.Duration {
	if flags&FlagTemplate != 0 {
		return templateTimeout * time.Second
	}
	var s uint32
	switch {
	case proto == ProtoTCP && state < tcpStates:
		s = tcpTimeouts[state]
	case proto == ProtoUDP && state == UDPNormal:
		s = udpTimeout
	case proto == ProtoSCTP && state < sctpStates:
		s = sctpTimeouts[state]
	}
	return time.Duration(s) * time.Second
}

// isSyncState reports whether IPVS syncs a conn of proto in state at all
// (ip_vs_sync_conn_needed): TCP only in ESTABLISHED, FIN_WAIT, CLOSE,
// CLOSE_WAIT, TIME_WAIT; SCTP only in ESTABLISHED and the shutdown and
// closed states; single-state protocols (UDP) and templates always.
func isSyncState(proto uint8, state uint16, flags uint32) bool {
	if flags&FlagTemplate != 0 {
		return true
	}
	switch proto {
	case ProtoTCP:
		switch state {
		case TCPEstablished, TCPFinWait, TCPClose, TCPCloseWait, TCPTimeWait:
			return true
		}
		return false
	case ProtoSCTP:
		switch state {
		case SCTPEstablished, SCTPShutdownSent, SCTPShutdownReceived, SCTPShutdownAckSent, SCTPClosed:
			return true
		}
		return false
	}
	return true
}

// establishedState is the state whose entry IPVS does not force out at once.
func establishedState(proto uint8) (uint16, bool) {
	switch proto {
	case ProtoTCP:
		return TCPEstablished, true
	case ProtoSCTP:
		return SCTPEstablished, true
	}
	return 0, false
}

// BackupFlags are the flags a backup installs c with: the record's flags
// masked with FlagsBackupMask, plus FlagSync (ip_vs_proc_sync_conn).
func (c *Conn) BackupFlags() uint32 { return c.Flags&FlagsBackupMask | FlagSync }

// TimeoutOrDefault is the timeout a backup gives c: the record's, or
// DefaultTimeout when it carried none (version 0, or 0 in version 1).
func (c *Conn) TimeoutOrDefault() time.Duration {
	if c.Timeout != 0 {
		return time.Duration(c.Timeout) * time.Second
	}
	return DefaultTimeout(c.Proto, c.State, c.Flags)
}
