package maps

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"xvs/bpf"
)

// This file is the only place where Go values meet the C layouts: 16-byte
// network-order addresses, big-endian ports stored in Go uint16 fields, and
// address family numbers. Everything else in xvs speaks netip.

const (
	familyInet  = uint8(bpf.XvsFamilyFAMILY_INET)
	familyInet6 = uint8(bpf.XvsFamilyFAMILY_INET6)
)

// addrBytes returns a in the datapath's 16-byte form (IPv4 in the first 4
// bytes, the rest zero) and its family. IPv4-mapped IPv6 addresses count as
// IPv4, so that a flow has one key however the caller spelled it.
func addrBytes(a netip.Addr) (b [16]byte, family uint8, err error) {
	a = a.Unmap()
	switch {
	case a.Is4():
		v4 := a.As4()
		copy(b[:], v4[:])
		return b, familyInet, nil
	case a.Is6():
		if a.Zone() != "" {
			return b, 0, fmt.Errorf("address %s: zones are not supported", a)
		}
		return a.As16(), familyInet6, nil
	default:
		return b, 0, fmt.Errorf("invalid address %v", a)
	}
}

// addrFromBytes is the inverse of addrBytes.
func addrFromBytes(b [16]byte, family uint8) (netip.Addr, error) {
	switch family {
	case familyInet:
		return netip.AddrFrom4([4]byte(b[:4])), nil
	case familyInet6:
		return netip.AddrFrom16(b), nil
	default:
		return netip.Addr{}, fmt.Errorf("unknown address family %d", family)
	}
}

// portBE returns the value a Go uint16 field must hold so that its memory
// carries p in network order (a __be16 on the C side), on any host.
func portBE(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// portHost is the inverse of portBE.
func portHost(be uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], be)
	return binary.BigEndian.Uint16(b[:])
}

// svcKeyToBPF converts a service key; the key is zeroed before it is filled.
func svcKeyToBPF(k SvcKey) (bpf.XvsSvcKey, error) {
	var out bpf.XvsSvcKey
	addr, fam, err := addrBytes(k.Addr.Addr())
	if err != nil {
		return out, fmt.Errorf("service key: %w", err)
	}
	out.Addr = addr
	out.Port = portBE(k.Addr.Port())
	out.Proto = k.Proto
	out.Family = fam
	return out, nil
}

func svcKeyFromBPF(k bpf.XvsSvcKey) (SvcKey, error) {
	addr, err := addrFromBytes(k.Addr, k.Family)
	if err != nil {
		return SvcKey{}, fmt.Errorf("service key: %w", err)
	}
	return SvcKey{Proto: k.Proto, Addr: netip.AddrPortFrom(addr, portHost(k.Port))}, nil
}

// connKeyToBPF builds the client-side key {client -> VIP} of xvs_conns.
func connKeyToBPF(proto uint8, client, vip netip.AddrPort) (bpf.XvsConnKey, error) {
	var k bpf.XvsConnKey
	saddr, sfam, err := addrBytes(client.Addr())
	if err != nil {
		return k, fmt.Errorf("client: %w", err)
	}
	daddr, dfam, err := addrBytes(vip.Addr())
	if err != nil {
		return k, fmt.Errorf("virtual address: %w", err)
	}
	if sfam != dfam {
		return k, fmt.Errorf("client %s and virtual address %s differ in address family", client, vip)
	}
	k.Saddr = saddr
	k.Daddr = daddr
	k.Sport = portBE(client.Port())
	k.Dport = portBE(vip.Port())
	k.Proto = proto
	k.Family = sfam
	return k, nil
}

// connToBPF converts a conn into its client-side key, its server-side key
// {real server -> client} and its value. The conn's Dest address must be
// the one xvs_dests holds for its DestID (SetDest): the datapath rewrites
// to that one, and a conn must not say otherwise.
func (m *Maps) connToBPF(c Conn) (ck, sk bpf.XvsConnKey, v bpf.XvsConn, err error) {
	ck, err = connKeyToBPF(c.Proto, c.Client, c.VIP)
	if err != nil {
		return ck, sk, v, err
	}
	daddr, fam, err := addrBytes(c.Dest.Addr())
	if err != nil {
		return ck, sk, v, fmt.Errorf("real server: %w", err)
	}
	if fam != ck.Family {
		return ck, sk, v, fmt.Errorf("real server %s and virtual address %s differ in address family", c.Dest, c.VIP)
	}
	if err := m.checkDest(c.DestID); err != nil {
		return ck, sk, v, err
	}
	if have, ok := m.DestAddr(c.DestID); !ok || have != c.Dest.Addr().Unmap() {
		if !ok {
			return ck, sk, v, fmt.Errorf("real server %s: dest id %d has no address (SetDest)", c.Dest.Addr(), c.DestID)
		}
		return ck, sk, v, fmt.Errorf("real server %s: dest id %d is %s", c.Dest.Addr(), c.DestID, have)
	}
	v.Dport = portBE(c.Dest.Port())
	v.State = c.State
	v.Flags = c.Flags
	v.SvcId = c.SvcID
	v.DestId = c.DestID
	v.LastSeen = uint64(c.LastSeen)
	return ck, serverKey(ck, v, daddr), v, nil
}

// serverKey derives the xvs_rconns key of a stored conn whose real server
// has address daddr: replies come from the real server and go to the
// client.
func serverKey(ck bpf.XvsConnKey, v bpf.XvsConn, daddr [16]byte) bpf.XvsConnKey {
	var sk bpf.XvsConnKey
	sk.Saddr = daddr
	sk.Daddr = ck.Saddr
	sk.Sport = v.Dport
	sk.Dport = ck.Sport
	sk.Proto = ck.Proto
	sk.Family = ck.Family
	return sk
}

// serverKeyOf is serverKey with the real server's address from xvs_dests;
// false if v's dest id has none of ck's family (then no server-side key
// was ever installed for it).
func (m *Maps) serverKeyOf(ck bpf.XvsConnKey, v bpf.XvsConn) (bpf.XvsConnKey, bool) {
	a, ok := m.DestAddr(v.DestId)
	if !ok {
		return bpf.XvsConnKey{}, false
	}
	b, fam, err := addrBytes(a)
	if err != nil || fam != ck.Family {
		return bpf.XvsConnKey{}, false
	}
	return serverKey(ck, v, b), true
}

// rconnOf is the xvs_rconns value of a stored conn: what, with the
// server-side key, names its client-side key (the VIP comes from
// xvs_vips by service id).
func rconnOf(ck bpf.XvsConnKey, v bpf.XvsConn) bpf.XvsRconn {
	return bpf.XvsRconn{SvcId: v.SvcId, Vport: ck.Dport}
}

// connFromBPF converts a client-side key and its value back into a Conn;
// the real server's address is the one xvs_dests holds for its dest id
// (invalid if it holds none of the key's family: the conn is still
// listed, so that it can be expired).
func (m *Maps) connFromBPF(k bpf.XvsConnKey, v bpf.XvsConn) (Conn, error) {
	client, err := addrFromBytes(k.Saddr, k.Family)
	if err != nil {
		return Conn{}, fmt.Errorf("conn key: %w", err)
	}
	vip, _ := addrFromBytes(k.Daddr, k.Family)
	dest, ok := m.DestAddr(v.DestId)
	if ok && (dest.Is4() != (k.Family == familyInet)) {
		dest = netip.Addr{}
	}
	return Conn{
		Proto:  k.Proto,
		Client: netip.AddrPortFrom(client, portHost(k.Sport)),
		VIP:    netip.AddrPortFrom(vip, portHost(k.Dport)),
		Dest:   netip.AddrPortFrom(dest, portHost(v.Dport)),
		State:  v.State,
		// CONN_F_SHADOW is the tables' own bookkeeping, which each
		// install works out again.
		Flags:    v.Flags &^ uint8(bpf.XvsConnFlagsCONN_F_SHADOW),
		SvcID:    v.SvcId,
		DestID:   v.DestId,
		LastSeen: time.Duration(v.LastSeen),
	}, nil
}

// statsAdd adds one CPU's counters to s.
func statsAdd(s *Stats, c bpf.XvsStats) {
	s.Conns += c.Conns
	s.InPkts += c.Inpkts
	s.OutPkts += c.Outpkts
	s.InBytes += c.Inbytes
	s.OutBytes += c.Outbytes
}
