/* SPDX-License-Identifier: GPL-2.0 */
/*
 * frag.h: IP fragments of tracked conns, IPv4 and IPv6 (a fragment header
 * right after the fixed header), in both directions.
 *
 * The first fragment (offset 0, more fragments) carries the L4 header: it
 * is a hit like any packet and gets the full rewrite (its L4 checksum
 * covers the whole datagram, and the incremental update for addresses and
 * ports is as right for it as for a whole one). frag_record() then stores
 * (src, dst, id, proto) as received -> (conn, direction) in xvs_frags.
 * A later fragment (offset > 0) finds its conn there and gets only the
 * address rewrite (and the IPv4 header checksum); it is counted in the
 * conn's statistics, not in its TCP state.
 *
 * What goes to the kernel unchanged, as REASON_PASS_FRAGMENT: a later
 * fragment that arrives before its first one (nothing here can hold it
 * back safely; the kernel reassembles it with nothing, the datagram is
 * lost and the sender retries), a first fragment without a conn (e.g. the
 * first datagram of a UDP flow: the daemon would have to schedule on a
 * fragment) and fragments of other protocols. A later fragment with
 * TTL <= 1 passes (REASON_PASS_TTL); one too big for the egress passes
 * rewritten (REASON_PASS_MTU), the kernel fragments it (IPv4) or answers.
 */
#ifndef XVS_FRAG_H
#define XVS_FRAG_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "conn.h"
#include "fib.h"
#include "nat.h"
#include "parse.h"
#include "stats.h"

/* frag_key_of: the xvs_frags key of fragment p. */
static __always_inline void frag_key_of(struct pkt *p, struct frag_key *fk)
{
	__builtin_memcpy(fk->saddr, p->key.saddr, 16);
	__builtin_memcpy(fk->daddr, p->key.daddr, 16);
	fk->id = p->frag_id;
	fk->proto = p->key.proto;
	fk->family = p->key.family;
}

/* frag_record: remembers the conn of a first fragment for the later ones. */
static __always_inline void frag_record(struct pkt *p, struct hit *h)
{
	struct frag_key fk = {};
	struct frag f = {};

	if (p->frag != XVS_FRAG_FIRST)
		return;
	frag_key_of(p, &fk);
	__builtin_memcpy(&f.ckey, h->ckey, sizeof(f.ckey));
	f.out = h->out;
	bpf_map_update_elem(&xvs_frags, &fk, &f, BPF_ANY);
}

/* frag_hit: the conn of a later fragment and the steps before its
 * rewrite. Returns XVS_CONTINUE with h filled, or a reason. */
static __always_inline int frag_hit(struct pkt *p, struct hit *h)
{
	struct frag_key fk = {};
	struct frag *f;
	int r;

	frag_key_of(p, &fk);
	f = bpf_map_lookup_elem(&xvs_frags, &fk);
	if (!f || !conn_by_ckey(&f->ckey, f->out, h))
		return REASON_PASS_FRAGMENT;
	r = conn_admit(h);
	if (r != XVS_CONTINUE)
		return r;
	if (p->ttl <= 1)
		return REASON_PASS_TTL;
	conn_touch(h, p->ip_len);
	return XVS_CONTINUE;
}

/* frag_xdp: the XDP verdict of a later fragment (parse() said XVS_FRAG). */
static __always_inline int frag_xdp(struct xdp_md *ctx, __u32 ifindex,
				    struct pkt *p)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fp = {};
	struct hit h = {};
	__u32 diff;
	int r;

	r = frag_hit(p, &h);
	if (r != XVS_CONTINUE)
		return xdp_verdict(r);
	if (nat_xdp_l3(data_end, p, &h, &diff))
		return xdp_verdict(REASON_DROP_MALFORMED);
	fib_fill(&fp, p, &h, ifindex, p->ip_len);
	r = fib_result(bpf_fib_lookup(ctx, &fp, sizeof(fp), 0));
	if (r != XVS_CONTINUE)
		return xdp_verdict(r);
	return xdp_xmit(ctx, ifindex, p, fwd_reason(&h), &fp);
}

/* frag_tc: as frag_xdp for TC. */
static __always_inline int frag_tc(struct __sk_buff *skb, __u32 ifindex,
				   struct pkt *p)
{
	struct bpf_fib_lookup fp = {};
	struct hit h = {};
	int r;

	r = frag_hit(p, &h);
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	r = nat_tc_l3(skb, p, &h);
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	fib_fill(&fp, p, &h, ifindex, 0);
	r = fib_result(bpf_fib_lookup(skb, &fp, sizeof(fp), 0));
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	return tc_xmit(skb, p, fwd_reason(&h), &fp);
}

#endif /* XVS_FRAG_H */
