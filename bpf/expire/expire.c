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
 * xvs_sweep (below) does the daemon's walk too, for tables small enough
 * that one run may hold its CPU for the walk.
 *
 * The maps of maps.h are replaced at load time with the datapath's live
 * ones; only those the loaded program uses are kept.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "../xvs.h"
#include "../maps.h"
#include "../lib/state.h"
#include "../lib/conn.h"
#include "../lib/expire.h"

#define EXPIRE_BATCH 1024

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

/* The sweep's context: the daemon's clock and the timeouts, in ns. */
struct sweep_args {
	__u64 now;		 /* CLOCK_MONOTONIC, as last_seen */
	__u64 new_to;		 /* a conn that has forwarded no packet yet */
	__u64 udp_to;		 /* UDP */
	__u64 tcp_to[STATE_MAX]; /* TCP, by state */
	__u32 limit;		 /* stop after removing this many */
	__u32 visited;		 /* out: conns the run looked at */
	__u32 max_visits;	 /* stop after looking at this many (0: no bound) */
	__u32 cut;		 /* out: 1 if the run stopped before the end */
};

/* The sweep's state: the arguments (a callback's context must be on the
 * stack) and how many were removed. */
struct sweep {
	struct sweep_args a;
	__u32 removed;
	__u32 visits;
	__u32 cut;
};

/* sweep_cut: whether the run stops before the conn a callback is given:
 * it has removed its limit or looked at its bound. The kernel's walk does
 * not yield the CPU, so both bound how long a run holds it. A walk cannot
 * resume where a run stopped, so a run that stops is cut: the daemon
 * walks the tables instead. */
static __always_inline int sweep_cut(struct sweep *s)
{
	if (s->cut)
		return 1;
	if (s->removed >= s->a.limit ||
	    (s->a.max_visits && s->visits >= s->a.max_visits)) {
		s->cut = 1;
		return 1;
	}
	s->visits++;
	return 0;
}

/* sweep_idle: whether conn v with key k has been idle for longer than its
 * timeout (ctl.connTimeout). A last_seen ahead of now (a packet since the
 * daemon read its clock) is not idle. */
static __always_inline int sweep_idle(const struct sweep *s,
				      const struct conn_key *k,
				      const struct conn *v)
{
	__u64 to;
	__u32 st = v->state;

	if (v->flags & CONN_F_NEW)
		to = s->a.new_to;
	else if (k->proto == IPPROTO_UDP)
		to = s->a.udp_to;
	else
		to = s->a.tcp_to[st < STATE_MAX ? st : STATE_NONE];
	return v->last_seen < s->a.now && s->a.now - v->last_seen > to;
}

/* sweep_one: a walk's callback for the conn key/val of the main pair
 * (main) or the new one: removed if idle, as xvs_expire would. The key
 * and value are copied first: once deleted, the element of a
 * preallocated hash may be reused at once by another CPU's insert, and
 * expire_main uses the key after its delete. Returns 1 to stop the walk. */
static __always_inline long sweep_one(const struct conn_key *key,
				      const struct conn *val, struct sweep *s,
				      int main)
{
	struct conn_key k;
	struct conn v;
	int o;

	if (sweep_cut(s))
		return 1;
	__builtin_memcpy(&v, val, sizeof(v));
	__builtin_memcpy(&k, key, sizeof(k));
	if (!sweep_idle(s, &k, &v))
		return 0;
	o = main ? expire_main(&k, &v) : expire_new(&k, &v);
	if (o == OUTCOME_REMOVED)
		s->removed++;
	return 0;
}

static long sweep_main(void *map, const struct conn_key *key,
		       const struct conn *val, struct sweep *s)
{
	return sweep_one(key, val, s, 1);
}

static long sweep_new(void *map, const struct conn_key *key,
		      const struct conn *val, struct sweep *s)
{
	return sweep_one(key, val, s, 0);
}

/* xvs_sweep: removes the idle conns of both pairs, main pair first, in
 * one walk of each, in the kernel: the daemon's walk copies every conn
 * out (about half a microsecond each in a million) and hands the idle
 * ones back to xvs_expire, whose first lookup of each the walk here does
 * not need. Conns are removed as xvs_expire removes them (lib/expire.h).
 * Returns how many it removed; a->cut says whether it stopped at its
 * limit or its max_visits before the end of the tables. The kernel's walk
 * does not yield the CPU, so the daemon keeps both small and walks the
 * tables itself, in short syscalls, after a cut run. A hash walk that
 * meets a deleted element reused elsewhere ends its bucket early; what it
 * misses, the next sweep finds. */
SEC("syscall")
int xvs_sweep(struct sweep_args *a)
{
	struct sweep s = {};

	s.a.now = a->now;
	s.a.new_to = a->new_to;
	s.a.udp_to = a->udp_to;
	s.a.limit = a->limit;
	s.a.max_visits = a->max_visits;
	for (int i = 0; i < STATE_MAX; i++)
		s.a.tcp_to[i] = a->tcp_to[i];
	bpf_for_each_map_elem(&xvs_conns, sweep_main, &s, 0);
	/* Unconditional: sweep_new stops at once if the run is cut (a walk
	 * under a condition here made this kernel's verifier fail with
	 * EFAULT). */
	bpf_for_each_map_elem(&xvs_conns_new, sweep_new, &s, 0);
	a->visited = s.visits;
	a->cut = s.cut;
	return s.removed;
}

char _license[] SEC("license") = "GPL";
