/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flow.h: the flow cache (struct flow and its rules in xvs.h): a copy of
 * an established conn per CPU, found by the packet's tuple before the
 * conn tables, copied again by the next full lookup once it is
 * XVS_FLOW_TTL_NS old.
 *
 * A hit on a copy (h->cached) runs the rest of the hit path unchanged
 * with h->c pointing at the copy; conn_account then only counts the
 * statistics. A full hit that qualifies is copied after conn_account
 * (flow_keep). Entries are per CPU, so nothing here is shared but
 * xvs_flow_void, which is written only when a conn is removed or shadowed
 * (flow_void, lib/conn.h).
 */
#ifndef XVS_FLOW_H
#define XVS_FLOW_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "conn.h"
#include "parse.h"
#include "state.h"

#define FLOW_HASH_MUL 0x9e3779b97f4a7c15ULL

/* Entries of xvs_flows per CPU: a power of two of at least 2, or 0 for
 * no flow cache (xvsd --flow-cache); the loader sizes the map to match
 * (bpf.SizeFlows). */
const volatile __u32 xvs_flows_per_cpu = XVS_FLOWS;

_Static_assert(sizeof(struct flow) == 64, "a flow is one cache line");
_Static_assert((XVS_FLOWS & (XVS_FLOWS - 1)) == 0 && XVS_FLOWS >= 2,
	       "XVS_FLOWS is a power of two, of whole sets");

/* flow_set: the first entry of tuple k's set (two entries) in this CPU's
 * part of xvs_flows (xvs_flows_per_cpu entries). A multiplicative hash of the key's five words:
 * collisions cost a full lookup, never a wrong answer (an entry holds the
 * whole key). */
static __always_inline __u32 flow_set(const struct conn_key *k)
{
	const __u64 *w = (const __u64 *)k;
	__u64 x = w[0];

	x = (x ^ w[1]) * FLOW_HASH_MUL;
	x = (x ^ w[2]) * FLOW_HASH_MUL;
	x = (x ^ w[3]) * FLOW_HASH_MUL;
	x = (x ^ w[4]) * FLOW_HASH_MUL;
	return bpf_get_smp_processor_id() * xvs_flows_per_cpu +
	       ((__u32)(x >> 40) & (xvs_flows_per_cpu / 2 - 1)) * 2;
}

/* flow_segment: whether packet p may be answered from a copy: there is a
 * flow cache, p is not a fragment, and for TCP a segment with ACK and no
 * SYN, FIN or RST. */
static __always_inline int flow_segment(const struct pkt *p)
{
	if (!xvs_flows_per_cpu || p->frag)
		return 0;
	return p->key.proto != IPPROTO_TCP ||
	       (p->tcp_flags & (XVS_TCP_SYN | XVS_TCP_FIN | XVS_TCP_RST |
				XVS_TCP_ACK)) == XVS_TCP_ACK;
}

/* flow_live: whether entry f, copied at f->c.last_seen, may answer at
 * now: younger than xvs_flow_ttl_ns (XVS_FLOW_TTL_NS) and after the last
 * void. */
static __always_inline int flow_live(const struct flow *f, __u64 now)
{
	__u32 zero = 0;
	__u64 *void_ns = bpf_map_lookup_elem(&xvs_flow_void, &zero);
	__u64 at = f->c.last_seen;

	return void_ns && now - at < xvs_flow_ttl_ns &&
	       at > *(volatile __u64 *)void_ns;
}

/* flow_ckey: h->ckey for a server-side copy: the client-side key rebuilt
 * in xvs_rckey as conn_find_in does. Returns 1, or 0 if it cannot be. */
static __always_inline int flow_ckey(struct pkt *p, struct hit *h,
				     const struct flow *f)
{
	struct rconn rc = {};

	rc.svc_id = f->c.svc_id;
	rc.vport = (__be16)f->c.pad;
	h->ckey = conn_rckey(&p->key, &rc);
	return h->ckey != NULL;
}

/* flow_lookup: the entry of set i (flow_set) that holds tuple k, or
 * NULL. */
static __always_inline struct flow *flow_lookup(__u32 i,
						const struct conn_key *k)
{
	struct flow *f = bpf_map_lookup_elem(&xvs_flows, &i);

	if (f && conn_key_eq(&f->key, k))
		return f;
	i++;
	f = bpf_map_lookup_elem(&xvs_flows, &i);
	if (f && conn_key_eq(&f->key, k))
		return f;
	return NULL;
}

/* flow_find: the packet's copy, if it has a live one. Returns 1 with h
 * set as conn_find sets it, h->cached, and h->now read, or 0. */
static __always_inline int flow_find(struct pkt *p, struct hit *h)
{
	struct flow *f;
	__u64 now;

	if (!flow_segment(p))
		return 0;
	f = flow_lookup(flow_set(&p->key), &p->key);
	if (!f)
		return 0;
	now = bpf_ktime_get_coarse_ns();
	if (!flow_live(f, now))
		return 0;
	h->out = (f->c.pad & XVS_FLOW_OUT) != 0;
	if (h->out) {
		if (!flow_ckey(p, h, f))
			return 0;
	} else {
		h->ckey = &p->key;
	}
	h->c = &f->c;
	h->fresh = 0;
	h->cached = 1;
	h->now = now;
	return 1;
}

/* flow_free: the entry of set i to copy tuple k into: the one holding k,
 * else one that is no longer live (or empty), else NULL: live entries of
 * other tuples keep their places, so that colliding flows do not evict
 * each other on every packet. */
static __always_inline struct flow *flow_free(__u32 i,
					      const struct conn_key *k,
					      __u64 now)
{
	struct flow *a = bpf_map_lookup_elem(&xvs_flows, &i);
	struct flow *b;

	i++;
	b = bpf_map_lookup_elem(&xvs_flows, &i);
	if (!a || !b)
		return NULL;
	if (conn_key_eq(&a->key, k))
		return a;
	if (conn_key_eq(&b->key, k))
		return b;
	if (!flow_live(a, now))
		return a;
	if (!flow_live(b, now))
		return b;
	return NULL;
}

/* flow_keep: copies the conn of a full hit that conn_account has just
 * counted into the packet's set, if the copy may stand in for it (see
 * xvs.h) and the set has room (flow_free). Not for a conn's first packet
 * or the one that moved it to the main pair (h->first): a flow of one
 * packet each way (a DNS query) takes no place from the flows that stay. */
static __always_inline void flow_keep(struct pkt *p, struct hit *h)
{
	struct flow *f;

	if (h->cached || h->first || !h->avail || !flow_segment(p))
		return;
	if (p->key.proto == IPPROTO_TCP &&
	    (h->fresh || *(volatile __u8 *)&h->c->state != STATE_ESTABLISHED))
		return;
	f = flow_free(flow_set(&p->key), &p->key, h->now);
	if (!f)
		return;
	__builtin_memcpy(&f->key, &p->key, sizeof(f->key));
	__builtin_memcpy(&f->c, h->c, sizeof(f->c));
	f->c.last_seen = h->now;
	f->c.pad = h->out ? XVS_FLOW_OUT | h->ckey->dport : 0;
}

#endif /* XVS_FLOW_H */
