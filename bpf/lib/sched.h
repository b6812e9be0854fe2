/* SPDX-License-Identifier: GPL-2.0 */
/*
 * sched.h: first packets scheduled in the datapath. A service the daemon
 * gave a ring (struct ring, xvs_rings) gets its new conns here, in the
 * packet's own pass:
 *
 *   the pick: the next of one full cycle of its rr or wrr scheduler's
 *   picks (an atomic add), or the pick of the packet's hash bucket for
 *   sh, dh and mh, hashed as IPVS hashes it (host-order address fold,
 *   the kernel's hash_32, mh's SipHash-1-3);
 *   the conn installed into the new pair with conn_install (the checks
 *   of the daemon's installs), the real server's InActConn counted;
 *   then on as a hit.
 *
 * A TCP SYN on the port of a closed conn of such a service (TIME_WAIT or
 * CLOSE: IPVS conn_reuse_mode 1, reference 5.8) removes the old conn as
 * expiry would (lib/expire.h, sched_reuse) and is then scheduled as a
 * first packet. IPVS expires the old conn in the packet's path too;
 * kernel clients reuse a port as soon as its connection is closed, so a
 * busy client meets this once its port range has wrapped.
 *
 * The punt device's round trip through the daemon, about 17 us of its CPU
 * per conn, is left to what needs the daemon: other schedulers,
 * persistence, thresholds, no usable real server, and a full new pair
 * (the daemon makes room).
 *
 * An rr/wrr sequence stays the scheduler's: one counter per ring, shared
 * by all CPUs, as IPVS shares one cursor under a lock. The daemon writes a
 * new ring whenever the service or its real servers change.
 */
#ifndef XVS_SCHED_H
#define XVS_SCHED_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "parse.h"
#include "stats.h"
#include "conn.h"
#include "expire.h"

/* Outcomes of sched_ring. */
#define SCHED_NONE 0 /* no ring, or its pick cannot be used: punt */
#define SCHED_NEW 1  /* a conn exists now (ours or a racing CPU's): h set */

/* event_count: counts one event (per CPU). */
static __always_inline void event_count(__u32 ev)
{
	__u64 *v = bpf_map_lookup_elem(&xvs_events, &ev);

	if (v)
		*v += 1;
}

/* sched_fold: an address as the host-order 32-bit value IPVS's sh and dh
 * hash: the IPv4 address, or the XOR of the four words of an IPv6 one. */
static __always_inline __u32 sched_fold(const __u8 *a, __u8 family)
{
	const __u32 *w = (const __u32 *)a;

	if (family == FAMILY_INET)
		return bpf_ntohl(w[0]);
	return bpf_ntohl(w[0] ^ w[1] ^ w[2] ^ w[3]);
}

/* sched_client: the value sh and mh hash for the packet's client: its
 * folded address, plus its port with RING_F_PORT (sh-port, mh-port). */
static __always_inline __u32 sched_client(const struct pkt *p, __u8 flags)
{
	__u32 v = sched_fold(p->key.saddr, p->key.family);

	if (flags & RING_F_PORT)
		v += bpf_ntohs(p->key.sport);
	return v;
}

/* sched_hash8: the kernel's hash_32(v, 8). */
static __always_inline __u32 sched_hash8(__u32 v)
{
	return (v * 0x61C88647U) >> 24;
}

/* The fixed hsiphash keys of ip_vs_mh.c, and its table size. */
#define SCHED_MH_KEY 2654435761ULL
#define SCHED_MH_SIZE 4093

static __always_inline __u64 sched_rotl(__u64 x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SCHED_SIPROUND                                                       \
	do {                                                                 \
		v0 += v1;                                                    \
		v1 = sched_rotl(v1, 13);                                     \
		v1 ^= v0;                                                    \
		v0 = sched_rotl(v0, 32);                                     \
		v2 += v3;                                                    \
		v3 = sched_rotl(v3, 16);                                     \
		v3 ^= v2;                                                    \
		v0 += v3;                                                    \
		v3 = sched_rotl(v3, 21);                                     \
		v3 ^= v0;                                                    \
		v2 += v1;                                                    \
		v1 = sched_rotl(v1, 17);                                     \
		v1 ^= v2;                                                    \
		v2 = sched_rotl(v2, 32);                                     \
	} while (0)

/* sched_mh_slot: ip_vs_mh.c's lookup slot of v: the kernel's
 * hsiphash(&v, 4, {key, key}) on a 64-bit machine (SipHash-1-3 of the
 * four bytes, truncated to 32 bits), modulo the table size. */
static __always_inline __u32 sched_mh_slot(__u32 v)
{
	__u64 v0 = SCHED_MH_KEY ^ 0x736f6d6570736575ULL;
	__u64 v1 = SCHED_MH_KEY ^ 0x646f72616e646f6dULL;
	__u64 v2 = SCHED_MH_KEY ^ 0x6c7967656e657261ULL;
	__u64 v3 = SCHED_MH_KEY ^ 0x7465646279746573ULL;
	__u64 b = ((__u64)4 << 56) | v;

	v3 ^= b;
	SCHED_SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SCHED_SIPROUND;
	SCHED_SIPROUND;
	SCHED_SIPROUND;
	return (__u32)(v0 ^ v1 ^ v2 ^ v3) % SCHED_MH_SIZE;
}

/* sched_conn: the new conn of first packet p to real server d, port port,
 * of service svc_id and dest dest_id, into c. */
static __always_inline void sched_conn(struct conn *c, __u32 svc_id,
				       __u32 dest_id, __be16 port)
{
	c->dport = port;
	c->state = STATE_NONE;
	c->flags = CONN_F_NEW;
	c->svc_id = svc_id;
	c->dest_id = dest_id;
	c->pad = 0;
	c->last_seen = bpf_ktime_get_coarse_ns();
}

/* sched_ring: schedules first packet p of service svc_id from its ring
 * and installs its conn. Returns SCHED_NEW with h pointing at the conn in
 * the new pair (h->ckey the per-CPU copy, as conn_find leaves a new-pair
 * hit), or SCHED_NONE: the caller punts. The server-side key is built in
 * the per-CPU scratch, which nothing holds across this call. */
static __always_inline int sched_ring(struct pkt *p, __u32 svc_id,
				      struct hit *h)
{
	struct conn_key *skey;
	struct ring_ent *e;
	struct conn val = {};
	struct ring *r;
	struct dest *d;
	__u32 zero = 0, len, i, id;
	long err = 0;
	int res;

	r = bpf_map_lookup_elem(&xvs_rings, &svc_id);
	if (!r)
		return SCHED_NONE;
	len = r->len;
	if (!len || len > XVS_RING_MAX)
		return SCHED_NONE;
	switch (r->kind) {
	case RING_SEQ:
		i = __sync_fetch_and_add(&r->next, 1);
		break;
	case RING_SRC_HASH:
		i = sched_hash8(sched_client(p, r->flags));
		break;
	case RING_DST_HASH:
		i = sched_hash8(sched_fold(p->key.daddr, p->key.family));
		break;
	case RING_MH_HASH:
		i = sched_mh_slot(sched_client(p, r->flags));
		break;
	default:
		return SCHED_NONE;
	}
	i %= len;
	/* i < len <= XVS_RING_MAX already; the mask, which the compiler
	 * cannot drop behind xvs_opaque, shows the verifier. */
	xvs_opaque(i);
	i &= XVS_RING_MAX - 1;
	e = &r->ents[i];
	id = e->dest_id;
	if (id == XVS_RING_NONE)
		return SCHED_NONE; /* no usable real server: the daemon answers */
	d = bpf_map_lookup_elem(&xvs_dests, &id);
	if (!d || !(d->flags & DEST_F_AVAILABLE) ||
	    d->family != p->key.family) {
		/* The ring is being replaced: the daemon decides. */
		event_count(EVENT_SCHED_UNUSABLE);
		return SCHED_NONE;
	}
	sched_conn(&val, svc_id, id, e->port);
	skey = bpf_map_lookup_elem(&xvs_scratch, &zero);
	if (!skey)
		return SCHED_NONE;
	__builtin_memset(skey, 0, sizeof(*skey));
	conn_rkey(skey, &p->key, &val, d);
	/* The packet's client-side key just missed in both pairs
	 * (conn_find_first). */
	res = conn_install(&p->key, skey, &val, &err);
	if (res == INST_OK) {
		__sync_fetch_and_add(&d->inactive, 1);
		event_count(EVENT_SCHED_NEW);
	} else if (res == INST_FULL) {
		event_count(EVENT_SCHED_FULL);
		return SCHED_NONE;
	} else if (res != INST_EXISTS) {
		return SCHED_NONE;
	}
	/* Ours, or one another CPU installed into the new pair for the
	 * same flow meanwhile: a hit there, as conn_find would leave it. */
	h->out = 0;
	h->ckey = &p->key;
	h->c = bpf_map_lookup_elem(&xvs_conns_new, &p->key);
	if (!h->c || !conn_fresh(h))
		return SCHED_NONE;
	return SCHED_NEW;
}

/* sched_reuse: whether a client's TCP SYN that hit conn h->c, closed
 * (TIME_WAIT or CLOSE), of a service with a ring removed that conn: the
 * SYN then starts over as a first packet (lib/punt.h punt_reuse),
 * scheduled from the ring. The conn is removed from its pair and counted
 * out of its real server as expiry removes it (a copy first: a deleted
 * entry may be reused at once). Returns 0 when the daemon is to decide
 * instead: no ring, or the conn changed meanwhile (another state, or
 * promoted to the main pair). A removal voids the flow cache if a copy
 * of the conn, made while it was open, may still be live on another CPU:
 * not for the usual reuse of a port closed seconds ago. */
static __always_inline int sched_reuse(struct pkt *p, struct hit *h)
{
	__u32 svc_id = h->c->svc_id;
	struct conn v;
	int o;

	if (!bpf_map_lookup_elem(&xvs_rings, &svc_id))
		return 0;
	__builtin_memcpy(&v, h->c, sizeof(v));
	if (v.state != STATE_TIME_WAIT && v.state != STATE_CLOSE)
		return 0;
	if (h->fresh)
		o = expire_new(&p->key, &v);
	else
		o = expire_main(&p->key, &v);
	if (o == OUTCOME_MOVED)
		return 0;
	if (o == OUTCOME_REMOVED) {
		event_count(EVENT_SCHED_REUSED);
		if (conn_copied_lately(&v))
			flow_void();
	}
	return 1;
}

#endif /* XVS_SCHED_H */
