package connsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Reasons a datagram is rejected; every error of DecodeMessage wraps one.
var (
	ErrShort  = errors.New("datagram shorter than a header")
	ErrSize   = errors.New("datagram length differs from header size")
	ErrSyncID = errors.New("syncid filtered")
	ErrRecord = errors.New("malformed record")
	ErrOption = errors.New("malformed option")
	ErrProto  = errors.New("unknown protocol")
	ErrState  = errors.New("invalid state")
	// ErrAddr is an Encode-side error: a conn whose addresses are invalid or
	// of mixed families.
	ErrAddr = errors.New("invalid address")
)

// Reasons a single record is skipped inside an accepted datagram, as the
// kernel skips it and carries on with the next record.
var (
	ErrUnknownOption = errors.New("unknown mandatory option")
	ErrPEData        = errors.New("persistence-engine data without engine name")
)

func errorf(reason error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", reason, fmt.Sprintf(format, args...))
}

// Protocol constants (ip_vs_sync.c).
const (
	Version = 1 // SYNC_PROTO_VER

	headerLen   = 8  // struct ip_vs_sync_mesg
	headerLenV0 = 4  // struct ip_vs_sync_mesg_v0
	recordLen4  = 36 // struct ip_vs_sync_v4
	recordLen6  = 72 // struct ip_vs_sync_v6
	recordLenV0 = 24 // struct ip_vs_sync_conn_v0
	seqLen      = 24 // struct ip_vs_sync_conn_options

	typeInet6 = 0x01 // STYPE_F_INET6

	optSeqData   = 1
	optPEData    = 2
	optPEName    = 3
	optFlagParam = 0x40 // IPVS_OPT_F_PARAM: the option may be ignored

	// MaxPEData and MaxPEName bound the persistence-engine options
	// (IP_VS_PEDATA_MAXLEN, IP_VS_PENAME_MAXLEN).
	MaxPEData = 255
	MaxPEName = 16

	maxRecordLen = 0x0fff // 12-bit record length
	maxConns     = 255    // 8-bit count
	maxMessage   = 65535  // 16-bit size
)

// Seq is one direction's TCP sequence adjustment (struct ip_vs_seq).
type Seq struct {
	InitSeq       uint32
	Delta         uint32
	PreviousDelta uint32
}

// SeqData is the sequence option of a record: in_seq then out_seq.
type SeqData struct {
	In, Out Seq
}

// Conn is one synchronised connection or persistence template.
type Conn struct {
	Proto uint8
	// Flags are IPVS conn flags as on the wire (Flag* constants). A backup
	// installing the conn keeps FlagsBackupMask and adds FlagSync.
	Flags uint32
	// State is the protocol state (TCP* / SCTP* / UDPNormal), or for a
	// template TemplateNone / TemplateAssured.
	State uint16
	// Client, VIP and Dest are the client, virtual and real server address
	// and port; all three IPv4 (Is4) or all three IPv6.
	Client, VIP, Dest netip.AddrPort
	FwMark            uint32
	// Timeout is the conn's state timeout in seconds (not the time left).
	// 0 when it came in a version 0 message: the receiver then uses
	// DefaultTimeout.
	Timeout uint32
	Seq     *SeqData // optional
	PEName  string   // optional, at most MaxPEName bytes
	PEData  []byte   // optional, at most MaxPEData bytes
}

// Validate reports whether c can be sent and would be accepted: addresses
// of one family, a known protocol, a valid state, bounded PE options.
func (c *Conn) Validate() error {
	_, err := c.recordLen()
	return err
}

// is6 reports whether c is an IPv6 conn; error when the families are mixed.
func (c *Conn) is6() (bool, error) {
	a, b, d := c.Client.Addr(), c.VIP.Addr(), c.Dest.Addr()
	switch {
	case a.Is4() && b.Is4() && d.Is4():
		return false, nil
	case a.Is6() && b.Is6() && d.Is6():
		return true, nil
	}
	return false, errorf(ErrAddr, "client %v, virtual %v, real %v: not all IPv4 or all IPv6", a, b, d)
}

// recordLen is the record's length without padding.
func (c *Conn) recordLen() (int, error) {
	v6, err := c.is6()
	if err != nil {
		return 0, err
	}
	if err := checkProtoState(c.Proto, c.State, c.Flags); err != nil {
		return 0, err
	}
	n := recordLen4
	if v6 {
		n = recordLen6
	}
	if c.Seq != nil {
		n += 2 + seqLen
	}
	if len(c.PEData) > MaxPEData {
		return 0, errorf(ErrOption, "pe data of %d bytes", len(c.PEData))
	}
	if len(c.PEName) > MaxPEName {
		return 0, errorf(ErrOption, "pe name of %d bytes", len(c.PEName))
	}
	if len(c.PEData) > 0 {
		n += 2 + len(c.PEData)
	}
	if c.PEName != "" {
		n += 2 + len(c.PEName)
	}
	return n, nil
}

// appendRecord appends c's version 1 record (n bytes, from recordLen).
func (c *Conn) appendRecord(b []byte, n int) []byte {
	v6, _ := c.is6()
	typ := byte(0)
	if v6 {
		typ = typeInet6
	}
	be := binary.BigEndian
	b = append(b, typ, c.Proto)
	b = be.AppendUint16(b, uint16(n)) // record version 0 in the high 4 bits
	b = be.AppendUint32(b, c.Flags&^FlagHashed)
	b = be.AppendUint16(b, c.State)
	b = be.AppendUint16(b, c.Client.Port())
	b = be.AppendUint16(b, c.VIP.Port())
	b = be.AppendUint16(b, c.Dest.Port())
	b = be.AppendUint32(b, c.FwMark)
	b = be.AppendUint32(b, c.Timeout)
	for _, a := range []netip.Addr{c.Client.Addr(), c.VIP.Addr(), c.Dest.Addr()} {
		b = append(b, a.AsSlice()...)
	}
	if c.Seq != nil {
		b = append(b, optSeqData, seqLen)
		b = appendSeq(b, be, c.Seq)
	}
	if len(c.PEData) > 0 {
		b = append(b, optPEData, byte(len(c.PEData)))
		b = append(b, c.PEData...)
	}
	if c.PEName != "" {
		b = append(b, optPEName, byte(len(c.PEName)))
		b = append(b, c.PEName...)
	}
	return b
}

func appendSeq(b []byte, o binary.AppendByteOrder, s *SeqData) []byte {
	for _, q := range []Seq{s.In, s.Out} {
		b = o.AppendUint32(b, q.InitSeq)
		b = o.AppendUint32(b, q.Delta)
		b = o.AppendUint32(b, q.PreviousDelta)
	}
	return b
}

func readSeq(b []byte, o binary.ByteOrder) *SeqData {
	return &SeqData{
		In:  Seq{o.Uint32(b[0:]), o.Uint32(b[4:]), o.Uint32(b[8:])},
		Out: Seq{o.Uint32(b[12:]), o.Uint32(b[16:]), o.Uint32(b[20:])},
	}
}

// Builder fills version 1 messages one record at a time, as the kernel's
// master fills its sync buffer: a record that does not fit closes the
// current message and opens the next. A message always holds at least one
// record, so a single record larger than maxLen still goes out (as in the
// kernel), and never more than 255 (the count is 8 bits).
type Builder struct {
	syncid uint8
	maxLen int
	buf    []byte
	count  int
}

// NewBuilder returns a Builder of messages of at most maxLen bytes
// (IPVS header included, IP/UDP headers excluded).
func NewBuilder(syncid uint8, maxLen int) *Builder {
	return &Builder{syncid: syncid, maxLen: min(maxLen, maxMessage)}
}

// Add appends c. When c does not fit in the current message, that message
// is returned finished and c starts the next one. A conn that fails
// Validate is refused with its error and nothing changes.
func (b *Builder) Add(c *Conn) (full []byte, err error) {
	n, err := c.recordLen()
	if err != nil {
		return nil, err
	}
	pad := (4 - len(b.buf)%4) % 4
	if !b.Fits(c) {
		full = b.Flush()
		pad = 0
	}
	if b.count == 0 {
		b.buf = append(make([]byte, 0, max(b.maxLen, headerLen+n)), 0, b.syncid, 0, 0, 0, Version, 0, 0)
	}
	for range pad {
		b.buf = append(b.buf, 0)
	}
	b.buf = c.appendRecord(b.buf, n)
	b.count++
	return full, nil
}

// Fits reports whether c would go into the current message rather than
// close it (false also when c is invalid).
func (b *Builder) Fits(c *Conn) bool {
	n, err := c.recordLen()
	if err != nil {
		return false
	}
	pad := (4 - len(b.buf)%4) % 4
	return b.count == 0 || len(b.buf)+pad+n <= b.maxLen && b.count < maxConns
}

// Count is the number of records in the current message.
func (b *Builder) Count() int { return b.count }

// Flush finishes and returns the current message, nil when it is empty.
func (b *Builder) Flush() []byte {
	if b.count == 0 {
		return nil
	}
	m := b.buf
	binary.BigEndian.PutUint16(m[2:], uint16(len(m)))
	m[4] = byte(b.count)
	b.buf, b.count = nil, 0
	return m
}

// Encode writes conns as version 1 messages of at most maxLen bytes each
// (see Builder), stamped with syncid. A conn that fails Validate makes it
// return an error naming its index and no messages.
func Encode(syncid uint8, conns []Conn, maxLen int) ([][]byte, error) {
	b := NewBuilder(syncid, maxLen)
	var out [][]byte
	for i := range conns {
		full, err := b.Add(&conns[i])
		if err != nil {
			return nil, fmt.Errorf("encode conn %d: %w", i, err)
		}
		if full != nil {
			out = append(out, full)
		}
	}
	if m := b.Flush(); m != nil {
		out = append(out, m)
	}
	return out, nil
}

// Message is a decoded datagram.
type Message struct {
	Version int // 0 or 1
	SyncID  uint8
	Conns   []Conn
	// Skipped holds one error per record the kernel would skip while
	// applying the rest (an unknown mandatory option, PE data without an
	// engine name); each wraps ErrUnknownOption or ErrPEData.
	Skipped []error
}

// Decode is DecodeMessage returning only the conns.
func Decode(b []byte, syncid uint8) ([]Conn, error) {
	m, err := DecodeMessage(b, syncid)
	return m.Conns, err
}

// DecodeMessage parses one datagram as a backup with the given syncid does
// (0 accepts every syncid). It is version 1 when the version byte is 1 and
// the reserved and spare fields are 0, else version 0 (reference 8.4).
//
// Validation is all-or-nothing: any malformed field rejects the whole
// datagram with an error wrapping one of ErrShort, ErrSize, ErrSyncID,
// ErrRecord, ErrOption, ErrProto, ErrState, and no conns. This is stricter
// than the kernel, which applies the records before a bad one, skips
// records of unknown protocol or invalid state, and ignores trailing bytes
// and reserved fields; a kernel master never sends any of these.
func DecodeMessage(b []byte, syncid uint8) (Message, error) {
	if len(b) < headerLenV0 {
		return Message{}, errorf(ErrShort, "%d bytes", len(b))
	}
	if size := int(binary.BigEndian.Uint16(b[2:])); size != len(b) {
		return Message{}, errorf(ErrSize, "header says %d bytes, datagram has %d", size, len(b))
	}
	if syncid != 0 && b[1] != syncid {
		return Message{}, errorf(ErrSyncID, "syncid %d, want %d", b[1], syncid)
	}
	m := Message{SyncID: b[1]}
	var err error
	if len(b) >= headerLen && b[0] == 0 && b[5] == Version && b[6] == 0 && b[7] == 0 {
		m.Version = 1
		m.Conns, m.Skipped, err = decodeV1(b)
	} else {
		m.Conns, err = decodeV0(b)
	}
	if err != nil {
		return Message{Version: m.Version, SyncID: m.SyncID}, fmt.Errorf("version %d: %w", m.Version, err)
	}
	return m, nil
}

func decodeV1(b []byte) ([]Conn, []error, error) {
	count := int(b[4])
	conns := make([]Conn, 0, count)
	var skipped []error
	off := headerLen
	for i := range count {
		if i > 0 {
			next := (off + 3) &^ 3
			if next > len(b) {
				return nil, nil, errorf(ErrRecord, "record %d: padding past end", i)
			}
			if !allZero(b[off:next]) {
				return nil, nil, errorf(ErrRecord, "record %d: nonzero padding", i)
			}
			off = next
		}
		if off+recordLen4 > len(b) {
			return nil, nil, errorf(ErrRecord, "record %d: %d bytes left", i, len(b)-off)
		}
		vs := binary.BigEndian.Uint16(b[off+2:])
		if vs>>12 != 0 {
			return nil, nil, errorf(ErrRecord, "record %d: record version %d", i, vs>>12)
		}
		end := off + int(vs&maxRecordLen)
		if end < off+recordLen4 {
			return nil, nil, errorf(ErrRecord, "record %d: length %d shorter than %d", i, vs&maxRecordLen, recordLen4)
		}
		if end > len(b) {
			return nil, nil, errorf(ErrRecord, "record %d: length %d past end", i, vs&maxRecordLen)
		}
		c, skip, err := decodeRecord(b[off:end])
		if err != nil {
			return nil, nil, fmt.Errorf("record %d: %w", i, err)
		}
		if skip != nil {
			skipped = append(skipped, fmt.Errorf("record %d: %w", i, skip))
		} else {
			conns = append(conns, c)
		}
		off = end
	}
	// A kernel master pads between records, never after the last one;
	// tolerate zero padding there, nothing else.
	if len(b) != off && (len(b) != (off+3)&^3 || !allZero(b[off:])) {
		return nil, nil, errorf(ErrSize, "%d bytes after %d records", len(b)-off, count)
	}
	return conns, skipped, nil
}

// decodeRecord parses one version 1 record r (exactly its length). skip is
// non-nil when the record is well formed but must be ignored.
func decodeRecord(r []byte) (c Conn, skip, err error) {
	be := binary.BigEndian
	fixed := recordLen4
	switch r[0] {
	case 0:
	case typeInet6:
		fixed = recordLen6
	default:
		return c, nil, errorf(ErrRecord, "type %#x", r[0])
	}
	if len(r) < fixed {
		return c, nil, errorf(ErrRecord, "length %d shorter than %d", len(r), fixed)
	}
	c.Proto = r[1]
	c.Flags = be.Uint32(r[4:]) &^ FlagHashed // kernel-internal, cleared as the kernel does
	c.State = be.Uint16(r[8:])
	cport, vport, dport := be.Uint16(r[10:]), be.Uint16(r[12:]), be.Uint16(r[14:])
	c.FwMark = be.Uint32(r[16:])
	c.Timeout = be.Uint32(r[20:])
	if fixed == recordLen4 {
		c.Client = netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[24:28])), cport)
		c.VIP = netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[28:32])), vport)
		c.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[32:36])), dport)
	} else {
		c.Client = netip.AddrPortFrom(netip.AddrFrom16([16]byte(r[24:40])), cport)
		c.VIP = netip.AddrPortFrom(netip.AddrFrom16([16]byte(r[40:56])), vport)
		c.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(r[56:72])), dport)
	}
	var seen [4]bool
	for p := fixed; p < len(r); {
		if p+2 > len(r) {
			return c, nil, errorf(ErrOption, "option header past record end")
		}
		typ, n := r[p], int(r[p+1])
		p += 2
		if n == 0 || p+n > len(r) {
			return c, nil, errorf(ErrOption, "option %d length %d", typ, n)
		}
		data := r[p : p+n]
		p += n
		known := typ &^ optFlagParam
		switch known {
		case optSeqData, optPEData, optPEName:
			if seen[known] {
				return c, nil, errorf(ErrOption, "option %d twice", known)
			}
			seen[known] = true
		}
		switch known {
		case optSeqData:
			if n != seqLen {
				return c, nil, errorf(ErrOption, "sequence option length %d", n)
			}
			c.Seq = readSeq(data, be)
		case optPEData:
			c.PEData = append([]byte(nil), data...)
		case optPEName:
			if n > MaxPEName {
				return c, nil, errorf(ErrOption, "pe name length %d", n)
			}
			c.PEName = string(data)
		default:
			if typ&optFlagParam == 0 && skip == nil {
				skip = errorf(ErrUnknownOption, "option type %d", typ)
			}
		}
	}
	if err := checkProtoState(c.Proto, c.State, c.Flags); err != nil {
		return c, nil, err
	}
	if skip == nil && len(c.PEData) > 0 && c.PEName == "" {
		skip = ErrPEData
	}
	return c, skip, nil
}

func decodeV0(b []byte) ([]Conn, error) {
	count := int(b[0])
	conns := make([]Conn, 0, count)
	be := binary.BigEndian
	off := headerLenV0
	for i := range count {
		if off+recordLenV0 > len(b) {
			return nil, errorf(ErrRecord, "record %d: %d bytes left", i, len(b)-off)
		}
		r := b[off : off+recordLenV0]
		if r[0] != 0 {
			return nil, errorf(ErrRecord, "record %d: reserved byte %#x", i, r[0])
		}
		c := Conn{
			Proto:  r[1],
			Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[8:12])), be.Uint16(r[2:])),
			VIP:    netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[12:16])), be.Uint16(r[4:])),
			Dest:   netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[16:20])), be.Uint16(r[6:])),
			Flags:  uint32(be.Uint16(r[20:])) &^ FlagHashed,
			State:  be.Uint16(r[22:]),
		}
		off += recordLenV0
		if c.Flags&FlagSeqMask != 0 {
			if off+seqLen > len(b) {
				return nil, errorf(ErrRecord, "record %d: sequence data past end", i)
			}
			// Version 0 copies struct ip_vs_seq in the master's host byte
			// order; assume it is ours, as a kernel backup does.
			c.Seq = readSeq(b[off:off+seqLen], binary.NativeEndian)
			off += seqLen
		}
		if err := checkProtoState(c.Proto, c.State, c.Flags); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	if off != len(b) {
		return nil, errorf(ErrSize, "%d bytes after %d records", len(b)-off, count)
	}
	return conns, nil
}

// EncodeV0 writes conns as one version 0 message (IPv4 only, no timeout,
// fwmark or PE data; sequence data in host byte order), as a kernel master
// with sync_version=0 does. It exists to test receivers against old
// masters; xvs's master sends version 1.
func EncodeV0(syncid uint8, conns []Conn) ([]byte, error) {
	if len(conns) > maxConns {
		return nil, fmt.Errorf("encode v0: %d conns, at most %d", len(conns), maxConns)
	}
	be := binary.BigEndian
	b := []byte{byte(len(conns)), syncid, 0, 0}
	for i := range conns {
		c := &conns[i]
		if v6, err := c.is6(); err != nil || v6 {
			return nil, fmt.Errorf("encode v0 conn %d: %w", i, errorf(ErrAddr, "version 0 is IPv4 only"))
		}
		if err := checkProtoState(c.Proto, c.State, c.Flags); err != nil {
			return nil, fmt.Errorf("encode v0 conn %d: %w", i, err)
		}
		if c.Flags > 0xffff {
			return nil, fmt.Errorf("encode v0 conn %d: flags %#x do not fit 16 bits", i, c.Flags)
		}
		b = append(b, 0, c.Proto)
		b = be.AppendUint16(b, c.Client.Port())
		b = be.AppendUint16(b, c.VIP.Port())
		b = be.AppendUint16(b, c.Dest.Port())
		for _, a := range []netip.Addr{c.Client.Addr(), c.VIP.Addr(), c.Dest.Addr()} {
			b = append(b, a.AsSlice()...)
		}
		b = be.AppendUint16(b, uint16(c.Flags&^FlagHashed))
		b = be.AppendUint16(b, c.State)
		if c.Flags&FlagSeqMask != 0 {
			s := c.Seq
			if s == nil {
				s = &SeqData{}
			}
			b = appendSeq(b, binary.NativeEndian, s)
		}
	}
	if len(b) > maxMessage {
		return nil, fmt.Errorf("encode v0: %d bytes", len(b))
	}
	be.PutUint16(b[2:], uint16(len(b)))
	return b, nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
