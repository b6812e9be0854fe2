/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nat.h: the rewrite of a hit. Client -> server: destination VIP:vport
 * becomes RS:rport (RS: the address of the conn's dest, xvs_dests).
 * Server -> client: source RS:rport becomes VIP:vport.
 * The IPv4 header checksum and the TCP/UDP checksum (pseudo-header
 * included) are updated incrementally; an IPv4 UDP checksum of 0 stays 0
 * and a UDP result of 0 is written as 0xffff. The TTL is decremented
 * separately, only when we transmit the packet ourselves.
 *
 * XDP writes through the packet pointers of struct pkt; TC goes through
 * the skb helpers (bpf_l3/l4_csum_replace handle CHECKSUM_PARTIAL and
 * CHECKSUM_COMPLETE skbs), by offset, since they move packet data.
 */
#ifndef XVS_NAT_H
#define XVS_NAT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "csum.h"
#include "conn.h"
#include "parse.h"

/* nat_target: the new address and port of a hit and whether the source
 * (server -> client) or the destination (client -> server) changes. */
static __always_inline void nat_target(struct hit *h, __u32 to[4],
				       __be16 *to_port)
{
	if (h->out) {
		__builtin_memcpy(to, h->ckey->daddr, 16);
		*to_port = h->ckey->dport;
	} else {
		/* conn_admit let no client -> server packet through without
		 * its dest; the check is for the verifier. */
		if (h->d)
			__builtin_memcpy(to, h->d->addr, 16);
		else
			__builtin_memcpy(to, h->ckey->daddr, 16);
		*to_port = h->c->dport;
	}
}

/* nat_xdp_l4: rewrites the port and applies diff (address change) plus the
 * port change to the L4 checksum. Returns 0, or -1 if out of bounds. */
static __always_inline int nat_xdp_l4(void *data_end, struct pkt *p,
				      int out, __be16 to_port, __u32 diff)
{
	struct tcphdr *th = p->l4;
	struct udphdr *uh = p->l4;
	__be16 *port;
	__u16 *sum, s;

	if (p->key.proto == IPPROTO_TCP) {
		if ((void *)(th + 1) > data_end)
			return -1;
		port = out ? &th->source : &th->dest;
		sum = &th->check;
	} else {
		if ((void *)(uh + 1) > data_end)
			return -1;
		port = out ? &uh->source : &uh->dest;
		sum = &uh->check;
	}
	diff = csum_diff2(diff, *port, to_port);
	*port = to_port;
	if (p->key.proto == IPPROTO_UDP && *sum == 0 &&
	    p->key.family == FAMILY_INET)
		return 0;
	s = csum_apply(*sum, diff);
	if (p->key.proto == IPPROTO_UDP && s == 0)
		s = 0xffff;
	*sum = s;
	return 0;
}

/* nat_xdp_l3: rewrites the IP address of a hit in place (with the IPv4
 * header checksum) and adds the change to *diff, for the L4 checksum.
 * Returns 0, or -1 if the header is out of bounds (parse() proved it is
 * not; the check is for the verifier). */
static __always_inline int nat_xdp_l3(void *data_end, struct pkt *p,
				      struct hit *h, __u32 *diff)
{
	struct iphdr *iph = p->l3;
	struct ipv6hdr *ip6 = p->l3;
	__u32 to[4], d = 0, *addr;
	__be16 to_port;
	int i;

	nat_target(h, to, &to_port);
	if (p->key.family == FAMILY_INET) {
		if ((void *)(iph + 1) > data_end)
			return -1;
		addr = h->out ? &iph->saddr : &iph->daddr;
		d = csum_diff4(0, *addr, to[0]);
		*addr = to[0];
		iph->check = csum_apply(iph->check, d);
	} else {
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		addr = h->out ? ip6->saddr.in6_u.u6_addr32 :
				ip6->daddr.in6_u.u6_addr32;
		for (i = 0; i < 4; i++) {
			d = csum_diff4(d, addr[i], to[i]);
			addr[i] = to[i];
		}
	}
	*diff = d;
	return 0;
}

/* nat_xdp: rewrites a hit in place. Returns XVS_CONTINUE, or
 * REASON_DROP_MALFORMED if a header is out of bounds (parse() already
 * proved it is not; the check is for the verifier). */
static __always_inline int nat_xdp(void *data_end, struct pkt *p,
				   struct hit *h)
{
	__u32 to[4], diff = 0;
	__be16 to_port;

	nat_target(h, to, &to_port);
	if (nat_xdp_l3(data_end, p, h, &diff))
		return REASON_DROP_MALFORMED;
	if (nat_xdp_l4(data_end, p, h->out, to_port, diff))
		return REASON_DROP_MALFORMED;
	return XVS_CONTINUE;
}

/* ttl_dec_xdp: decrements the TTL (and fixes the IPv4 header checksum) or
 * the hop limit; parse() proved the header is in bounds, recheck for the
 * verifier. */
static __always_inline void ttl_dec_xdp(void *data_end, struct pkt *p)
{
	struct iphdr *iph = p->l3;
	struct ipv6hdr *ip6 = p->l3;
	__u16 *w, old;

	if (p->key.family == FAMILY_INET) {
		if ((void *)(iph + 1) > data_end)
			return;
		w = (__u16 *)&iph->ttl; /* ttl and protocol */
		old = *w;
		iph->ttl--;
		csum_replace2(&iph->check, old, *w);
	} else {
		if ((void *)(ip6 + 1) > data_end)
			return;
		ip6->hop_limit--;
	}
}

/* nat_tc_addr: the checksum updates for the address change from -> to
 * (1 word for IPv4, 4 for IPv6); no L4 checksum when p->csum_off is 0 (a
 * later fragment). Returns 0 or a helper's error. */
static __always_inline int nat_tc_addr(struct __sk_buff *skb, struct pkt *p,
				       __u32 from[4], __u32 to[4], __u64 l4f)
{
	__u32 ipsum = p->l3_off + offsetof(struct iphdr, check);
	int i, err;

	if (p->key.family == FAMILY_INET) {
		err = bpf_l3_csum_replace(skb, ipsum, from[0], to[0], 4);
		if (err || !p->csum_off)
			return err;
		return bpf_l4_csum_replace(skb, p->csum_off, from[0], to[0],
					   BPF_F_PSEUDO_HDR | l4f | 4);
	}
	if (!p->csum_off)
		return 0;
	for (i = 0; i < 4; i++) {
		err = bpf_l4_csum_replace(skb, p->csum_off, from[i], to[i],
					  BPF_F_PSEUDO_HDR | l4f | 4);
		if (err)
			return err;
	}
	return 0;
}

/* nat_tc: rewrites a hit through the skb helpers. Returns XVS_CONTINUE,
 * or REASON_DROP_MALFORMED if a helper failed (the packet may be half
 * rewritten, so it must not go anywhere). */
static __always_inline int nat_tc(struct __sk_buff *skb, struct pkt *p,
				  struct hit *h)
{
	__u64 l4f = p->key.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	int v4 = p->key.family == FAMILY_INET;
	__u32 from[4], to[4], addr_off, port_off;
	__be16 from_port, to_port;

	nat_target(h, to, &to_port);
	if (h->out) {
		__builtin_memcpy(from, p->key.saddr, 16);
		from_port = p->key.sport;
		addr_off = p->l3_off + (v4 ? offsetof(struct iphdr, saddr) :
					     offsetof(struct ipv6hdr, saddr));
		port_off = p->l4_off; /* source port */
	} else {
		__builtin_memcpy(from, p->key.daddr, 16);
		from_port = p->key.dport;
		addr_off = p->l3_off + (v4 ? offsetof(struct iphdr, daddr) :
					     offsetof(struct ipv6hdr, daddr));
		port_off = p->l4_off + 2; /* destination port */
	}
	if (nat_tc_addr(skb, p, from, to, l4f))
		return REASON_DROP_MALFORMED;
	if (bpf_l4_csum_replace(skb, p->csum_off, from_port, to_port, l4f | 2))
		return REASON_DROP_MALFORMED;
	if (bpf_skb_store_bytes(skb, addr_off, to, v4 ? 4 : 16, 0))
		return REASON_DROP_MALFORMED;
	if (bpf_skb_store_bytes(skb, port_off, &to_port, 2, 0))
		return REASON_DROP_MALFORMED;
	return XVS_CONTINUE;
}

/* nat_tc_l3: rewrites only the IP address of a hit (a later fragment: no
 * L4 header). Returns XVS_CONTINUE or REASON_DROP_MALFORMED. */
static __always_inline int nat_tc_l3(struct __sk_buff *skb, struct pkt *p,
				     struct hit *h)
{
	int v4 = p->key.family == FAMILY_INET;
	__u32 from[4], to[4], off;
	__be16 to_port;

	nat_target(h, to, &to_port);
	if (h->out) {
		__builtin_memcpy(from, p->key.saddr, 16);
		off = v4 ? offsetof(struct iphdr, saddr) :
			   offsetof(struct ipv6hdr, saddr);
	} else {
		__builtin_memcpy(from, p->key.daddr, 16);
		off = v4 ? offsetof(struct iphdr, daddr) :
			   offsetof(struct ipv6hdr, daddr);
	}
	p->csum_off = 0;
	if (nat_tc_addr(skb, p, from, to, 0))
		return REASON_DROP_MALFORMED;
	if (bpf_skb_store_bytes(skb, p->l3_off + off, to, v4 ? 4 : 16, 0))
		return REASON_DROP_MALFORMED;
	return XVS_CONTINUE;
}

/* ttl_dec_tc: as ttl_dec_xdp through the skb helpers; returns 0 or an
 * error. */
static __always_inline int ttl_dec_tc(struct __sk_buff *skb, struct pkt *p)
{
	__u8 ttl = p->ttl - 1;
	__u16 old, new;

	if (p->key.family == FAMILY_INET6)
		return bpf_skb_store_bytes(skb, p->l3_off + 7, &ttl, 1, 0);
	old = p->ttl | (__u16)p->ipproto << 8; /* raw ttl, protocol word */
	new = ttl | (__u16)p->ipproto << 8;
	if (bpf_l3_csum_replace(skb, p->l3_off + offsetof(struct iphdr, check),
				old, new, 2))
		return -1;
	return bpf_skb_store_bytes(skb, p->l3_off + offsetof(struct iphdr, ttl),
				   &ttl, 1, 0);
}

#endif /* XVS_NAT_H */
