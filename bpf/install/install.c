// SPDX-License-Identifier: GPL-2.0
//go:build ignore

/*
 * install.c: the first-packet path's installs in the kernel. One run of
 * xvs_install (BPF_PROG_TYPE_SYSCALL, run with BPF_PROG_TEST_RUN) installs
 * a batch of up to INSTALL_BATCH new conns into the new pair, doing for
 * each what maps.InstallConn does with five syscalls or so:
 *
 *   refuse a client-side key either pair has (a race with another worker
 *   or a conn the datapath punted again: the caller looks it up);
 *   server-side key first (xvs_rconns_new), so that a reply can never miss
 *   a conn the datapath already forwards; then the client-side key
 *   (BPF_NOEXIST); on a lost race keep the winner's server-side key;
 *   point a server-side key of an older conn in xvs_rconns at ours, the way
 *   a newer conn shadows an older one in IPVS's out-lookup.
 *
 * A full new pair is reported, not handled: making room is the daemon's
 * (it knows the oldest half-open conns), and so are the real servers'
 * counters, which it changes in the mmapped xvs_dests after the run.
 *
 * Each worker has its own slot in xvs_inst_batch (mmapable: the daemon
 * writes the records and reads the results without a syscall). A syscall
 * program may not index its context with a variable offset, so the
 * records are in the map and the context names the slot and the count.
 *
 * The maps of maps.h are replaced at load time with the datapath's live
 * ones; only those xvs_install uses are kept.
 */
#include <linux/bpf.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include "../xvs.h"
#include "../maps.h"
#include "../lib/state.h"
#include "../lib/conn.h"

#define INSTALL_BATCH 64
#define INSTALL_SLOTS 16

/* What happened to one record. */
enum inst_result {
	INST_OK = 0,     /* installed in the new pair */
	INST_EXISTS = 1, /* the client-side key is in a pair already */
	INST_FULL = 2,   /* the new pair is full */
	INST_ERROR = 3,  /* another error; err[] holds it */
};

/* One new conn: its two keys and its value (state, flags, last_seen set).
 * skey's source is the address xvs_dests holds for val.dest_id (the
 * daemon checks it); the server-side value is made here from ckey and
 * val. */
struct inst {
	struct conn_key ckey;
	struct conn_key skey;
	struct conn val;
};

/* The value of xvs_inst_batch[slot]. */
struct inst_batch {
	struct inst recs[INSTALL_BATCH];
	__s32 err[INSTALL_BATCH];      /* -errno of INST_ERROR */
	__u8 result[INSTALL_BATCH];    /* enum inst_result, written by the run */
};

/* The run's context: recs[0..n) of slot are to be installed, or with
 * check set only looked up: INST_EXISTS or INST_OK (absent) each, from
 * the client-side keys alone. The daemon checks a batch before it
 * schedules it, so that a packet of a conn that exists (punted twice, or a
 * SYN reusing a closed conn) does not cost a scheduling decision. */
struct inst_args {
	__u32 slot;
	__u32 n;
	__u32 check;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct inst_batch);
	__uint(max_entries, INSTALL_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
} xvs_inst_batch SEC(".maps");

/* Never used: makes the enum part of BTF so that bpf2go emits it. */
const volatile enum inst_result xvs_enum_inst_result;

/* conn_exists: whether either pair has client-side key ckey. */
static __always_inline int conn_exists(const struct conn_key *ckey)
{
	return bpf_map_lookup_elem(&xvs_conns, ckey) ||
	       bpf_map_lookup_elem(&xvs_conns_new, ckey);
}

/* install_rec: installs one record; returns its enum inst_result. */
static __always_inline int install_rec(struct inst *r, __s32 *e)
{
	struct conn_key rk = {};
	struct rconn rv = {}, wv = {};
	struct conn *cur;
	long err;

	if (conn_exists(&r->ckey))
		return INST_EXISTS;
	conn_rconn(&rv, &r->ckey, &r->val);
	err = bpf_map_update_elem(&xvs_rconns_new, &r->skey, &rv, BPF_ANY);
	if (err == -E2BIG)
		return INST_FULL;
	if (err) {
		*e = err;
		return INST_ERROR;
	}
	err = bpf_map_update_elem(&xvs_conns_new, &r->ckey, &r->val, BPF_NOEXIST);
	if (err == -EEXIST) {
		/* Another worker won: give the server-side key back to the
		 * winner if it uses the same one. */
		cur = bpf_map_lookup_elem(&xvs_conns_new, &r->ckey);
		if (cur && !conn_rkey_of(&rk, &r->ckey, cur) &&
		    conn_key_eq(&rk, &r->skey)) {
			conn_rconn(&wv, &r->ckey, cur);
			if (!rconn_eq(&wv, &rv))
				bpf_map_update_elem(&xvs_rconns_new, &r->skey,
						    &wv, BPF_EXIST);
		} else {
			drop_rkey(&xvs_rconns_new, &r->skey, &rv);
		}
		return INST_EXISTS;
	}
	if (err) {
		drop_rkey(&xvs_rconns_new, &r->skey, &rv);
		if (err == -E2BIG)
			return INST_FULL;
		*e = err;
		return INST_ERROR;
	}
	/* xvs_rconns is looked up first: a key there of an older conn would
	 * shadow ours. Point it at ours; the datapath then misses in the main
	 * pair and finds ours in the new one. */
	bpf_map_update_elem(&xvs_rconns, &r->skey, &rv, BPF_EXIST);
	return INST_OK;
}

/* The bpf_loop state. */
struct loop {
	__u32 slot;
	__u32 check;
	__u32 ok;
};

static long install_one(__u32 i, void *data)
{
	struct loop *l = data;
	struct inst_batch *b;

	b = bpf_map_lookup_elem(&xvs_inst_batch, &l->slot);
	if (!b || i >= INSTALL_BATCH)
		return 1;
	b->err[i] = 0;
	if (l->check)
		b->result[i] = conn_exists(&b->recs[i].ckey) ? INST_EXISTS : INST_OK;
	else
		b->result[i] = install_rec(&b->recs[i], &b->err[i]);
	if (b->result[i] == INST_OK)
		l->ok++;
	return 0;
}

/* xvs_install: installs (or checks) recs[0..n) of xvs_inst_batch[slot];
 * returns how many it installed (found absent), or -1 for a slot out of
 * range. bpf_loop keeps the verifier's work to one pass over the loop
 * body. */
SEC("syscall")
int xvs_install(struct inst_args *a)
{
	struct loop l = {.slot = a->slot, .check = a->check};
	__u32 n = a->n;

	if (l.slot >= INSTALL_SLOTS)
		return -1;
	if (n > INSTALL_BATCH)
		n = INSTALL_BATCH;
	bpf_loop(n, install_one, &l, 0);
	return l.ok;
}

char _license[] SEC("license") = "GPL";
