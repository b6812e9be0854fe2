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
 * (REASON_DROP_PUNT_STALE); clients retry.
 */
#ifndef XVS_PUNT_H
#define XVS_PUNT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "parse.h"
#include "state.h"
#include "stats.h"

/* punt_first: whether the packet may create a conn (IPVS, sloppy off). */
static __always_inline int punt_first(struct pkt *p)
{
	if (p->key.proto != IPPROTO_TCP)
		return 1;
	return (p->tcp_flags & (XVS_TCP_SYN | XVS_TCP_ACK | XVS_TCP_RST)) ==
	       XVS_TCP_SYN;
}

/* punt_decide: the verdict of a miss that arrived on ingress. Returns
 * REASON_PUNT with *tap set to the punt device, or a pass/drop reason. */
static __always_inline int punt_decide(struct pkt *p, __u32 ingress, __u32 *tap)
{
	struct svc_key sk = {};
	struct cfg *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&xvs_cfg, &zero);
	if (cfg && cfg->punt_ifindex && ingress == cfg->punt_ifindex)
		return REASON_DROP_PUNT_MISS;
	__builtin_memcpy(sk.addr, p->key.daddr, 16);
	sk.port = p->key.dport;
	sk.proto = p->key.proto;
	sk.family = p->key.family;
	if (!bpf_map_lookup_elem(&xvs_svcs, &sk))
		return REASON_PASS_NO_SVC;
	if (!punt_first(p))
		return REASON_PASS_NOT_FIRST;
	if (!cfg || !cfg->punt_ifindex ||
	    (__s64)(bpf_ktime_get_ns() - cfg->alive_ns) > (__s64)cfg->stale_ns)
		return REASON_DROP_PUNT_STALE;
	*tap = cfg->punt_ifindex;
	return REASON_PUNT;
}

/* punt_xdp: the XDP verdict of a miss. */
static __always_inline int punt_xdp(struct xdp_md *ctx, struct pkt *p)
{
	__u32 tap = 0;
	int r = punt_decide(p, ctx->ingress_ifindex, &tap);

	if (r != REASON_PUNT)
		return xdp_verdict(r);
	if (bpf_redirect_map(&xvs_tx, tap, 0) != XDP_REDIRECT)
		return xdp_verdict(REASON_DROP_REDIRECT);
	reason_count(REASON_PUNT);
	return XDP_REDIRECT;
}

/* punt_tc: the TC verdict of a miss. */
static __always_inline int punt_tc(struct __sk_buff *skb, struct pkt *p)
{
	__u32 tap = 0;
	int r = punt_decide(p, skb->ingress_ifindex, &tap);

	if (r != REASON_PUNT)
		return tc_verdict(r);
	if (bpf_redirect(tap, 0) != TC_ACT_REDIRECT)
		return tc_verdict(REASON_DROP_REDIRECT);
	reason_count(REASON_PUNT);
	return TC_ACT_REDIRECT;
}

#endif /* XVS_PUNT_H */
