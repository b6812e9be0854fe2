/* SPDX-License-Identifier: GPL-2.0 */
/*
 * conn.h: connection lookup (client side, then server side; main pair,
 * then new pair) and the per-packet bookkeeping of a hit: the CONN_F_NEW
 * claim, the TCP state with ActiveConn/InActConn, last_seen, the
 * statistics and the promotion of an established conn from the new pair
 * (xvs_conns_new/xvs_rconns_new, half-open, filled by the daemon) to the
 * main pair (xvs_conns/xvs_rconns, LRU).
 *
 * last_seen is stamped from bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC as
 * of the last timer tick, the clock of bpf_ktime_get_ns() and of the
 * daemon's maps.Now(), at most one jiffy (1-10 ms) behind it. The precise
 * helper reads the clocksource on every packet, about 25 ns with kvm-clock,
 * a fifth of the whole hit path; the daemon's timeouts are whole seconds.
 * So a conn looks up to a jiffy older than it is, and its first packet may
 * stamp a value a little below the daemon's install stamp. The "last_seen
 * unchanged since the walk" test of expiry and sync stays right: a conn
 * idle for a timeout (>= 1 s) gets a new stamp from its next packet. The
 * stamp is stored only when it changed (once per tick for a busy conn), so
 * that the two directions of a conn on two CPUs do not keep taking its
 * cache line from each other.
 *
 * Races: dport, state and flags of struct conn share one aligned 32-bit
 * word (bytes 0..3, little endian: state in bits 16..23, flags in 24..31).
 * CONN_F_NEW is cleared with an atomic fetch-and and only the CPU that
 * cleared it counts the conn; a state change is a compare-and-swap of that
 * word and only the CPU whose swap succeeded moves the dest's counters.
 */
#ifndef XVS_CONN_H
#define XVS_CONN_H

#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "parse.h"
#include "state.h"
#include "stats.h"

#define CONN_W_STATE_SHIFT 16
#define CONN_W_FLAGS_SHIFT 24
#define CONN_STATE_TRIES 4
#define FLOW_VOID_TRIES 4

_Static_assert(__builtin_offsetof(struct conn, dport) == 0 &&
	       __builtin_offsetof(struct conn, state) == 2 &&
	       __builtin_offsetof(struct conn, flags) == 3,
	       "dport, state and flags are the conn's first aligned word");

/* A packet's connection. */
struct hit {
	struct conn *c;          /* value in xvs_conns or xvs_conns_new */
	struct conn_key *ckey;   /* its client-side key: VIP:vport in daddr/dport;
				  * the packet's tuple or a per-CPU copy */
	struct dest *d;          /* xvs_dests[c->dest_id] (conn_admit), NULL if out
				  * of range; d->addr is the DNAT target */
	int out;                 /* 0: client -> server, 1: server -> client */
	int avail;               /* d has DEST_F_AVAILABLE */
	int fresh;               /* c is in the new pair (xvs_conns_new) */
	int cached;              /* c is a copy in the flow cache (lib/flow.h) */
	int first;               /* this packet claimed CONN_F_NEW or moved c
				  * to the main pair (conn_account) */
	__u64 now;               /* coarse clock, read by conn_stamp */
};

/* conn_ckey: rebuilds in ck the client-side key of server-side tuple sk
 * (real server -> client) whose conn is rc: client = sk's destination,
 * VIP = vip's address, virtual port = rc's. */
static __always_inline void conn_ckey(struct conn_key *ck,
				      const struct conn_key *sk,
				      const struct svc_key *vip,
				      const struct rconn *rc)
{
	__builtin_memcpy(ck->saddr, sk->daddr, 16);
	__builtin_memcpy(ck->daddr, vip->addr, 16);
	ck->sport = sk->dport;
	ck->dport = rc->vport;
	ck->proto = sk->proto;
	ck->family = sk->family;
	ck->pad[0] = 0;
	ck->pad[1] = 0;
}

/* conn_rckey: the client-side key of server-side tuple sk whose conn is
 * rc, rebuilt (conn_ckey) in the per-CPU xvs_rckey, or NULL. */
static __always_inline struct conn_key *conn_rckey(const struct conn_key *sk,
						   const struct rconn *rc)
{
	__u32 zero = 0, id = rc->svc_id;
	struct svc_key *vip = bpf_map_lookup_elem(&xvs_vips, &id);
	struct conn_key *ckey;

	if (!vip)
		return NULL;
	ckey = bpf_map_lookup_elem(&xvs_rckey, &zero);
	if (!ckey)
		return NULL;
	conn_ckey(ckey, sk, vip, rc);
	return ckey;
}

/* conn_find_out: the server-side half of conn_find_in: the packet's tuple
 * as a server-side key of one pair. A key whose client-side key is not in
 * conns is a miss here (the conn may be in the other pair: a newer conn
 * shadows an older one's server-side key). The client-side key of a hit
 * is rebuilt in xvs_rckey. */
static __always_inline int conn_find_out(void *conns, void *rconns,
					 struct pkt *p, struct hit *h)
{
	struct conn_key *ckey;
	struct rconn *rc;

	rc = bpf_map_lookup_elem(rconns, &p->key);
	if (!rc)
		return 0;
	ckey = conn_rckey(&p->key, rc);
	if (!ckey)
		return 0;
	h->c = bpf_map_lookup_elem(conns, ckey);
	if (!h->c)
		return 0;
	h->ckey = ckey;
	h->out = 1;
	return 1;
}

/* conn_find_in: conn_find in one pair of tables: the packet's tuple as a
 * client-side key, then as a server-side key (conn_find_out). */
static __always_inline int conn_find_in(void *conns, void *rconns,
					struct pkt *p, struct hit *h)
{
	h->c = bpf_map_lookup_elem(conns, &p->key);
	if (h->c) {
		h->ckey = &p->key;
		h->out = 0;
		return 1;
	}
	return conn_find_out(conns, rconns, p, h);
}

/* conn_fresh: finishes a hit in the new pair: h->ckey becomes the per-CPU
 * copy in xvs_ckey (valid until this program ends). Returns 1, or 0 if
 * there is no copy to be had. */
static __always_inline int conn_fresh(struct hit *h)
{
	struct conn_key *ck;
	__u32 zero = 0;

	ck = bpf_map_lookup_elem(&xvs_ckey, &zero);
	if (!ck)
		return 0;
	__builtin_memcpy(ck, h->ckey, sizeof(*ck));
	h->ckey = ck;
	h->fresh = 1;
	return 1;
}

/* conn_find: looks the packet's tuple up as a client-side key, then as a
 * server-side key, in the main pair, then in the new pair: an established
 * conn costs the lookups it always did. Returns 1 with h->c, h->ckey,
 * h->out and h->fresh set, or 0. */
static __always_inline int conn_find(struct pkt *p, struct hit *h)
{
	h->fresh = 0;
	if (conn_find_in(&xvs_conns, &xvs_rconns, p, h))
		return 1;
	if (!conn_find_in(&xvs_conns_new, &xvs_rconns_new, p, h))
		return 0;
	return conn_fresh(h);
}

/* svc_of: the virtual service packet p is addressed to, or NULL. */
static __always_inline struct svc *svc_of(const struct pkt *p)
{
	struct svc_key sk = {};

	__builtin_memcpy(sk.addr, p->key.daddr, 16);
	sk.port = p->key.dport;
	sk.proto = p->key.proto;
	sk.family = p->key.family;
	return bpf_map_lookup_elem(&xvs_svcs, &sk);
}

/* conn_find_first: conn_find for the entry points, which want the
 * packet's virtual service too when it has no conn (*svc, else NULL). A
 * packet addressed to a virtual service can only be a client's: a
 * server-side key's destination is a client, and a client with a VIP's
 * address would be the director itself, whose own packets do not come in
 * here. So such a packet is looked up by its client-side key alone, in
 * the main pair, then in the new one: a first packet, a flood's included,
 * costs two cold lookups in the big tables, not three. A reply pays the
 * service lookup (a small, warm table) before its server-side lookup. */
static __always_inline int conn_find_first(struct pkt *p, struct hit *h,
					   struct svc **svc)
{
	h->fresh = 0;
	*svc = NULL;
	h->c = bpf_map_lookup_elem(&xvs_conns, &p->key);
	if (h->c) {
		h->ckey = &p->key;
		h->out = 0;
		return 1;
	}
	*svc = svc_of(p);
	if (*svc) {
		h->c = bpf_map_lookup_elem(&xvs_conns_new, &p->key);
		if (!h->c)
			return 0;
		h->ckey = &p->key;
		h->out = 0;
		return conn_fresh(h);
	}
	if (conn_find_out(&xvs_conns, &xvs_rconns, p, h))
		return 1;
	if (!conn_find_in(&xvs_conns_new, &xvs_rconns_new, p, h))
		return 0;
	return conn_fresh(h);
}

/* conn_by_ckey: the conn of client-side key ckey (a value in another map)
 * in direction out, main pair first. Returns 1 with h->c, h->ckey, h->out
 * and h->fresh set, or 0. */
static __always_inline int conn_by_ckey(struct conn_key *ckey, int out,
					struct hit *h)
{
	h->fresh = 0;
	h->ckey = ckey;
	h->out = out;
	h->c = bpf_map_lookup_elem(&xvs_conns, ckey);
	if (h->c)
		return 1;
	h->c = bpf_map_lookup_elem(&xvs_conns_new, ckey);
	if (!h->c)
		return 0;
	return conn_fresh(h);
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

/* conn_key_eq: whether two conn keys are equal. Both must be 8-byte
 * aligned. */
static __always_inline int conn_key_eq(const struct conn_key *a,
				       const struct conn_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	_Static_assert(sizeof(*a) == 40, "conn_key is five words");
	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) |
		(x[3] ^ y[3]) | (x[4] ^ y[4])) == 0;
}

/* rconn_eq: whether two server-side entries name the same conn. */
static __always_inline int rconn_eq(const struct rconn *a,
				    const struct rconn *b)
{
	return a->svc_id == b->svc_id && a->vport == b->vport;
}

/* conn_rconn: the server-side entry of conn c with client-side key ckey. */
static __always_inline void conn_rconn(struct rconn *rc,
				       const struct conn_key *ckey,
				       const struct conn *c)
{
	rc->svc_id = c->svc_id;
	rc->vport = ckey->dport;
	rc->pad = 0;
}

/* conn_rkey: the server-side key of conn c with client-side key ckey and
 * real server d (xvs_dests[c->dest_id]). */
static __always_inline void conn_rkey(struct conn_key *rk,
				      const struct conn_key *ckey,
				      const struct conn *c,
				      const struct dest *d)
{
	__builtin_memcpy(rk->saddr, d->addr, 16);
	__builtin_memcpy(rk->daddr, ckey->saddr, 16);
	rk->sport = c->dport;
	rk->dport = ckey->sport;
	rk->proto = ckey->proto;
	rk->family = ckey->family;
}

/* conn_rkey_of: conn_rkey with c's real server looked up by its dest id.
 * Returns 0, or -1 if the dest id is out of range (no server-side key can
 * be made: the daemon never installed one). */
static __always_inline int conn_rkey_of(struct conn_key *rk,
					const struct conn_key *ckey,
					const struct conn *c)
{
	__u32 id = c->dest_id;
	struct dest *d = bpf_map_lookup_elem(&xvs_dests, &id);

	if (!d)
		return -1;
	conn_rkey(rk, ckey, c, d);
	return 0;
}

/* drop_rkey: deletes server-side key rk from rconns if it still names the
 * conn rv names (a newer conn may have taken it over). */
static __always_inline void drop_rkey(void *rconns, struct conn_key *rk,
				      const struct rconn *rv)
{
	struct rconn *cur = bpf_map_lookup_elem(rconns, rk);

	if (cur && rconn_eq(cur, rv))
		bpf_map_delete_elem(rconns, rk);
}

/* conn_exists: whether either pair has client-side key ckey. */
static __always_inline int conn_exists(const struct conn_key *ckey)
{
	return bpf_map_lookup_elem(&xvs_conns, ckey) ||
	       bpf_map_lookup_elem(&xvs_conns_new, ckey);
}

/* flow_void: voids every copy of the flow cache (lib/flow.h) made up to
 * now, on every CPU: a conn was removed other than by expiry, or a newer
 * conn took over an older one's server-side key. The precise clock (the
 * daemon's install program may not read the coarse one) is up to a tick
 * ahead of the copies' coarse stamps: copies made in the rest of the tick
 * are void too. A compare-and-swap that only raises the time; after a few
 * lost races a later time is there already. */
static __always_inline void flow_void(void)
{
	__u64 now = bpf_ktime_get_ns(), old;
	__u32 zero = 0;
	__u64 *v = bpf_map_lookup_elem(&xvs_flow_void, &zero);
	int i;

	if (!v)
		return;
	for (i = 0; i < FLOW_VOID_TRIES; i++) {
		old = *(volatile __u64 *)v;
		if (old >= now)
			return;
		if (__sync_val_compare_and_swap(v, old, now) == old)
			return;
	}
}

/* How long a flow cache copy answers (lib/flow.h): XVS_FLOW_TTL_NS. A
 * constant set at load; only tests change it (a copy that must still, or
 * no longer, answer whatever the machine's load). */
const volatile __u64 xvs_flow_ttl_ns = XVS_FLOW_TTL_NS;

/* conn_copied_lately: whether conn value v (as it was when removed) may
 * have a live copy in the flow cache: a packet was forwarded (CONN_F_NEW
 * clear) less than XVS_FLOW_TTL_NS and a margin ago. A copy is never
 * newer than its conn's last_seen (the lookup that makes it stamps the
 * same coarse time), and the margin covers the coarse clock's lag behind
 * the precise one (a tick, at most 10 ms). */
static __always_inline int conn_copied_lately(const struct conn *v)
{
	return !(v->flags & CONN_F_NEW) &&
	       bpf_ktime_get_ns() - v->last_seen <
		       xvs_flow_ttl_ns + XVS_FLOW_MARGIN_NS;
}

/* conn_install: installs a new conn, value val (state, flags, last_seen
 * set), with client-side key ckey and server-side key skey (whose source
 * is xvs_dests[val->dest_id]'s address), into the new pair. The caller
 * has just found ckey in neither pair (conn_exists, or the packet's own
 * lookup); a racing installer is caught by the BPF_NOEXIST insert below.
 * Returns an enum inst_result; *e holds the error of INST_ERROR. The real
 * server's counters are the caller's.
 *
 *   server-side key first, so that a reply can never miss a conn the
 *   datapath already forwards; then the client-side key (BPF_NOEXIST); on
 *   a lost race keep the winner's server-side key;
 *   point a server-side key of an older conn in xvs_rconns at ours, the
 *   way a newer conn shadows an older one in IPVS's out-lookup.
 */
static __always_inline int conn_install(const struct conn_key *ckey,
					const struct conn_key *skey,
					const struct conn *val, long *e)
{
	struct conn_key rk = {};
	struct rconn rv = {}, wv = {}, *old;
	struct conn *cur;
	long err;

	_Static_assert(sizeof(struct rconn) == 8, "rconn is one word");
	conn_rconn(&rv, ckey, val);
	err = bpf_map_update_elem(&xvs_rconns_new, skey, &rv, BPF_ANY);
	if (err == -E2BIG)
		return INST_FULL;
	if (err) {
		*e = err;
		return INST_ERROR;
	}
	err = bpf_map_update_elem(&xvs_conns_new, ckey, val, BPF_NOEXIST);
	if (err == -EEXIST) {
		/* Another installer won: give the server-side key back to
		 * the winner if it uses the same one. */
		cur = bpf_map_lookup_elem(&xvs_conns_new, ckey);
		if (cur && !conn_rkey_of(&rk, ckey, cur) &&
		    conn_key_eq(&rk, skey)) {
			conn_rconn(&wv, ckey, cur);
			if (!rconn_eq(&wv, &rv))
				bpf_map_update_elem(&xvs_rconns_new, skey,
						    &wv, BPF_EXIST);
		} else {
			drop_rkey(&xvs_rconns_new, (struct conn_key *)skey, &rv);
		}
		return INST_EXISTS;
	}
	if (err) {
		drop_rkey(&xvs_rconns_new, (struct conn_key *)skey, &rv);
		if (err == -E2BIG)
			return INST_FULL;
		*e = err;
		return INST_ERROR;
	}
	/* xvs_rconns is looked up first: a key there of an older conn would
	 * shadow ours. Point it at ours; the datapath then misses in the main
	 * pair and finds ours in the new one. In place, with one 8-byte
	 * store: any update of an LRU map takes a free node first, even one
	 * it then refuses (BPF_EXIST on a missing key), and with no free node
	 * left that evicts the least recently used entry — an established
	 * conn's server-side key, for a conn that may never be established. */
	old = bpf_map_lookup_elem(&xvs_rconns, skey);
	if (old) {
		*(volatile __u64 *)old = *(__u64 *)&rv;
		flow_void(); /* a copy may answer for the older conn */
		cur = bpf_map_lookup_elem(&xvs_conns_new, ckey);
		if (cur)
			__sync_fetch_and_or(conn_word(cur),
					    (__u32)CONN_F_SHADOW
						    << CONN_W_FLAGS_SHIFT);
	}
	return INST_OK;
}

/* conn_ready: whether a conn of the new pair is established: a TCP conn
 * in ESTABLISHED, a UDP conn the real server answered (this packet). */
static __always_inline int conn_ready(struct pkt *p, struct hit *h)
{
	if (!h->fresh)
		return 0;
	if (p->key.proto == IPPROTO_TCP)
		return *(volatile __u8 *)&h->c->state == STATE_ESTABLISHED;
	return h->out;
}

/* The per-CPU scratch of conn_promote (xvs_scratch). */
struct promo {
	struct conn_key rk; /* the server-side key */
	struct rconn rv;    /* its value */
};

/* conn_promote: moves an established conn from the new pair to the main
 * one: client-side key into xvs_conns (BPF_NOEXIST), server-side key into
 * xvs_rconns, then both out of the new pair. Inserting before deleting
 * means a packet on another CPU always finds the conn in one pair or the
 * other. The dest's counters do not move: one conn, counted once.
 *
 * -EEXIST from xvs_conns is another CPU that promoted the same conn first
 * (same real server: delete the new copy as it did) or an unrelated older
 * conn with the same client-side key (leave ours where it is; the daemon
 * expires one of them). On success h points at the main pair's copy, so
 * that nothing after this reads the freed new entries. The server-side
 * key and value are built in the per-CPU scratch (xvs_scratch), not on the
 * stack, which the hit path has used up; nothing else holds the scratch
 * across this call. */
static __always_inline void conn_promote(struct pkt *p, struct hit *h)
{
	struct conn_key *ckey, *rck;
	struct rconn *rv2;
	struct promo *pr;
	struct conn *m;
	__u32 zero = 0;
	long err;

	_Static_assert(sizeof(struct promo) <= 64, "promo fits xvs_scratch");
	if (!conn_ready(p, h) || !h->d)
		return;
	pr = bpf_map_lookup_elem(&xvs_scratch, &zero);
	if (!pr)
		return;
	__builtin_memset(pr, 0, sizeof(*pr));
	ckey = h->ckey;
	conn_rkey(&pr->rk, ckey, h->c, h->d);
	conn_rconn(&pr->rv, ckey, h->c);
	err = bpf_map_update_elem(&xvs_conns, ckey, h->c, BPF_NOEXIST);
	if (err && err != -EEXIST)
		return;
	m = bpf_map_lookup_elem(&xvs_conns, ckey);
	if (!m || m->dest_id != h->c->dest_id || m->dport != h->c->dport)
		return;
	if (bpf_map_update_elem(&xvs_rconns, &pr->rk, &pr->rv, BPF_ANY))
		return;
	bpf_map_delete_elem(&xvs_conns_new, ckey);
	rv2 = bpf_map_lookup_elem(&xvs_rconns_new, &pr->rk);
	if (rv2 && rconn_eq(rv2, &pr->rv))
		bpf_map_delete_elem(&xvs_rconns_new, &pr->rk);
	/* Back to the kinds of key pointer a main-pair hit has: the
	 * packet's own tuple (client side) or xvs_rckey (server side). */
	h->c = m;
	h->fresh = 0;
	h->first = 1;
	if (!h->out) {
		h->ckey = &p->key;
		return;
	}
	rck = bpf_map_lookup_elem(&xvs_rckey, &zero);
	if (!rck)
		return;
	__builtin_memcpy(rck, ckey, sizeof(*rck));
	h->ckey = rck;
}

/* conn_stamp: last_seen of h's conn = now on the coarse clock, written
 * only if it changed (see the file comment); h->now keeps the reading for
 * the rest of the packet's path (the next-hop cache, lib/fib.h). */
static __always_inline void conn_stamp(struct hit *h)
{
	__u64 now = bpf_ktime_get_coarse_ns();

	h->now = now;
	if (h->c->last_seen != now)
		h->c->last_seen = now;
}

/* conn_account: the bookkeeping of one forwarded packet of a hit. Stats,
 * the new conn included, count only while the real server is available
 * (IPVS does the same); CONN_F_NEW stays set until they do. A conn of the
 * new pair that this packet establishes moves to the main pair; h then
 * points there. A hit on a copy (h->cached) has only its statistics to
 * count: it is no new conn, changes no state, and leaves last_seen to the
 * next full lookup (lib/flow.h). */
static __always_inline void conn_account(struct pkt *p, struct hit *h)
{
	int new;

	if (h->cached) {
		if (h->avail)
			stats_add(h->c->svc_id, h->c->dest_id, h->out,
				  p->ip_len, 0);
		return;
	}
	new = h->avail ? conn_claim_new(h->c) : 0;
	h->first = new;
	if (p->key.proto == IPPROTO_TCP)
		conn_state(h, p->tcp_flags);
	conn_stamp(h);
	if (h->avail)
		stats_add(h->c->svc_id, h->c->dest_id, h->out, p->ip_len, new);
	conn_promote(p, h);
}

/* conn_touch: the bookkeeping of a packet of a hit that is no TCP segment
 * of its own (an ICMP error about the conn, a later fragment): last_seen
 * and the statistics (bytes: IP length), no state change and no claim of
 * CONN_F_NEW. */
static __always_inline void conn_touch(struct hit *h, __u32 bytes)
{
	conn_stamp(h);
	if (h->avail)
		stats_add(h->c->svc_id, h->c->dest_id, h->out, bytes, 0);
}

#endif /* XVS_CONN_H */
