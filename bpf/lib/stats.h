/* SPDX-License-Identifier: GPL-2.0 */
/*
 * stats.h: the reason counters and the per-service / per-real-server
 * counters, and the mapping of a reason to an XDP or TC verdict.
 *
 * Shared helpers return an enum reason, not an action, because XDP and TC
 * spell their actions differently; the entry turns it into its verdict
 * with xdp_verdict()/tc_verdict(), which count the reason exactly once.
 */
#ifndef XVS_STATS_H
#define XVS_STATS_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "../maps.h"

/* reason_count: counts one packet under reason r (per CPU). */
static __always_inline void reason_count(int r)
{
	__u32 key = r;
	__u64 *v = bpf_map_lookup_elem(&xvs_reasons, &key);

	if (v)
		*v += 1;
}

/* reason_drops: whether the verdict of reason r is a drop (else a pass). */
static __always_inline int reason_drops(int r)
{
	switch (r) {
	case REASON_DROP_MALFORMED:
	case REASON_DROP_PUNT_STALE:
	case REASON_DROP_PUNT_MISS:
	case REASON_DROP_NO_DEST:
	case REASON_DROP_REDIRECT:
	case REASON_DROP_ICMP_CSUM:
	case REASON_DROP_TX_FAILED:
	case REASON_DROP_PUNT_BUDGET:
		return 1;
	}
	return 0;
}

/* xdp_verdict: counts r, returns XDP_DROP or XDP_PASS. */
static __always_inline int xdp_verdict(int r)
{
	reason_count(r);
	return reason_drops(r) ? XDP_DROP : XDP_PASS;
}

/* tc_verdict: counts r, returns TC_ACT_SHOT or TC_ACT_OK. */
static __always_inline int tc_verdict(int r)
{
	reason_count(r);
	return reason_drops(r) ? TC_ACT_SHOT : TC_ACT_OK;
}

/* stats_add: one packet of bytes in direction out (0: client -> server,
 * 1: server -> client) for service svc_id and real server dest_id; new
 * counts a new conn as well. */
static __always_inline void stats_add(__u32 svc_id, __u32 dest_id, int out,
				      __u32 bytes, int new)
{
	struct stats *s = bpf_map_lookup_elem(&xvs_svc_stats, &svc_id);
	struct stats *d = bpf_map_lookup_elem(&xvs_dest_stats, &dest_id);

	if (s) {
		s->conns += new;
		if (out) {
			s->outpkts++;
			s->outbytes += bytes;
		} else {
			s->inpkts++;
			s->inbytes += bytes;
		}
	}
	if (d) {
		d->conns += new;
		if (out) {
			d->outpkts++;
			d->outbytes += bytes;
		} else {
			d->inpkts++;
			d->inbytes += bytes;
		}
	}
}

#endif /* XVS_STATS_H */
