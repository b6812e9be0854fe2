// SPDX-License-Identifier: GPL-2.0
/* xvs.c: the entry points of the datapath. Placeholder until the datapath lands. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"

/* Never used: they make the enums part of BTF so that bpf2go emits them. */
const volatile enum reason xvs_enum_reason;
const volatile enum tcp_state xvs_enum_state;
const volatile enum family xvs_enum_family;
const volatile enum conn_flags xvs_enum_cflags;
const volatile enum dest_flags xvs_enum_dflags;

SEC("xdp")
int xvs_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int xvs_tc(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
