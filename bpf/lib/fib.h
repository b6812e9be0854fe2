/* SPDX-License-Identifier: GPL-2.0 */
/*
 * fib.h: the next hop of a rewritten packet (bpf_fib_lookup) and its
 * transmission: TTL decrement, MACs, redirect.
 *
 * Only a packet we transmit ourselves has its TTL decremented. When the
 * lookup says the neighbour is unresolved (REASON_PASS_NO_NEIGH), the route
 * fails (REASON_PASS_FIB) or the packet is too big for the egress MTU and
 * may be fragmented (IPv4 without DF: REASON_PASS_MTU), the rewritten
 * packet goes to the kernel with its MACs untouched: the stack forwards it
 * (decrementing the TTL, resolving the neighbour, fragmenting), as for any
 * forwarded packet. Too big and not to be fragmented: the caller answers
 * (lib/reply.h). The lookup of a hit is made before the rewrite, from the
 * conn (fib_fill), so that the original packet is still there to quote;
 * that of an ICMP error after it, from the rewritten header (fib_fill_l3).
 */
#ifndef XVS_FIB_H
#define XVS_FIB_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "conn.h"
#include "nat.h"
#include "parse.h"
#include "stats.h"

#define XVS_AF_INET 2
#define XVS_AF_INET6 10

/* fib_fill: the lookup for the packet as rewritten, from ifindex (the
 * ingress device). tot_len 0 skips the helper's MTU check against it (TC:
 * the skb's own length is checked instead, which handles GSO). */
static __always_inline void fib_fill(struct bpf_fib_lookup *fp, struct pkt *p,
				     struct hit *h, __u32 ifindex, __u16 tot_len)
{
	const __u8 *src = h->out ? h->ckey->daddr : p->key.saddr;
	const __u8 *dst = h->out || !h->d ? p->key.daddr : h->d->addr;

	fp->l4_protocol = p->key.proto;
	fp->sport = h->out ? h->ckey->dport : p->key.sport;
	fp->dport = h->out ? p->key.dport : h->c->dport;
	fp->tot_len = tot_len;
	fp->ifindex = ifindex;
	if (p->key.family == FAMILY_INET) {
		fp->family = XVS_AF_INET;
		fp->tos = p->tos;
		__builtin_memcpy(&fp->ipv4_src, src, 4);
		__builtin_memcpy(&fp->ipv4_dst, dst, 4);
	} else {
		fp->family = XVS_AF_INET6;
		__builtin_memcpy(fp->ipv6_src, src, 16);
		__builtin_memcpy(fp->ipv6_dst, dst, 16);
	}
}

/* fib_fill_l3: the lookup for a packet already rewritten (an ICMP error,
 * a later fragment), from the addresses in its IP header; no ports.
 * Returns 0, or -1 if the header is out of bounds (for the verifier). */
static __always_inline int fib_fill_l3(void *data_end,
				       struct bpf_fib_lookup *fp,
				       struct pkt *p, __u32 ifindex,
				       __u16 tot_len)
{
	struct iphdr *iph = p->l3;
	struct ipv6hdr *ip6 = p->l3;

	fp->l4_protocol = p->ipproto;
	fp->tot_len = tot_len;
	fp->ifindex = ifindex;
	if (p->key.family == FAMILY_INET) {
		if ((void *)(iph + 1) > data_end)
			return -1;
		fp->family = XVS_AF_INET;
		fp->tos = p->tos;
		fp->ipv4_src = iph->saddr;
		fp->ipv4_dst = iph->daddr;
		return 0;
	}
	if ((void *)(ip6 + 1) > data_end)
		return -1;
	fp->family = XVS_AF_INET6;
	__builtin_memcpy(fp->ipv6_src, &ip6->saddr, 16);
	__builtin_memcpy(fp->ipv6_dst, &ip6->daddr, 16);
	return 0;
}

/* fib_result: XVS_CONTINUE for a usable next hop, else the pass reason. */
static __always_inline int fib_result(long rc)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		return XVS_CONTINUE;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return REASON_PASS_NO_NEIGH;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return REASON_PASS_MTU;
	}
	return REASON_PASS_FIB;
}

/* route_valid: whether rt still holds the next hop of dest d: made for
 * its address, in routing generation gen, less than
 * XVS_ROUTE_MAX_AGE_NS before now. */
static __always_inline int route_valid(const struct route *rt,
				       const struct dest *d, __u32 gen,
				       __u64 now)
{
	const __u64 *a = (const __u64 *)rt->addr, *b = (const __u64 *)d->addr;

	_Static_assert(__builtin_offsetof(struct route, addr) % 8 == 0 &&
		       __builtin_offsetof(struct dest, addr) % 8 == 0,
		       "addresses compared as two words");
	return rt->stamp && rt->gen == gen &&
	       now - rt->stamp < XVS_ROUTE_MAX_AGE_NS &&
	       ((a[0] ^ b[0]) | (a[1] ^ b[1])) == 0;
}

/* route_use: fills fp from rt as bpf_fib_lookup would have, with its MTU
 * check of tot_len. */
static __always_inline int route_use(const struct route *rt,
				     struct bpf_fib_lookup *fp)
{
	int r = fp->tot_len > rt->mtu ? REASON_PASS_MTU : XVS_CONTINUE;

	fp->ifindex = rt->ifindex;
	__builtin_memcpy(fp->smac, rt->smac, ETH_ALEN);
	__builtin_memcpy(fp->dmac, rt->dmac, ETH_ALEN);
	fp->mtu_result = rt->mtu; /* union with tot_len */
	return r;
}

/* route_keep: stores in rt the next hop a successful lookup put in fp;
 * on success the helper returns the path MTU in mtu_result. */
static __always_inline void route_keep(struct route *rt,
				       const struct bpf_fib_lookup *fp,
				       const struct dest *d, __u32 gen,
				       __u64 now)
{
	__builtin_memcpy(rt->addr, d->addr, 16);
	rt->gen = gen;
	rt->ifindex = fp->ifindex;
	rt->mtu = fp->mtu_result;
	__builtin_memcpy(rt->smac, fp->smac, ETH_ALEN);
	__builtin_memcpy(rt->dmac, fp->dmac, ETH_ALEN);
	rt->stamp = now;
}

/* fib_xdp: the next hop of hit h's packet in XDP (fib_fill from ingress
 * ifindex, then bpf_fib_lookup), taken from its dest's entry in
 * xvs_routes for a client -> server packet while that entry is valid, and
 * kept there after a successful lookup; the clock is h->now, read by
 * conn_account. Returns fib_result's verdict, with fp filled as the
 * helper fills it. */
static __always_inline int fib_xdp(struct xdp_md *ctx,
				   struct bpf_fib_lookup *fp, struct pkt *p,
				   struct hit *h, __u32 ifindex)
{
	struct route *rt = NULL;
	struct cfg *cfg = NULL;
	__u32 zero = 0;
	long rc;

	fib_fill(fp, p, h, ifindex, p->ip_len);
	if (!h->out && h->d) {
		cfg = bpf_map_lookup_elem(&xvs_cfg, &zero);
		rt = bpf_map_lookup_elem(&xvs_routes, &h->c->dest_id);
	}
	if (cfg && rt && route_valid(rt, h->d, cfg->route_gen, h->now))
		return route_use(rt, fp);
	rc = bpf_fib_lookup(ctx, fp, sizeof(*fp), 0);
	if (cfg && rt && rc == BPF_FIB_LKUP_RET_SUCCESS && fp->mtu_result)
		route_keep(rt, fp, h->d, cfg->route_gen, h->now);
	return fib_result(rc);
}

/* fib_gso_fits: whether the segments of a GSO skb (TC) fit mtu, the
 * egress MTU the lookup returned. bpf_fib_lookup itself lets every GSO
 * skb pass (is_skb_forwardable), and a redirected segment larger than the
 * link would be dropped silently: say REASON_PASS_MTU instead, so that
 * the caller answers (DF) or the kernel fragments. */
static __always_inline int fib_gso_fits(struct __sk_buff *skb, struct pkt *p,
					__u32 mtu)
{
	__u32 gso = skb->gso_size;

	if (!gso || !mtu)
		return 1;
	return p->l4_off - p->l3_off + p->l4_hlen + gso <= mtu;
}

/* fwd_reason: the reason counted for a packet we transmit. */
static __always_inline int fwd_reason(struct hit *h)
{
	return h->out ? REASON_FWD_OUT : REASON_FWD_IN;
}

/* xdp_xmit: sends the rewritten packet to fp's next hop: XDP_TX when the
 * egress is the ingress device, else a redirect through xvs_tx, counting
 * reason. An egress device missing from xvs_tx is not ours to send on: the
 * rewritten packet goes to the kernel, which forwards it
 * (REASON_PASS_FIB). */
static __always_inline int xdp_xmit(struct xdp_md *ctx, __u32 ingress,
				    struct pkt *p, int reason,
				    struct bpf_fib_lookup *fp)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 egress = fp->ifindex;
	int tx = egress == ingress;

	if (!tx && !bpf_map_lookup_elem(&xvs_tx, &egress))
		return xdp_verdict(REASON_PASS_FIB);
	if ((void *)(eth + 1) > data_end)
		return xdp_verdict(REASON_DROP_MALFORMED);
	ttl_dec_xdp(data_end, p);
	__builtin_memcpy(eth->h_dest, fp->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fp->smac, ETH_ALEN);
	if (tx) {
		reason_count(reason);
		return XDP_TX;
	}
	if (bpf_redirect_map(&xvs_tx, egress, 0) != XDP_REDIRECT)
		return xdp_verdict(REASON_DROP_REDIRECT);
	reason_count(reason);
	return XDP_REDIRECT;
}

/* tc_xmit: as xdp_xmit for TC: bpf_redirect to the egress device. */
static __always_inline int tc_xmit(struct __sk_buff *skb, struct pkt *p,
				   int reason, struct bpf_fib_lookup *fp)
{
	if (ttl_dec_tc(skb, p))
		return tc_verdict(REASON_DROP_MALFORMED);
	if (bpf_skb_store_bytes(skb, 0, fp->dmac, ETH_ALEN, 0) ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, fp->smac, ETH_ALEN, 0))
		return tc_verdict(REASON_DROP_MALFORMED);
	if (bpf_redirect(fp->ifindex, 0) != TC_ACT_REDIRECT)
		return tc_verdict(REASON_DROP_REDIRECT);
	reason_count(reason);
	return TC_ACT_REDIRECT;
}

#endif /* XVS_FIB_H */
