/* SPDX-License-Identifier: GPL-2.0 */
/*
 * conn.h: connection lookup (client side, then server side) and the
 * per-packet bookkeeping of a hit: the CONN_F_NEW claim, the TCP state with
 * ActiveConn/InActConn, last_seen and the statistics.
 *
 * Races: dport, state and flags of struct conn share one aligned 32-bit
 * word (bytes 16..19, little endian: state in bits 16..23, flags in 24..31).
 * CONN_F_NEW is cleared with an atomic fetch-and and only the CPU that
 * cleared it counts the conn; a state change is a compare-and-swap of that
 * word and only the CPU whose swap succeeded moves the dest's counters.
 */
#ifndef XVS_CONN_H
#define XVS_CONN_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "parse.h"
#include "state.h"
#include "stats.h"

#define CONN_W_STATE_SHIFT 16
#define CONN_W_FLAGS_SHIFT 24
#define CONN_STATE_TRIES 4

/* A packet's connection. */
struct hit {
	struct conn *c;          /* value in xvs_conns */
	struct conn_key *ckey;   /* its client-side key: VIP:vport in daddr/dport */
	struct dest *d;          /* xvs_dests[c->dest_id], NULL if out of range */
	int out;                 /* 0: client -> server, 1: server -> client */
	int avail;               /* d has DEST_F_AVAILABLE */
};

/* conn_find: looks the packet's tuple up as a client-side key, then as a
 * server-side key. Returns 1 with h->c, h->ckey and h->out set, or 0. */
static __always_inline int conn_find(struct pkt *p, struct hit *h)
{
	struct conn_key *ckey;

	h->c = bpf_map_lookup_elem(&xvs_conns, &p->key);
	if (h->c) {
		h->ckey = &p->key;
		h->out = 0;
		return 1;
	}
	ckey = bpf_map_lookup_elem(&xvs_rconns, &p->key);
	if (!ckey)
		return 0;
	h->c = bpf_map_lookup_elem(&xvs_conns, ckey);
	if (!h->c)
		return 0;
	h->ckey = ckey;
	h->out = 1;
	return 1;
}

/* conn_by_ckey: the conn of client-side key ckey (a value in another map)
 * in direction out. Returns 1 with h->c, h->ckey and h->out set, or 0. */
static __always_inline int conn_by_ckey(struct conn_key *ckey, int out,
					struct hit *h)
{
	h->c = bpf_map_lookup_elem(&xvs_conns, ckey);
	if (!h->c)
		return 0;
	h->ckey = ckey;
	h->out = out;
	return 1;
}

/* conn_admit: whether a hit may be forwarded. Returns XVS_CONTINUE or
 * REASON_DROP_NO_DEST (client -> server packet of a conn whose real server
 * is no longer available, as IPVS with expire_nodest_conn=0), which does
 * not count in the conn's statistics. TTL <= 1 is the caller's (IPVS
 * counts the packet, then answers time exceeded). */
static __always_inline int conn_admit(struct hit *h)
{
	h->d = bpf_map_lookup_elem(&xvs_dests, &h->c->dest_id);
	h->avail = h->d && (h->d->flags & DEST_F_AVAILABLE);
	if (!h->out && !h->avail)
		return REASON_DROP_NO_DEST;
	return XVS_CONTINUE;
}

/* conn_word: the aligned word holding dport, state and flags. */
static __always_inline __u32 *conn_word(struct conn *c)
{
	return (__u32 *)&c->dport;
}

/* conn_claim_new: clears CONN_F_NEW; returns 1 on the one CPU that did. */
static __always_inline int conn_claim_new(struct conn *c)
{
	__u32 bit = (__u32)CONN_F_NEW << CONN_W_FLAGS_SHIFT;
	__u32 *w = conn_word(c);

	if (!(*(volatile __u32 *)w & bit))
		return 0;
	return (__sync_fetch_and_and(w, ~bit) & bit) != 0;
}

/* conn_move: moves one conn of d from active to inactive or back. */
static __always_inline void conn_move(struct dest *d, int to_active)
{
	if (!d)
		return;
	if (to_active) {
		__sync_fetch_and_add(&d->active, 1);
		__sync_fetch_and_add(&d->inactive, -1);
	} else {
		__sync_fetch_and_add(&d->inactive, 1);
		__sync_fetch_and_add(&d->active, -1);
	}
}

/* conn_state: runs the TCP state machine for a segment with flags. A
 * state byte outside the table is left alone. Retries a lost swap a few
 * times; after that another CPU's concurrent segment decided the state. */
static __always_inline void conn_state(struct hit *h, __u8 flags)
{
	__u32 *w = conn_word(h->c);
	__u32 old, new;
	__u8 cur, next;
	int i;

	for (i = 0; i < CONN_STATE_TRIES; i++) {
		old = *(volatile __u32 *)w;
		cur = old >> CONN_W_STATE_SHIFT;
		if (cur >= STATE_MAX)
			return;
		next = tcp_next(cur, flags, h->out);
		if (next == cur)
			return;
		new = (old & ~((__u32)0xff << CONN_W_STATE_SHIFT)) |
		      (__u32)next << CONN_W_STATE_SHIFT;
		if (__sync_val_compare_and_swap(w, old, new) != old)
			continue;
		if (tcp_active(cur) != tcp_active(next))
			conn_move(h->d, tcp_active(next));
		return;
	}
}

/* conn_account: the bookkeeping of one forwarded packet of a hit. Stats,
 * the new conn included, count only while the real server is available
 * (IPVS does the same); CONN_F_NEW stays set until they do. */
static __always_inline void conn_account(struct pkt *p, struct hit *h)
{
	int new = h->avail ? conn_claim_new(h->c) : 0;

	if (p->key.proto == IPPROTO_TCP)
		conn_state(h, p->tcp_flags);
	h->c->last_seen = bpf_ktime_get_ns();
	if (h->avail)
		stats_add(h->c->svc_id, h->c->dest_id, h->out, p->ip_len, new);
}

/* conn_touch: the bookkeeping of a packet of a hit that is no TCP segment
 * of its own (an ICMP error about the conn, a later fragment): last_seen
 * and the statistics (bytes: IP length), no state change and no claim of
 * CONN_F_NEW. */
static __always_inline void conn_touch(struct hit *h, __u32 bytes)
{
	h->c->last_seen = bpf_ktime_get_ns();
	if (h->avail)
		stats_add(h->c->svc_id, h->c->dest_id, h->out, bytes, 0);
}

#endif /* XVS_CONN_H */
