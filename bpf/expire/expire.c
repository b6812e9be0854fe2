// SPDX-License-Identifier: GPL-2.0
//go:build ignore

/*
 * expire.c: mass expiry of connections in the kernel. One run of
 * xvs_expire (BPF_PROG_TYPE_SYSCALL, run with BPF_PROG_TEST_RUN) removes a
 * batch of up to EXPIRE_BATCH idle conns, doing for each what
 * maps.DeleteConnIf does with seven syscalls or so:
 *
 *   main pair first, then the new pair (docs/datapath.md);
 *   keep the conn if its last_seen is no longer the one the daemon's walk
 *   saw (a packet refreshed it);
 *   delete its client-side key; if that fails someone else removed it;
 *   delete its server-side key where it still points at this conn;
 *   main pair: delete a copy of the same conn left in the new pair (a
 *   promotion in progress); new pair: if the main pair now holds the same
 *   conn, the datapath promoted it meanwhile: it lives on, still counted;
 *   count it out of its real server's ActiveConn or InActConn, by the
 *   class of the state it had when it was removed.
 *
 * The candidates are in xvs_exp_batch (an array of one entry, mmapped by
 * the daemon, which writes them before each run), not in the context: a
 * syscall program may not index its context with a variable offset. The
 * context carries the count; each candidate's outcome is written next to
 * it and the program returns how many it removed.
 *
 * Races are DeleteConnIf's, with smaller windows: a packet that refreshes
 * the conn between the last_seen check and the delete (a few instructions
 * here, two syscalls there) still sees it removed; a state change between
 * the copy of the value and the delete counts the conn out of the class
 * it had at the copy.
 *
 * The maps of maps.h are replaced at load time with the datapath's live
 * ones; only those xvs_expire uses are kept.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../xvs.h"
#include "../maps.h"
#include "../lib/state.h"
#include "../lib/conn.h"

#define EXPIRE_BATCH 1024

/* What happened to one candidate. */
enum outcome {
	OUTCOME_GONE = 0,    /* in neither pair, or removed by someone else */
	OUTCOME_REMOVED = 1, /* removed, and counted out */
	OUTCOME_FRESH = 2,   /* kept: last_seen changed since the walk */
	OUTCOME_MOVED = 3,   /* kept: promoted to the main pair meanwhile */
};

/* One conn to expire: its client-side key and the last_seen the walk saw. */
struct cand {
	struct conn_key key;
	__u64 last_seen;
};

/* The value of xvs_exp_batch[0]. */
struct batch {
	struct cand cands[EXPIRE_BATCH];
	__u8 outcome[EXPIRE_BATCH]; /* enum outcome, written by the run */
};

/* The run's context: cands[0..n) are to be expired. */
struct args {
	__u32 n;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct batch);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
} xvs_exp_batch SEC(".maps");

/* Never used: makes the enum part of BTF so that bpf2go emits it. */
const volatile enum outcome xvs_enum_outcome;

/* same_conn: whether two stored values are the same conn (the datapath's
 * copy of it in the other pair); maps.sameConn. The dest id names the
 * real server's address. */
static __always_inline int same_conn(const struct conn *a,
				     const struct conn *b)
{
	return a->svc_id == b->svc_id && a->dest_id == b->dest_id &&
	       a->dport == b->dport;
}

/* keys: the server-side key and value of conn v with client-side key
 * ckey. Returns 0, or -1 if v's dest id is out of range (no server-side
 * key can be made: there is none to drop, Go never installed one). */
static __always_inline int keys(struct conn_key *rk, struct rconn *rv,
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
	ok = !keys(&rk, &rv, ckey, v);
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
	ok = !keys(&rk, &rv, ckey, v);
	if (ok)
		drop_rkey(&xvs_rconns_new, &rk, &rv);
	cur = bpf_map_lookup_elem(&xvs_conns, ckey);
	if (cur && same_conn(cur, v))
		return OUTCOME_MOVED;
	/* The shadowing server-side entry maps.InstallConn made. */
	if (ok)
		drop_rkey(&xvs_rconns, &rk, &rv);
	count_out(v);
	return OUTCOME_REMOVED;
}

/* expire_cand: expires one candidate, main pair first. The value is
 * copied before the delete: a deleted entry of a preallocated hash may be
 * reused at once by another insert. */
static __always_inline int expire_cand(const struct cand *c)
{
	struct conn *p;
	struct conn v;

	p = bpf_map_lookup_elem(&xvs_conns, &c->key);
	if (p) {
		__builtin_memcpy(&v, p, sizeof(v));
		if (v.last_seen != c->last_seen)
			return OUTCOME_FRESH;
		return expire_main(&c->key, &v);
	}
	p = bpf_map_lookup_elem(&xvs_conns_new, &c->key);
	if (!p)
		return OUTCOME_GONE;
	__builtin_memcpy(&v, p, sizeof(v));
	if (v.last_seen != c->last_seen)
		return OUTCOME_FRESH;
	return expire_new(&c->key, &v);
}

/* The bpf_loop state: how many were removed. */
struct loop {
	__u32 removed;
};

static long expire_one(__u32 i, void *data)
{
	struct loop *l = data;
	struct batch *b;
	__u32 zero = 0;
	int o;

	b = bpf_map_lookup_elem(&xvs_exp_batch, &zero);
	if (!b || i >= EXPIRE_BATCH)
		return 1;
	o = expire_cand(&b->cands[i]);
	b->outcome[i] = o;
	if (o == OUTCOME_REMOVED)
		l->removed++;
	return 0;
}

/* xvs_expire: expires cands[0..n) of xvs_exp_batch[0]; returns how
 * many it removed. bpf_loop keeps the verifier's work to one pass over
 * the loop body whatever the batch size. */
SEC("syscall")
int xvs_expire(struct args *a)
{
	struct loop l = {};
	__u32 n = a->n;

	if (n > EXPIRE_BATCH)
		n = EXPIRE_BATCH;
	bpf_loop(n, expire_one, &l, 0);
	return l.removed;
}

char _license[] SEC("license") = "GPL";
