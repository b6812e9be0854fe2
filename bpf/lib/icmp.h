/* SPDX-License-Identifier: GPL-2.0 */
/*
 * icmp.h: ICMP errors about tracked conns (IPv4 types 3, 4, 11; ICMPv6 1,
 * 2, 3), translated in both directions as IPVS does (reference 5.10):
 *
 *   - from the client side, about a packet the director sent to the
 *     client (quoted VIP:vport -> client): the quote reversed is the
 *     client-side key. Outer destination -> RS, quoted source VIP -> RS,
 *     quoted source port vport -> rport; sent to the real server and
 *     counted as an in-packet (REASON_FWD_ICMP_IN);
 *   - from the real-server side (the RS or a router between), about a
 *     packet sent to the RS (quoted client -> RS:rport): the quote reversed
 *     is the server-side key. Outer source -> VIP, quoted destination RS
 *     -> VIP, quoted destination port rport -> vport; sent to the client
 *     and counted as an out-packet (REASON_FWD_ICMP_OUT).
 *
 * Checksums, all incremental, every change being a known 16-bit word
 * change: the outer IPv4 header, the quoted IPv4 header, the quoted L4
 * checksum if the quote holds it (an IPv4 UDP checksum of 0 stays 0), and
 * the ICMP checksum, which covers the quote (and, for ICMPv6, the
 * pseudo-header with the outer address change).
 *
 * As IPVS, the ICMP checksum is verified, over the whole message (through
 * csum_pkt), once a conn matched (REASON_DROP_ICMP_CSUM when bad). That
 * works for messages up to XVS_CSUM_MAX (1536) bytes; longer ones (no
 * router sends them: RFC 1812/4443 cap errors at 576/1280 bytes) pass
 * untouched as REASON_PASS_ICMP, as do errors without a matching conn and
 * quotes that hold no ports (a later fragment, an IPv6 extension header
 * other than the fragment header of a first fragment, not TCP/UDP).
 * TTL <= 1 is passed (REASON_PASS_TTL): no error about an error.
 *
 * The TC entry pulls the whole message into the linear part first and
 * shares the rewrite with XDP through direct packet access: every change
 * leaves the sum over each checksummed region unchanged except for the
 * IPv6 address words, so skb->csum (CHECKSUM_COMPLETE) stays right for
 * IPv4 and is of no use after a redirect anyway.
 */
#ifndef XVS_ICMP_H
#define XVS_ICMP_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "csum.h"
#include "conn.h"
#include "fib.h"
#include "nat.h"
#include "parse.h"
#include "stats.h"

/* Largest skb the TC entry pulls whole for an ICMP error. */
#define XVS_ICMP_PULL 2048

/* The quoted packet of an ICMP error. */
struct emb {
	void *ip;  /* quoted IP header */
	void *l4;  /* quoted TCP/UDP header; its ports are within the quote */
	int sum;   /* offset of the quoted L4 checksum in its header, or -1 */
};

/* icmp_quote4: the quoted IPv4 header at q; fills the addresses of p->key
 * reversed and l4. Returns 0 or -1. */
static __always_inline int icmp_quote4(void *data_end, __u32 room, void *q,
				       struct pkt *p, struct emb *e)
{
	struct iphdr *ei = q;
	__u32 hl;

	if ((void *)(ei + 1) > data_end || room < sizeof(*ei))
		return -1;
	if (ei->version != 4 || ei->ihl < 5)
		return -1;
	hl = ei->ihl * 4;
	if (ei->frag_off & bpf_htons(XVS_IP_OFFSET))
		return -1; /* a later fragment: no ports */
	if (room < hl + 4)
		return -1;
	p->key.proto = ei->protocol;
	__builtin_memcpy(p->key.saddr, &ei->daddr, 4);
	__builtin_memcpy(p->key.daddr, &ei->saddr, 4);
	e->ip = ei;
	e->l4 = q + hl;
	e->sum = -1;
	if (ei->protocol == IPPROTO_TCP && room >= hl + 18)
		e->sum = offsetof(struct tcphdr, check);
	if (ei->protocol == IPPROTO_UDP && room >= hl + 8)
		e->sum = offsetof(struct udphdr, check);
	return 0;
}

/* icmp_quote6: as icmp_quote4 for a quoted IPv6 header, which may be
 * followed by the fragment header of a first fragment. */
static __always_inline int icmp_quote6(void *data_end, __u32 room, void *q,
				       struct pkt *p, struct emb *e)
{
	struct ipv6hdr *ei = q;
	struct ip6_frag *fh;
	__u32 hl = sizeof(*ei);
	__u8 nh;

	if ((void *)(ei + 1) > data_end || room < sizeof(*ei) + 4)
		return -1;
	if (ei->version != 6)
		return -1;
	nh = ei->nexthdr;
	e->l4 = ei + 1;
	if (nh == XVS_IPPROTO_FRAGMENT) {
		fh = (void *)(ei + 1);
		if ((void *)(fh + 1) > data_end || room < hl + sizeof(*fh) + 4)
			return -1;
		if (fh->frag_off & bpf_htons(0xfff8))
			return -1; /* a later fragment: no ports */
		nh = fh->nexthdr;
		e->l4 = fh + 1;
		hl += sizeof(*fh);
	}
	p->key.proto = nh;
	__builtin_memcpy(p->key.saddr, &ei->daddr, 16);
	__builtin_memcpy(p->key.daddr, &ei->saddr, 16);
	e->ip = ei;
	e->sum = -1;
	if (nh == IPPROTO_TCP && room >= hl + 18)
		e->sum = offsetof(struct tcphdr, check);
	if (nh == IPPROTO_UDP && room >= hl + 8)
		e->sum = offsetof(struct udphdr, check);
	return 0;
}

/* icmp_parse: reads the packet quoted by the ICMP error at p->l4 and makes
 * p->key its tuple reversed, which is how the conn tables know it (see the
 * file comment). Returns XVS_CONTINUE or REASON_PASS_ICMP. */
static __always_inline int icmp_parse(void *data_end, struct pkt *p,
				      struct emb *e)
{
	__u32 room = p->l3_off + p->ip_len - p->l4_off - 8; /* quote bytes */
	void *q = p->l4 + 8;
	__be16 *ports;
	int r;

	if (p->key.family == FAMILY_INET)
		r = icmp_quote4(data_end, room, q, p, e);
	else
		r = icmp_quote6(data_end, room, q, p, e);
	if (r || (p->key.proto != IPPROTO_TCP && p->key.proto != IPPROTO_UDP))
		return REASON_PASS_ICMP;
	ports = e->l4;
	if ((void *)(ports + 2) > data_end)
		return REASON_PASS_ICMP;
	p->key.sport = ports[1];
	p->key.dport = ports[0];
	return XVS_CONTINUE;
}

/* icmp_csum_ok: whether the ICMP message at p->l4 checks out. Returns 1,
 * 0 (bad), or -1 (too long to verify). */
static __always_inline int icmp_csum_ok(void *ctx, int xdp, void *data_end,
					struct pkt *p)
{
	struct ipv6hdr *ip6 = p->l3;
	__u32 len = p->l3_off + p->ip_len - p->l4_off, s = 0;

	if (p->key.family == FAMILY_INET6) {
		if ((void *)(ip6 + 1) > data_end)
			return -1;
		s = csum_pseudo6(ip6->saddr.in6_u.u6_addr32,
				 ip6->daddr.in6_u.u6_addr32, len,
				 IPPROTO_ICMPV6);
	}
	if (csum_pkt(ctx, xdp, p->l4_off, len, &s))
		return -1;
	return csum_fold16(s) == 0xffff;
}

/* icmp_nat_addr: the outer and quoted address changes; returns the change
 * of the ICMP checksum so far through *idiff and the quoted address change
 * (for the quoted L4 checksum) through *adiff. 0 or -1. */
static __always_inline int icmp_nat_addr(void *data_end, struct pkt *p,
					 struct emb *e, struct hit *h,
					 __u32 to[4], __u32 *adiff,
					 __u32 *idiff)
{
	struct iphdr *iph = p->l3, *ei = e->ip;
	struct ipv6hdr *ip6 = p->l3, *ei6 = e->ip;
	__u32 od = 0, ad = 0, *oa, *ea;
	__u16 old;
	int i;

	if (p->key.family == FAMILY_INET) {
		if ((void *)(iph + 1) > data_end || (void *)(ei + 1) > data_end)
			return -1;
		oa = h->out ? &iph->saddr : &iph->daddr;
		od = csum_diff4(0, *oa, to[0]);
		*oa = to[0];
		iph->check = csum_apply(iph->check, od);
		ea = h->out ? &ei->daddr : &ei->saddr;
		ad = csum_diff4(0, *ea, to[0]);
		*ea = to[0];
		old = ei->check;
		ei->check = csum_apply(old, ad);
		*adiff = ad;
		*idiff = csum_diff2(ad, old, ei->check);
		return 0;
	}
	if ((void *)(ip6 + 1) > data_end || (void *)(ei6 + 1) > data_end)
		return -1;
	oa = h->out ? ip6->saddr.in6_u.u6_addr32 : ip6->daddr.in6_u.u6_addr32;
	ea = h->out ? ei6->daddr.in6_u.u6_addr32 : ei6->saddr.in6_u.u6_addr32;
	for (i = 0; i < 4; i++) {
		od = csum_diff4(od, oa[i], to[i]); /* pseudo-header */
		oa[i] = to[i];
		ad = csum_diff4(ad, ea[i], to[i]);
		ea[i] = to[i];
	}
	*adiff = ad;
	*idiff = csum_add(ad, od);
	return 0;
}

/* icmp_nat: rewrites an ICMP error of hit h in place (see the file
 * comment). Returns 0, or -1 if a header is out of bounds. */
static __always_inline int icmp_nat(void *data_end, struct pkt *p,
				    struct emb *e, struct hit *h)
{
	__u32 to[4], adiff = 0, idiff = 0, d;
	__be16 to_port, *ports = e->l4, *port;
	__u16 *sum, old, s;

	nat_target(h, to, &to_port);
	if (icmp_nat_addr(data_end, p, e, h, to, &adiff, &idiff))
		return -1;
	if ((void *)(ports + 2) > data_end)
		return -1;
	port = h->out ? &ports[1] : &ports[0];
	d = csum_diff2(adiff, *port, to_port);
	idiff = csum_diff2(idiff, *port, to_port);
	*port = to_port;
	if (e->sum >= 0) {
		sum = e->l4 + (e->sum & 0x1f);
		if ((void *)(sum + 1) > data_end)
			return -1;
		old = *sum;
		if (!(old == 0 && p->key.proto == IPPROTO_UDP &&
		      p->key.family == FAMILY_INET)) {
			s = csum_apply(old, d);
			if (p->key.proto == IPPROTO_UDP && s == 0)
				s = 0xffff;
			*sum = s;
			idiff = csum_diff2(idiff, old, s);
		}
	}
	sum = p->l4 + 2;
	if ((void *)(sum + 1) > data_end)
		return -1;
	*sum = csum_apply(*sum, idiff);
	return 0;
}

/* icmp_reason: the reason of a translated error in direction out. */
static __always_inline int icmp_reason(struct hit *h)
{
	return h->out ? REASON_FWD_ICMP_OUT : REASON_FWD_ICMP_IN;
}

/* icmp_hit: the common steps for both entries on a linear packet: the
 * quote, the conn, the checksum, admission, TTL, rewrite, bookkeeping.
 * Returns XVS_CONTINUE (rewritten, go on with fib) or a reason. */
static __always_inline int icmp_hit(void *ctx, int xdp, void *data_end,
				    struct pkt *p, struct hit *h)
{
	struct emb e = {};
	int r;

	r = icmp_parse(data_end, p, &e);
	if (r != XVS_CONTINUE)
		return r;
	if (!conn_find(p, h))
		return REASON_PASS_ICMP;
	r = icmp_csum_ok(ctx, xdp, data_end, p);
	if (r < 0)
		return REASON_PASS_ICMP;
	if (!r)
		return REASON_DROP_ICMP_CSUM;
	r = conn_admit(h);
	if (r != XVS_CONTINUE)
		return r;
	if (p->ttl <= 1)
		return REASON_PASS_TTL;
	if (icmp_nat(data_end, p, &e, h))
		return REASON_DROP_MALFORMED;
	conn_touch(h, p->ip_len);
	return XVS_CONTINUE;
}

/* icmp_xdp: the XDP verdict of an ICMP error (parse() said XVS_ICMP). */
static __always_inline int icmp_xdp(struct xdp_md *ctx, __u32 ifindex,
				    struct pkt *p)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fp = {};
	struct hit h = {};
	int r;

	r = icmp_hit(ctx, 1, data_end, p, &h);
	if (r != XVS_CONTINUE)
		return xdp_verdict(r);
	if (fib_fill_l3(data_end, &fp, p, ifindex, p->ip_len))
		return xdp_verdict(REASON_DROP_MALFORMED);
	r = fib_result(bpf_fib_lookup(ctx, &fp, sizeof(fp), 0));
	if (r != XVS_CONTINUE)
		return xdp_verdict(r);
	return xdp_xmit(ctx, ifindex, p, icmp_reason(&h), &fp);
}

/* icmp_tc: as icmp_xdp; pulls the whole skb first and parses again. */
static __always_inline int icmp_tc(struct __sk_buff *skb, __u32 ifindex,
				   struct pkt *p)
{
	struct bpf_fib_lookup fp = {};
	void *data, *data_end;
	struct hit h = {};
	int r;

	if (skb->len > XVS_ICMP_PULL || bpf_skb_pull_data(skb, skb->len))
		return tc_verdict(REASON_PASS_ICMP);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	__builtin_memset(p, 0, sizeof(*p));
	r = parse(data, data_end, skb->len, skb->gso_size != 0, p);
	if (r != XVS_ICMP)
		return tc_verdict(r < 0 ? REASON_PASS_ICMP : r);
	r = icmp_hit(skb, 0, data_end, p, &h);
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	if (fib_fill_l3(data_end, &fp, p, ifindex, 0))
		return tc_verdict(REASON_DROP_MALFORMED);
	r = fib_result(bpf_fib_lookup(skb, &fp, sizeof(fp), 0));
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	return tc_xmit(skb, p, icmp_reason(&h), &fp);
}

#endif /* XVS_ICMP_H */
