/* SPDX-License-Identifier: GPL-2.0 */
/*
 * budget.h: the first-packet budget (struct budget in xvs.h): token
 * buckets per service and a global one, refilled from bpf_ktime_get_ns.
 *
 * Contract: budget_take(svc_id) returns 1 if a first packet of service
 * svc_id may be punted (a token was taken from both buckets, or they are
 * unlimited), 0 if it must be dropped. Lock-free: one CPU wins the
 * compare-and-swap of last_ns and adds the refill; tokens are taken with
 * atomic adds and given back when the bucket was empty. Under contention
 * the clamp to burst can race with a take, so a bucket may admit a few
 * packets more than burst; it never admits fewer than the rate allows.
 */
#ifndef XVS_BUDGET_H
#define XVS_BUDGET_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../maps.h"

#define XVS_NSEC 1000000000ULL
/* Longest idle time credited at once: keeps elapsed * rate in 64 bits for
 * rate <= XVS_BUDGET_RATE_MAX. */
#define XVS_BUDGET_SPAN (64 * XVS_NSEC)

/* budget_refill: credits b with the tokens earned since last_ns. */
static __always_inline void budget_refill(struct budget *b, __u64 now)
{
	__u64 last = *(volatile __u64 *)&b->last_ns;
	__u64 rate = b->rate, burst = b->burst ? b->burst : b->rate;
	__u64 el = now - last, add, next;
	__s64 t;

	if ((__s64)el <= 0)
		return;
	if (el > XVS_BUDGET_SPAN) {
		add = XVS_BUDGET_SPAN / XVS_NSEC * rate;
		next = now;
	} else {
		add = el * rate / XVS_NSEC;
		next = last + add * XVS_NSEC / rate; /* keeps the remainder */
	}
	if (!add)
		return;
	if (__sync_val_compare_and_swap(&b->last_ns, last, next) != last)
		return; /* another CPU credited this interval */
	t = __sync_fetch_and_add(&b->tokens, add) + add;
	if (t > (__s64)burst)
		b->tokens = burst;
}

/* budget_take1: takes one token from bucket idx; 1 if taken or unlimited. */
static __always_inline int budget_take1(__u32 idx)
{
	struct budget *b = bpf_map_lookup_elem(&xvs_budget, &idx);

	if (!b || !b->rate || b->rate > XVS_BUDGET_RATE_MAX)
		return 1; /* unlimited */
	budget_refill(b, bpf_ktime_get_ns());
	if (__sync_fetch_and_add(&b->tokens, -1) > 0)
		return 1;
	__sync_fetch_and_add(&b->tokens, 1);
	return 0;
}

/* budget_give: gives back the token budget_take1(idx) took. */
static __always_inline void budget_give(__u32 idx)
{
	struct budget *b = bpf_map_lookup_elem(&xvs_budget, &idx);

	if (b && b->rate && b->rate <= XVS_BUDGET_RATE_MAX)
		__sync_fetch_and_add(&b->tokens, 1);
}

/* budget_take: see the file comment. */
static __always_inline int budget_take(__u32 svc_id)
{
	if (svc_id >= XVS_MAX_SVCS)
		svc_id = XVS_BUDGET_GLOBAL; /* no own bucket: global only */
	if (!budget_take1(svc_id))
		return 0;
	if (svc_id == XVS_BUDGET_GLOBAL)
		return 1;
	if (budget_take1(XVS_BUDGET_GLOBAL))
		return 1;
	budget_give(svc_id);
	return 0;
}

#endif /* XVS_BUDGET_H */
