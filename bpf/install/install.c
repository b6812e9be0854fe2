// SPDX-License-Identifier: GPL-2.0
//go:build ignore

/*
 * install.c: the first-packet path's installs in the kernel. One run of
 * xvs_install (BPF_PROG_TYPE_SYSCALL, run with BPF_PROG_TEST_RUN) installs
 * a batch of up to INSTALL_BATCH new conns into the new pair, doing for
 * each what maps.InstallConn does with five syscalls or so
 * (conn_install, lib/conn.h, which the datapath's own scheduling uses too).
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

/* install_rec: installs one record; returns its enum inst_result. */
static __always_inline int install_rec(struct inst *r, __s32 *e)
{
	long err = 0;
	int res;

	/* A conn the datapath punted again, or one another worker won. */
	if (conn_exists(&r->ckey))
		return INST_EXISTS;
	res = conn_install(&r->ckey, &r->skey, &r->val, &err);
	*e = err;
	return res;
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
