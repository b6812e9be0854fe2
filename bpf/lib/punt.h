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
 * a client-side conn in TIME_WAIT or CLOSE is punted like a first packet;
 * the daemon expires the old conn and schedules anew, or keeps it and
 * writes the SYN back, which then follows the old conn (on the punt
 * device a reuse SYN is never punted again). While no daemon is alive
 * the SYN follows the old conn, as before port reuse was handled.
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

/* punt_decide: the verdict of a miss that arrived on ingress. Returns
 * REASON_PUNT with *tap set to the punt device and *svc_id to the
 * service, or a pass/drop reason. */
static __always_inline int punt_decide(struct pkt *p, __u32 ingress,
				       __u32 *tap, __u32 *svc_id)
{
	struct svc_key sk = {};
	struct cfg *cfg;
	struct svc *svc;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&xvs_cfg, &zero);
	if (cfg && cfg->punt_ifindex && ingress == cfg->punt_ifindex)
		return REASON_DROP_PUNT_MISS;
	__builtin_memcpy(sk.addr, p->key.daddr, 16);
	sk.port = p->key.dport;
	sk.proto = p->key.proto;
	sk.family = p->key.family;
	svc = bpf_map_lookup_elem(&xvs_svcs, &sk);
	if (!svc)
		return REASON_PASS_NO_SVC;
	if (!punt_first(p))
		return REASON_PASS_NOT_FIRST;
	if (!punt_live(cfg))
		return REASON_DROP_PUNT_STALE;
	*tap = cfg->punt_ifindex;
	*svc_id = svc->id;
	return REASON_PUNT;
}

/* punt_reuse: whether a hit is a SYN reusing the port of a TCP conn in
 * TIME_WAIT or CLOSE that goes to the punt device (see the file comment);
 * sets *tap and *svc_id. Not for fragments. */
static __always_inline int punt_reuse(struct pkt *p, struct hit *h,
				      __u32 ingress, __u32 *tap,
				      __u32 *svc_id)
{
	struct cfg *cfg;
	__u32 zero = 0;
	__u8 st;

	if (h->out || p->key.proto != IPPROTO_TCP || p->frag || !punt_first(p))
		return 0;
	st = *(volatile __u8 *)&h->c->state;
	if (st != STATE_TIME_WAIT && st != STATE_CLOSE)
		return 0;
	cfg = bpf_map_lookup_elem(&xvs_cfg, &zero);
	if (!punt_live(cfg) || ingress == cfg->punt_ifindex)
		return 0;
	*tap = cfg->punt_ifindex;
	*svc_id = h->c->svc_id;
	return 1;
}

/* punt_send_xdp: the first-packet budget, then the redirect to tap. */
static __always_inline int punt_send_xdp(__u32 tap, __u32 svc_id)
{
	if (!budget_take(svc_id))
		return xdp_verdict(REASON_DROP_PUNT_BUDGET);
	if (bpf_redirect_map(&xvs_tx, tap, 0) != XDP_REDIRECT)
		return xdp_verdict(REASON_DROP_REDIRECT);
	reason_count(REASON_PUNT);
	return XDP_REDIRECT;
}

/* punt_send_tc: as punt_send_xdp for TC. */
static __always_inline int punt_send_tc(__u32 tap, __u32 svc_id)
{
	if (!budget_take(svc_id))
		return tc_verdict(REASON_DROP_PUNT_BUDGET);
	if (bpf_redirect(tap, 0) != TC_ACT_REDIRECT)
		return tc_verdict(REASON_DROP_REDIRECT);
	reason_count(REASON_PUNT);
	return TC_ACT_REDIRECT;
}

/* punt_xdp: the XDP verdict of a miss. */
static __always_inline int punt_xdp(__u32 ingress, struct pkt *p)
{
	__u32 tap = 0, svc_id = 0;
	int r = punt_decide(p, ingress, &tap, &svc_id);

	if (r != REASON_PUNT)
		return xdp_verdict(r);
	return punt_send_xdp(tap, svc_id);
}

/* punt_tc: the TC verdict of a miss. */
static __always_inline int punt_tc(__u32 ingress, struct pkt *p)
{
	__u32 tap = 0, svc_id = 0;
	int r = punt_decide(p, ingress, &tap, &svc_id);

	if (r != REASON_PUNT)
		return tc_verdict(r);
	return punt_send_tc(tap, svc_id);
}

#endif /* XVS_PUNT_H */
