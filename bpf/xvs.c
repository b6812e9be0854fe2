// SPDX-License-Identifier: GPL-2.0
//go:build ignore

/*
 * xvs.c: the entry points of the datapath, XDP and TC (tcx ingress). Both
 * run the same steps from the helpers in lib/:
 *
 *   parse -> conn_find -> hit:  conn_admit -> conn_account -> nat -> fib -> xmit
 *                         miss: punt (first packet to a VIP) | pass | drop
 *
 * Every verdict counts exactly one enum reason in xvs_reasons.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"
#include "lib/parse.h"
#include "lib/csum.h"
#include "lib/stats.h"
#include "lib/state.h"
#include "lib/conn.h"
#include "lib/nat.h"
#include "lib/fib.h"
#include "lib/punt.h"

/* Never used: they make the enums part of BTF so that bpf2go emits them. */
const volatile enum reason xvs_enum_reason;
const volatile enum tcp_state xvs_enum_state;
const volatile enum family xvs_enum_family;
const volatile enum conn_flags xvs_enum_cflags;
const volatile enum dest_flags xvs_enum_dflags;

SEC("xdp")
int xvs_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fp = {};
	struct pkt p = {};
	struct hit h = {};
	int r;

	r = parse(data, data_end, data_end - data, 0, &p);
	if (r != XVS_CONTINUE)
		return xdp_verdict(r);
	if (!conn_find(&p, &h))
		return punt_xdp(ctx, &p);
	r = conn_admit(&p, &h);
	if (r != XVS_CONTINUE)
		return xdp_verdict(r);
	conn_account(&p, &h);
	r = nat_xdp(data_end, &p, &h);
	if (r != XVS_CONTINUE)
		return xdp_verdict(r);
	fib_fill(&fp, &p, &h, ctx->ingress_ifindex, p.ip_len);
	r = fib_result(bpf_fib_lookup(ctx, &fp, sizeof(fp), 0));
	if (r != XVS_CONTINUE)
		return xdp_verdict(r);
	return xdp_xmit(ctx, &p, &h, &fp);
}

/* tc_parse: makes the headers directly readable and writable, then parses.
 * A failed pull leaves the linear part short and parse() reports the
 * packet malformed. */
static __always_inline int tc_parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 want = skb->len < XVS_HDR_MAX ? skb->len : XVS_HDR_MAX;

	if (data + want > data_end) {
		bpf_skb_pull_data(skb, want);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	return parse(data, data_end, skb->len, skb->gso_size != 0, p);
}

SEC("tc")
int xvs_tc(struct __sk_buff *skb)
{
	struct bpf_fib_lookup fp = {};
	struct pkt p = {};
	struct hit h = {};
	int r;

	r = tc_parse(skb, &p);
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	if (!conn_find(&p, &h))
		return punt_tc(skb, &p);
	r = conn_admit(&p, &h);
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	conn_account(&p, &h);
	r = nat_tc(skb, &p, &h);
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	fib_fill(&fp, &p, &h, skb->ingress_ifindex, 0);
	r = fib_result(bpf_fib_lookup(skb, &fp, sizeof(fp), 0));
	if (r != XVS_CONTINUE)
		return tc_verdict(r);
	return tc_xmit(skb, &p, &h, &fp);
}

char _license[] SEC("license") = "GPL";
