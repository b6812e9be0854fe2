/* SPDX-License-Identifier: GPL-2.0 */
/*
 * reply.h: ICMP errors the datapath answers itself, built in place from
 * the packet that caused them, before any rewrite, so that the sender can
 * match the quote to its own socket:
 *   - time exceeded (IPv4 type 11, ICMPv6 type 3) for a hit with TTL or
 *     hop limit <= 1 (IPVS: ip_vs_nat_xmit's TTL check);
 *   - fragmentation needed (IPv4 type 3 code 4, with the next-hop MTU) or
 *     packet too big (ICMPv6 type 2, with the MTU) for a hit whose
 *     rewritten packet does not fit the egress MTU and may not be
 *     fragmented (IPv4 DF; IPv6 always).
 * The answer comes from the VIP, in both directions: a client knows the
 * VIP; a real server's reply quoted back to it (RS -> client) is matched
 * by the quote, not by the sender, and the VIP routes back through the
 * director like everything else the RS sends (IPVS uses the director's
 * own address on the route to the RS; the datapath does not know it).
 * The quote is the original IP packet cut so that the answer is at most
 * 576 (IPv4) or 1280 (IPv6) bytes, as icmp_send()/icmp6_send() do. The
 * new IPv4 header: TOS 0xc0, id 0, no DF, TTL 64; IPv6: hop limit 64.
 * Answers are not rate limited (one answer per offending packet, never
 * larger than it).
 *
 * XDP: bpf_xdp_adjust_head prepends the headers, bpf_xdp_adjust_tail cuts
 * the quote, the MACs are swapped and the frame goes back with XDP_TX.
 * TC: bpf_skb_change_tail cuts the quote first (it also ends GSO: a GRO
 * aggregate is answered as one packet, quoting its start), then
 * bpf_skb_adjust_room (BPF_ADJ_ROOM_MAC) makes room for the headers and
 * bpf_redirect sends the answer out of the ingress device. TC builds no
 * answer for a frame with an inline VLAN tag (the helpers want an IP
 * skb->protocol); it keeps the old behaviour (passed to the kernel).
 *
 * CHECKSUM_PARTIAL (TC only: a local sender with tx offload, or its GSO
 * aggregate): the skb keeps csum_start at the quoted L4 header, and a
 * device without checksum offload (or skb_checksum_help) will write
 * ~fold(sum of quoted L4 header .. end) into the quoted L4 checksum,
 * which would spoil the ICMP checksum. BPF cannot see or clear ip_summed,
 * so reply_partial() adjusts the last quoted word (payload, or the urgent
 * pointer) so that this completion writes back the value already there.
 * For any other skb the change is one quoted word the receiver never
 * reads (it matches addresses, ports and the TCP sequence number).
 *
 * Contract: reply_xdp()/reply_tc() return the verdict (the reason counted)
 * or XVS_CONTINUE when nothing was changed and the caller decides; after
 * reply_xdp() packet pointers are invalid either way (the verifier says
 * so), after reply_tc() only offsets may be used.
 */
#ifndef XVS_REPLY_H
#define XVS_REPLY_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "csum.h"
#include "conn.h"
#include "parse.h"
#include "stats.h"

#define XVS_REPLY_MAX4 576
#define XVS_REPLY_MAX6 1280
#define XVS_REPLY_HDR4 (20 + 8)
#define XVS_REPLY_HDR6 (40 + 8)

/* One answer to build. */
struct reply {
	__u32 from[4];  /* source: the VIP */
	__u32 to[4];    /* destination: the sender of the original packet */
	__u32 info;     /* bytes 4..7 of the ICMP header, host order (MTU) */
	__u32 quote;    /* bytes of the original IP packet quoted */
	__u32 hdr;      /* bytes prepended: IP + ICMP header */
	__u32 l3_off;   /* 14, or 18 with a VLAN tag */
	__u8 type;
	__u8 code;
	__u8 family;
	__u8 pad;
	int reason;     /* counted when sent */
};

/* reply_init: an answer of type/code about packet p of hit h. */
static __always_inline void reply_init(struct reply *r, struct pkt *p,
				       struct hit *h, __u8 type, __u8 code,
				       __u32 info, int reason)
{
	__u32 max;

	__builtin_memcpy(r->from, h->ckey->daddr, 16);
	__builtin_memcpy(r->to, p->key.saddr, 16);
	r->family = p->key.family;
	r->hdr = r->family == FAMILY_INET ? XVS_REPLY_HDR4 : XVS_REPLY_HDR6;
	max = (r->family == FAMILY_INET ? XVS_REPLY_MAX4 : XVS_REPLY_MAX6) -
	      r->hdr;
	r->quote = p->ip_len < max ? p->ip_len : max;
	r->l3_off = p->l3_off;
	r->type = type;
	r->code = code;
	r->info = info;
	r->reason = reason;
}

/* reply_ttl: time exceeded, counted as REASON_TX_TTL. */
static __always_inline void reply_ttl(struct reply *r, struct pkt *p,
				      struct hit *h)
{
	if (p->key.family == FAMILY_INET)
		reply_init(r, p, h, 11, 0, 0, REASON_TX_TTL);
	else
		reply_init(r, p, h, 3, 0, 0, REASON_TX_TTL);
}

/* reply_mtu: fragmentation needed / packet too big with mtu. */
static __always_inline void reply_mtu(struct reply *r, struct pkt *p,
				      struct hit *h, __u32 mtu)
{
	if (p->key.family == FAMILY_INET)
		reply_init(r, p, h, 3, 4, mtu & 0xffff, REASON_TX_FRAG_NEEDED);
	else
		reply_init(r, p, h, 2, 0, mtu, REASON_TX_FRAG_NEEDED);
}

/* reply_eth: the new Ethernet header at data from the old one at
 * data + old (the same place in TC): MACs swapped, tag and EtherType kept. */
static __always_inline int reply_eth(void *data, void *data_end, __u32 old,
				     struct reply *r)
{
	__u8 *o = data + (old & 0xff), *n = data;
	__u8 mac[ETH_ALEN * 2];

	if ((void *)(o + 18) > data_end || (void *)(n + 18) > data_end)
		return -1;
	__builtin_memcpy(mac, o + ETH_ALEN, ETH_ALEN);
	__builtin_memcpy(mac + ETH_ALEN, o, ETH_ALEN);
	if (r->l3_off == 18)
		__builtin_memcpy(n + 12, o + 12, 6);
	else
		__builtin_memcpy(n + 12, o + 12, 2);
	__builtin_memcpy(n, mac, ETH_ALEN * 2);
	return 0;
}

/* reply_ip4: the new IPv4 and ICMP headers at l3, then the checksums. */
static __always_inline int reply_ip4(void *ctx, int xdp, void *data_end,
				     void *l3, struct reply *r)
{
	struct iphdr *iph = l3;
	__u8 *ic = (void *)(iph + 1);
	__u32 s = 0;

	if ((void *)(ic + 8) > data_end)
		return -1;
	iph->version = 4;
	iph->ihl = 5;
	iph->tos = 0xc0;
	iph->tot_len = bpf_htons(r->hdr + r->quote);
	iph->id = 0;
	iph->frag_off = 0;
	iph->ttl = 64;
	iph->protocol = IPPROTO_ICMP;
	iph->check = 0;
	iph->saddr = r->from[0];
	iph->daddr = r->to[0];
	if (csum_pkt(ctx, xdp, r->l3_off, sizeof(*iph), &s))
		return -1;
	iph->check = ~csum_fold16(s);
	ic[0] = r->type;
	ic[1] = r->code;
	*(__u16 *)(ic + 2) = 0;
	*(__be32 *)(ic + 4) = bpf_htonl(r->info);
	s = 0;
	if (csum_pkt(ctx, xdp, r->l3_off + sizeof(*iph), 8 + r->quote, &s))
		return -1;
	*(__u16 *)(ic + 2) = ~csum_fold16(s);
	return 0;
}

/* reply_ip6: as reply_ip4 for IPv6 and ICMPv6 (pseudo-header included). */
static __always_inline int reply_ip6(void *ctx, int xdp, void *data_end,
				     void *l3, struct reply *r)
{
	struct ipv6hdr *ip6 = l3;
	__u8 *ic = (void *)(ip6 + 1);
	__u32 len = 8 + r->quote, s;

	if ((void *)(ic + 8) > data_end)
		return -1;
	*(__be32 *)ip6 = bpf_htonl(6 << 28);
	ip6->payload_len = bpf_htons(len);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = 64;
	__builtin_memcpy(&ip6->saddr, r->from, 16);
	__builtin_memcpy(&ip6->daddr, r->to, 16);
	ic[0] = r->type;
	ic[1] = r->code;
	*(__u16 *)(ic + 2) = 0;
	*(__be32 *)(ic + 4) = bpf_htonl(r->info);
	s = csum_pseudo6(r->from, r->to, len, IPPROTO_ICMPV6);
	if (csum_pkt(ctx, xdp, r->l3_off + sizeof(*ip6), len, &s))
		return -1;
	*(__u16 *)(ic + 2) = ~csum_fold16(s);
	return 0;
}

/* reply_fill: the whole answer in a frame already of its final size, with
 * the old Ethernet header at data + old; ctx and xdp as for csum_pkt.
 * Returns 0 or -1. */
static __always_inline int reply_fill(void *ctx, int xdp, void *data,
				      void *data_end, __u32 old,
				      struct reply *r)
{
	void *l3 = data + (r->l3_off == 18 ? 18 : 14);

	if (reply_eth(data, data_end, old, r))
		return -1;
	if (r->family == FAMILY_INET)
		return reply_ip4(ctx, xdp, data_end, l3, r);
	return reply_ip6(ctx, xdp, data_end, l3, r);
}

/* reply_partial: see the file comment. TC only, on the cut and grown skb
 * before the headers are written (it stores through the helper). A quote
 * that holds the whole datagram with a valid L4 checksum (or an IPv4 UDP
 * checksum of 0) is not from a CHECKSUM_PARTIAL skb and stays as it is. */
static __always_inline void reply_partial(struct __sk_buff *skb,
					  struct reply *r)
{
	__u32 q = ETH_HLEN + r->hdr, end = q + r->quote, l4, fo, wo, tot;
	__u32 t = 0, ps = 0;
	__u8 b[10], proto;
	__u16 f, w, nw;

	if (bpf_skb_load_bytes(skb, q, b, sizeof(b)))
		return;
	if (r->family == FAMILY_INET) {
		l4 = q + (b[0] & 0xf) * 4;
		proto = b[9];
		tot = (__u32)b[2] << 8 | b[3];
	} else {
		l4 = q + 40;
		proto = b[6];
		tot = 40 + ((__u32)b[4] << 8 | b[5]);
	}
	if (proto == IPPROTO_TCP)
		fo = l4 + offsetof(struct tcphdr, check);
	else if (proto == IPPROTO_UDP)
		fo = l4 + offsetof(struct udphdr, check);
	else
		return;
	if (end < l4 || end > 0x7ff)
		return;
	wo = l4 + ((end - l4) & ~1U) - 2; /* last whole word of the quote */
	if (wo < fo + 2 || csum_pkt(skb, 0, l4, end - l4, &t))
		return;
	if (bpf_skb_load_bytes(skb, fo, &f, 2) ||
	    bpf_skb_load_bytes(skb, wo, &w, 2))
		return;
	if (!f && proto == IPPROTO_UDP && r->family == FAMILY_INET)
		return;
	if (tot == r->quote) {
		/* pseudo-header: addresses, protocol, L4 length */
		if (csum_pkt(skb, 0, q + (r->family == FAMILY_INET ? 12 : 8),
			     r->family == FAMILY_INET ? 8 : 32, &ps))
			return;
		ps = csum_add(ps, bpf_htons(proto));
		ps = csum_add(ps, bpf_htons(end - l4));
		if (csum_fold16(csum_add(ps, t)) == 0xffff)
			return;
	}
	/* t' = t - w + nw must fold to ~f, so that ~fold(t') == f */
	nw = csum_fold16(csum_add(csum_add((__u16)~f, w), ~t));
	bpf_skb_store_bytes(skb, wo, &nw, 2, 0);
}

/* reply_xdp: builds r in place and sends it back (XDP_TX). */
static __always_inline int reply_xdp(struct xdp_md *ctx, struct reply *r)
{
	void *data, *data_end;
	__u32 want;
	int cur;

	if (bpf_xdp_adjust_head(ctx, -(int)r->hdr))
		return XVS_CONTINUE;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	want = r->l3_off + r->hdr + r->quote;
	cur = data_end - data;
	if ((int)want < cur && bpf_xdp_adjust_tail(ctx, (int)want - cur))
		return xdp_verdict(REASON_DROP_TX_FAILED);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (reply_fill(ctx, 1, data, data_end, r->hdr, r))
		return xdp_verdict(REASON_DROP_TX_FAILED);
	reason_count(r->reason);
	return XDP_TX;
}

/* reply_tc: builds r in the skb and sends it out of ifindex (the ingress
 * device). */
static __always_inline int reply_tc(struct __sk_buff *skb, __u32 ifindex,
				    struct reply *r)
{
	__u32 want = r->l3_off + r->hdr + r->quote;
	void *data, *data_end;

	if (r->l3_off != ETH_HLEN)
		return XVS_CONTINUE;
	/* cut first: it also ends GSO (the answer is one small packet) */
	if (bpf_skb_change_tail(skb, r->l3_off + r->quote, 0))
		return XVS_CONTINUE;
	if (bpf_skb_adjust_room(skb, r->hdr, BPF_ADJ_ROOM_MAC, 0))
		return tc_verdict(REASON_DROP_TX_FAILED);
	reply_partial(skb, r);
	if (bpf_skb_pull_data(skb, want))
		return tc_verdict(REASON_DROP_TX_FAILED);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (reply_fill(skb, 0, data, data_end, 0, r))
		return tc_verdict(REASON_DROP_TX_FAILED);
	if (bpf_redirect(ifindex, 0) != TC_ACT_REDIRECT)
		return tc_verdict(REASON_DROP_REDIRECT);
	reason_count(r->reason);
	return TC_ACT_REDIRECT;
}

#endif /* XVS_REPLY_H */
