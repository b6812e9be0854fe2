/* SPDX-License-Identifier: GPL-2.0 */
/*
 * expire.h: removing one conn from its pair, counted out of its real
 * server, as the daemon's expiry does (bpf/expire, xvs_expire) and as the
 * datapath does for a SYN that reuses the port of a closed conn
 * (lib/sched.h sched_reuse).
 */
#ifndef XVS_EXPIRE_H
#define XVS_EXPIRE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../maps.h"
#include "state.h"
#include "conn.h"

/* What happened to one candidate. */
enum outcome {
	OUTCOME_GONE = 0,    /* in neither pair, or removed by someone else */
	OUTCOME_REMOVED = 1, /* removed, and counted out */
	OUTCOME_FRESH = 2,   /* kept: last_seen changed since the walk */
	OUTCOME_MOVED = 3,   /* kept: promoted to the main pair meanwhile */
};

/* same_conn: whether two stored values are the same conn (the datapath's
 * copy of it in the other pair); maps.sameConn. The dest id names the
 * real server's address. */
static __always_inline int same_conn(const struct conn *a,
				     const struct conn *b)
{
	return a->svc_id == b->svc_id && a->dest_id == b->dest_id &&
	       a->dport == b->dport;
}

/* expire_keys: the server-side key and value of conn v with client-side key
 * ckey. Returns 0, or -1 if v's dest id is out of range (no server-side
 * key can be made: there is none to drop, Go never installed one). */
static __always_inline int expire_keys(struct conn_key *rk,
				       struct rconn *rv,
				       const struct conn_key *ckey,
				       const struct conn *v)
{
	if (conn_rkey_of(rk, ckey, v))
		return -1;
	conn_rconn(rv, ckey, v);
	return 0;
}

/* count_out: takes a removed conn out of its real server's class. */
static __always_inline void count_out(const struct conn *v)
{
	__u32 id = v->dest_id;
	struct dest *d = bpf_map_lookup_elem(&xvs_dests, &id);

	if (!d)
		return;
	if (tcp_active(v->state))
		__sync_fetch_and_add(&d->active, -1);
	else
		__sync_fetch_and_add(&d->inactive, -1);
}

/* expire_main: removes ckey, whose value was v, from the main pair. */
static __always_inline int expire_main(const struct conn_key *ckey,
				       const struct conn *v)
{
	struct conn_key rk = {};
	struct rconn rv = {};
	struct conn *cur;
	int ok;

	if (bpf_map_delete_elem(&xvs_conns, ckey))
		return OUTCOME_GONE;
	ok = !expire_keys(&rk, &rv, ckey, v);
	if (ok)
		drop_rkey(&xvs_rconns, &rk, &rv);
	/* A copy left in the new pair by a promotion, and its server-side
	 * key: without the client-side key there is no such copy (promotion
	 * deletes that first), which spares a lookup per conn. */
	cur = bpf_map_lookup_elem(&xvs_conns_new, ckey);
	if (cur) {
		if (same_conn(cur, v))
			bpf_map_delete_elem(&xvs_conns_new, ckey);
		if (ok)
			drop_rkey(&xvs_rconns_new, &rk, &rv);
	}
	count_out(v);
	return OUTCOME_REMOVED;
}

/* expire_new: removes ckey, whose value was v, from the new pair, unless
 * the datapath promoted it meanwhile. */
static __always_inline int expire_new(const struct conn_key *ckey,
				      const struct conn *v)
{
	struct conn_key rk = {};
	struct rconn rv = {};
	struct conn *cur;
	int ok;

	if (bpf_map_delete_elem(&xvs_conns_new, ckey))
		return OUTCOME_GONE;
	ok = !expire_keys(&rk, &rv, ckey, v);
	if (ok)
		drop_rkey(&xvs_rconns_new, &rk, &rv);
	cur = bpf_map_lookup_elem(&xvs_conns, ckey);
	if (cur && same_conn(cur, v))
		return OUTCOME_MOVED;
	/* The shadowing server-side entry its install made, if it made one
	 * (a cold lookup spared for every other conn). */
	if (ok && (v->flags & CONN_F_SHADOW))
		drop_rkey(&xvs_rconns, &rk, &rv);
	count_out(v);
	return OUTCOME_REMOVED;
}

#endif /* XVS_EXPIRE_H */
