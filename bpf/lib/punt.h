/* SPDX-License-Identifier: GPL-2.0 */
/*
 * punt.h: what happens to a packet without a conn. A first packet (TCP SYN
 * without ACK and RST, or any UDP datagram) to a virtual service goes to
 * the punt device, where xvsd schedules it, installs the conn and writes
 * the frame back. Other packets to a VIP go to the kernel's stack
 * (REASON_PASS_NOT_FIRST: it answers, as with IPVS); packets to anything
 * else are not ours (REASON_PASS_NO_SVC). Frames the daemon wrote back
 * (ingress is the punt device) that still miss are dropped
 * (REASON_DROP_PUNT_MISS), never punted again nor passed. While the daemon's
 * liveness stamp is stale, first packets are dropped
 * (REASON_DROP_PUNT_STALE); clients retry. First packets over the
 * service's or the global budget (lib/budget.h) are dropped
 * (REASON_DROP_PUNT_BUDGET).
 *
 * Port reuse (IPVS conn_reuse_mode=1, reference 5.8): a TCP SYN that hits
 * a client-side conn in TIME_WAIT or CLOSE takes the budget of a first
 * packet. For a service with a ring the datapath removes the old conn
 * (lib/sched.h sched_reuse) and the SYN starts over as a first packet,
 * scheduled from the ring. Otherwise the SYN is punted, and the daemon
 * expires the old conn and schedules anew, or keeps it and writes the
 * SYN back, which then follows the old conn (on the punt device a reuse
 * SYN is never punted again). While no daemon is alive the SYN follows
 * the old conn, as before port reuse was handled.
 */
#ifndef XVS_PUNT_H
#define XVS_PUNT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "parse.h"
#include "state.h"
#include "stats.h"
#include "budget.h"
#include "conn.h"
#include "sched.h"

/* punt_first: whether the packet may create a conn (IPVS, sloppy off). */
static __always_inline int punt_first(struct pkt *p)
{
	if (p->key.proto != IPPROTO_TCP)
		return 1;
	return (p->tcp_flags & (XVS_TCP_SYN | XVS_TCP_ACK | XVS_TCP_RST)) ==
	       XVS_TCP_SYN;
}

/* punt_live: whether cfg names a punt device and its daemon is alive. */
static __always_inline int punt_live(struct cfg *cfg)
{
	return cfg && cfg->punt_ifindex &&
	       (__s64)(bpf_ktime_get_ns() - cfg->alive_ns) <=
		       (__s64)cfg->stale_ns;
}

/* punt_decide: the verdict of a miss that arrived on ingress, addressed
 * to virtual service svc (NULL: none; conn_find_first found it). Returns
 * XVS_NEW with h set (the datapath scheduled it: lib/sched.h),
 * REASON_PUNT with *tap set to the punt device, or a pass/drop reason.
 * A frame the daemon wrote back still missing is scheduled here if its
 * service has a ring (the daemon expired a closed conn for a reusing SYN
 * and left the pick to the ring); its budget was taken when it was
 * punted. */
static __always_inline int punt_decide(struct pkt *p, __u32 ingress,
				       __u32 *tap, struct hit *h,
				       struct svc *svc)
{
	struct cfg *cfg;
	__u32 zero = 0;
	int on_tap;

	cfg = bpf_map_lookup_elem(&xvs_cfg, &zero);
	on_tap = cfg && cfg->punt_ifindex && ingress == cfg->punt_ifindex;
	if (on_tap) {
		if (svc && punt_first(p) &&
		    sched_ring(p, svc->id, h) == SCHED_NEW)
			return XVS_NEW;
		return REASON_DROP_PUNT_MISS;
	}
	if (!svc)
		return REASON_PASS_NO_SVC;
	if (!punt_first(p))
		return REASON_PASS_NOT_FIRST;
	if (!punt_live(cfg))
		return REASON_DROP_PUNT_STALE;
	if (!budget_take(svc->id))
		return REASON_DROP_PUNT_BUDGET;
	if (sched_ring(p, svc->id, h) == SCHED_NEW)
		return XVS_NEW;
	*tap = cfg->punt_ifindex;
	return REASON_PUNT;
}

/* punt_reuse: whether a hit is a SYN reusing the port of a TCP conn in
 * TIME_WAIT or CLOSE (see the file comment). Where its service has a ring
 * the old conn is removed and the packet starts over in progs[0] (ctx's
 * own program: xvs_progs_xdp or xvs_progs_tc) as a first packet, where
 * its budget is taken and its conn scheduled. A tail call, not a second
 * inlined copy of the scheduler and the hit: that copy took the XDP
 * program over the verifier's limit of a million instructions. Returns
 * XVS_CONTINUE (no: a plain hit), REASON_PUNT with *tap set (also when
 * the tail call fails: the daemon then finds no conn and schedules it),
 * or REASON_DROP_PUNT_BUDGET. Not for fragments. */
static __always_inline int punt_reuse(void *ctx, void *progs, struct pkt *p,
				      struct hit *h, __u32 ingress,
				      __u32 *tap)
{
	struct cfg *cfg;
	__u32 zero = 0, svc_id;
	__u8 st;

	if (h->out || p->key.proto != IPPROTO_TCP || p->frag || !punt_first(p))
		return XVS_CONTINUE;
	st = *(volatile __u8 *)&h->c->state;
	if (st != STATE_TIME_WAIT && st != STATE_CLOSE)
		return XVS_CONTINUE;
	cfg = bpf_map_lookup_elem(&xvs_cfg, &zero);
	if (!punt_live(cfg) || ingress == cfg->punt_ifindex)
		return XVS_CONTINUE;
	/* read now: sched_reuse may free h->c */
	svc_id = h->c->svc_id;
	if (sched_reuse(p, h))
		bpf_tail_call(ctx, progs, 0);
	if (!budget_take(svc_id))
		return REASON_DROP_PUNT_BUDGET;
	*tap = cfg->punt_ifindex;
	return REASON_PUNT;
}

/* punt_xdp: the redirect of a punted packet to tap. */
static __always_inline int punt_xdp(__u32 tap)
{
	if (bpf_redirect_map(&xvs_tx, tap, 0) != XDP_REDIRECT)
		return xdp_verdict(REASON_DROP_REDIRECT);
	reason_count(REASON_PUNT);
	return XDP_REDIRECT;
}

/* punt_tc: as punt_xdp for TC. */
static __always_inline int punt_tc(__u32 tap)
{
	if (bpf_redirect(tap, 0) != TC_ACT_REDIRECT)
		return tc_verdict(REASON_DROP_REDIRECT);
	reason_count(REASON_PUNT);
	return TC_ACT_REDIRECT;
}

#endif /* XVS_PUNT_H */
