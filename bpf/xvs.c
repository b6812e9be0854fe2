// SPDX-License-Identifier: GPL-2.0
//go:build ignore

/*
 * xvs.c: the entry points of the datapath, XDP and TC (tcx ingress). Both
 * run the same steps from the helpers in lib/:
 *
 *   parse -> ICMP error:     icmp (translate for its conn, lib/icmp.h)
 *         -> later fragment: frag (follow its first fragment, lib/frag.h)
 *         -> flow_find: a live copy of an established conn (lib/flow.h)
 *              -> hit on the copy: conn_admit -> conn_account (stats)
 *                 -> as below from TTL on
 *         -> conn_find_first
 *              -> miss: first packet to a VIP, within the budget:
 *                       scheduled here from its service's ring
 *                       (lib/sched.h), on to conn_admit as a hit | punt
 *                       | pass | drop
 *              -> hit:  SYN reusing a closed conn: its service
 *                       has a ring: the old conn removed, the packet
 *                       starts over (a tail call) | punt
 *                       conn_admit -> conn_account -> flow_keep
 *                       -> TTL <= 1: answer time exceeded
 *                       -> fib (XDP, to a real server: its cached
 *                          route while valid) -> too big, DF: answer
 *                          frag needed
 *                       -> nat -> (first fragment: record) -> xmit
 *
 * Every verdict counts exactly one enum reason in xvs_reasons.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"
#include "lib/parse.h"
#include "lib/csum.h"
#include "lib/stats.h"
#include "lib/state.h"
#include "lib/conn.h"
#include "lib/nat.h"
#include "lib/fib.h"
#include "lib/budget.h"
#include "lib/sched.h"
#include "lib/punt.h"
#include "lib/reply.h"
#include "lib/icmp.h"
#include "lib/frag.h"
#include "lib/flow.h"

/* Never used: they make the enums part of BTF so that bpf2go emits them. */
const volatile enum reason xvs_enum_reason;
const volatile enum tcp_state xvs_enum_state;
const volatile enum family xvs_enum_family;
const volatile enum conn_flags xvs_enum_cflags;
const volatile enum dest_flags xvs_enum_dflags;
const volatile enum event xvs_enum_event;
const volatile enum ring_kind xvs_enum_ring_kind;
const volatile enum ring_flags xvs_enum_ring_flags;
const volatile enum inst_result xvs_enum_inst_result;

/* hit_xdp: a hit from conn_admit on; ifindex is the ingress device. */
static __always_inline int hit_xdp(struct xdp_md *ctx, __u32 ifindex,
				   struct pkt *p, struct hit *h)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fp = {};
	struct reply rp = {};
	int r, a;

	r = conn_admit(h);
	if (r != XVS_CONTINUE)
		return xdp_verdict(r);
	conn_account(p, h);
	flow_keep(p, h);
	if (p->ttl <= 1) {
		reply_ttl(&rp, p, h);
	} else {
		r = fib_xdp(ctx, &fp, p, h, ifindex);
		if (r != REASON_PASS_MTU || !p->df) {
			if (nat_xdp(data_end, p, h) != XVS_CONTINUE)
				return xdp_verdict(REASON_DROP_MALFORMED);
			frag_record(p, h);
			if (r != XVS_CONTINUE)
				return xdp_verdict(r);
			return xdp_xmit(ctx, ifindex, p, fwd_reason(h), &fp);
		}
		reply_mtu(&rp, p, h, fp.mtu_result);
	}
	a = reply_xdp(ctx, &rp);
	if (a != XVS_CONTINUE)
		return a;
	/* No headroom (never with XDP's 256 bytes): a TTL-expired packet
	 * goes to the kernel unchanged; a too big one cannot go on, its
	 * pointers are gone. */
	return xdp_verdict(rp.reason == REASON_TX_TTL ? REASON_PASS_TTL :
							REASON_DROP_TX_FAILED);
}

SEC("xdp")
int xvs_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 ifindex = ctx->ingress_ifindex;
	struct svc *svc = NULL;
	__u32 tap = 0;
	struct pkt p = {};
	struct hit h = {};
	int r;

	xvs_opaque(ifindex); /* read now, not through a kept &ctx->field */
	r = parse(data, data_end, data_end - data, 0, &p);
	if (r == XVS_ICMP)
		return icmp_xdp(ctx, ifindex, &p);
	if (r == XVS_FRAG)
		return frag_xdp(ctx, ifindex, &p);
	if (r != XVS_CONTINUE)
		return xdp_verdict(r);
	if (flow_find(&p, &h)) {
		r = XVS_CONTINUE;
	} else if (!conn_find_first(&p, &h, &svc)) {
		if (p.frag)
			return xdp_verdict(REASON_PASS_FRAGMENT);
		r = punt_decide(&p, ifindex, &tap, &h, svc);
	} else {
		r = punt_reuse(ctx, &xvs_progs_xdp, &p, &h, ifindex, &tap);
	}
	if (r == REASON_PUNT)
		return punt_xdp(tap);
	if (r != XVS_NEW && r != XVS_CONTINUE)
		return xdp_verdict(r);
	return hit_xdp(ctx, ifindex, &p, &h);
}

/* tc_parse: makes the headers directly readable and writable, then parses.
 * A failed pull leaves the linear part short and parse() reports the
 * packet malformed. */
static __always_inline int tc_parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 want = skb->len < XVS_HDR_MAX ? skb->len : XVS_HDR_MAX;

	if (data + want > data_end) {
		bpf_skb_pull_data(skb, want);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	return parse(data, data_end, skb->len, skb->gso_size != 0, p);
}

/* hit_tc: as hit_xdp for TC. An answer the skb helpers refuse (GSO,
 * inline VLAN tag) leaves the old behaviour: TTL passed unchanged, too big
 * passed rewritten. */
static __always_inline int hit_tc(struct __sk_buff *skb, __u32 ifindex,
				  struct pkt *p, struct hit *h)
{
	struct bpf_fib_lookup fp = {};
	struct reply rp = {};
	int r, a;

	r = conn_admit(h);
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	conn_account(p, h);
	flow_keep(p, h);
	if (p->ttl <= 1) {
		reply_ttl(&rp, p, h);
		r = REASON_PASS_TTL;
	} else {
		fib_fill(&fp, p, h, ifindex, 0);
		r = fib_result(bpf_fib_lookup(skb, &fp, sizeof(fp), 0));
		if (r == XVS_CONTINUE && !fib_gso_fits(skb, p, fp.mtu_result))
			r = REASON_PASS_MTU;
		if (r == REASON_PASS_MTU && p->df)
			reply_mtu(&rp, p, h, fp.mtu_result);
	}
	if (rp.reason) {
		a = reply_tc(skb, ifindex, &rp);
		if (a != XVS_CONTINUE)
			return a;
		if (r == REASON_PASS_TTL)
			return tc_verdict(r);
	}
	if (nat_tc(skb, p, h) != XVS_CONTINUE)
		return tc_verdict(REASON_DROP_MALFORMED);
	frag_record(p, h);
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	return tc_xmit(skb, p, fwd_reason(h), &fp);
}

SEC("tc")
int xvs_tc(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ingress_ifindex;
	struct svc *svc = NULL;
	__u32 tap = 0;
	struct pkt p = {};
	struct hit h = {};
	int r;

	xvs_opaque(ifindex); /* read now, not through a kept &skb->field */
	r = tc_parse(skb, &p);
	if (r == XVS_ICMP)
		return icmp_tc(skb, ifindex, &p);
	if (r == XVS_FRAG)
		return frag_tc(skb, ifindex, &p);
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	if (flow_find(&p, &h)) {
		r = XVS_CONTINUE;
	} else if (!conn_find_first(&p, &h, &svc)) {
		if (p.frag)
			return tc_verdict(REASON_PASS_FRAGMENT);
		r = punt_decide(&p, ifindex, &tap, &h, svc);
	} else {
		r = punt_reuse(skb, &xvs_progs_tc, &p, &h, ifindex, &tap);
	}
	if (r == REASON_PUNT)
		return punt_tc(tap);
	if (r != XVS_NEW && r != XVS_CONTINUE)
		return tc_verdict(r);
	return hit_tc(skb, ifindex, &p, &h);
}

char _license[] SEC("license") = "GPL";
