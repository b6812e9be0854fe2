package ipvsadm

import (
	"encoding/binary"
	"net/netip"
)

// ipvsadm sorts with libipvs's ipvs_cmp_services/ipvs_cmp_dests, which
// compare addresses (and fwmarks) by subtracting host-order 32-bit words
// and reading the difference as a signed int. Addresses more than 2^31
// apart therefore compare "backwards" and the order is not transitive;
// the result then depends on the sort algorithm, so this file also
// reproduces glibc's qsort (a top-down merge sort).

// addrWords is the address as host-order 32-bit words (one for IPv4).
func addrWords(a netip.Addr) []uint32 {
	if a.Is4() {
		b := a.As4()
		return []uint32{binary.BigEndian.Uint32(b[:])}
	}
	b := a.As16()
	return []uint32{
		binary.BigEndian.Uint32(b[0:]), binary.BigEndian.Uint32(b[4:]),
		binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:]),
	}
}

// family is AF_INET (2) or AF_INET6 (10).
func family(a netip.Addr) int {
	if a.Is4() {
		return 2
	}
	return 10
}

// cmpAddrQuirk compares two addresses of one family like libipvs.
func cmpAddrQuirk(a, b netip.Addr) int {
	wa, wb := addrWords(a), addrWords(b)
	for i := range wa {
		if r := int32(wa[i] - wb[i]); r != 0 {
			return int(r)
		}
	}
	return 0
}

func cmpServices(a, b *ServiceEntry) int {
	if r := int32(a.FwMark - b.FwMark); r != 0 {
		return int(r)
	}
	aa, ba := a.Addr.Addr(), b.Addr.Addr()
	if r := family(aa) - family(ba); r != 0 {
		return r
	}
	if r := int(a.Proto) - int(b.Proto); r != 0 {
		return r
	}
	if r := cmpAddrQuirk(aa, ba); r != 0 {
		return r
	}
	return int(a.Addr.Port()) - int(b.Addr.Port())
}

func cmpDests(a, b *DestEntry) int {
	aa, ba := a.Addr.Addr(), b.Addr.Addr()
	// Mixed families only occur with tunnels; keep IPv4 first.
	if r := family(aa) - family(ba); r != 0 {
		return r
	}
	if r := cmpAddrQuirk(aa, ba); r != 0 {
		return r
	}
	return int(a.Addr.Port()) - int(b.Addr.Port())
}

// msort is glibc's msort_with_tmp: split in halves (n/2 first), sort
// each, merge taking from the left while cmp <= 0.
func msort[T any](v []T, cmp func(a, b *T) int) {
	if len(v) < 2 {
		return
	}
	tmp := make([]T, len(v))
	msortRec(v, tmp, cmp)
}

func msortRec[T any](b, tmp []T, cmp func(a, b *T) int) {
	n := len(b)
	if n <= 1 {
		return
	}
	n1 := n / 2
	b1, b2 := b[:n1], b[n1:]
	msortRec(b1, tmp, cmp)
	msortRec(b2, tmp, cmp)
	i, j, k := 0, 0, 0
	for i < len(b1) && j < len(b2) {
		if cmp(&b1[i], &b2[j]) <= 0 {
			tmp[k] = b1[i]
			i++
		} else {
			tmp[k] = b2[j]
			j++
		}
		k++
	}
	k += copy(tmp[k:], b1[i:])
	copy(b, tmp[:k])
}

// sortedServices returns a sorted copy.
func sortedServices(s []ServiceEntry) []ServiceEntry {
	c := append([]ServiceEntry(nil), s...)
	msort(c, cmpServices)
	return c
}

// sortedDests returns a sorted copy.
func sortedDests(d []DestEntry) []DestEntry {
	c := append([]DestEntry(nil), d...)
	msort(c, cmpDests)
	return c
}
