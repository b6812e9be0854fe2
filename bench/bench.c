//go:build ignore
// SPDX-License-Identifier: GPL-2.0

/*
 * bench.c: the benchmark's own XDP programs, none of them part of xvs.
 *
 *   ref_xdp   the static reference: the least an XDP load balancer must do
 *             for one flow direction, with nothing looked up but a devmap.
 *             VIP -> RS on the external side, RS -> VIP on the internal
 *             side, incremental IPv4 and L4 checksum update, fixed MACs,
 *             bpf_redirect_map. Ports are not rewritten (VIP port == RS
 *             port). Everything else: XDP_PASS.
 *   gen_xdp   the traffic generator, run with BPF_PROG_TEST_RUN in live
 *             frame mode on the generator's veth: rewrites the template
 *             UDP frame's source (port, and address in new-flow mode) and
 *             returns XDP_TX, so each run puts Repeat frames on the wire.
 *   sink_xdp  the real servers' counter: counts and drops IPv4 UDP to
 *             sink_port, passes everything else (ARP, ICMP, TCP). While
 *             sink_ctl[0] is 1 it passes what it counts to the real
 *             servers' kernel instead, where an echo socket answers (the
 *             warm-up of established flows).
 *
 * Configuration is load-time constants set from Go; addresses are network
 * order, ifindexes and MACs as the kernel gives them.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* ref_xdp configuration. */
volatile const __u32 ref_vip;     /* network order */
volatile const __u32 ref_rs;      /* network order */
volatile const __u32 ref_ext_idx; /* ifindex of the external side */
volatile const __u8 ref_ext_src[ETH_ALEN]; /* MAC of the external iface */
volatile const __u8 ref_ext_dst[ETH_ALEN]; /* MAC of the client's iface */
volatile const __u8 ref_int_src[ETH_ALEN]; /* MAC of the internal iface */
volatile const __u8 ref_int_dst[ETH_ALEN]; /* MAC of the real server */

/* gen_xdp configuration. gen_hdr is the template's Ethernet, IPv4 and UDP
 * headers: live frame mode recycles pages without resetting their data, so
 * a frame may come back rewritten by the director and every run rewrites
 * the headers whole. */
#define GEN_HDR_WORDS 21 /* 42 bytes */
volatile const __u16 gen_hdr[GEN_HDR_WORDS];
volatile const __u32 gen_flows;     /* established mode: flows to cycle over */
volatile const __u32 gen_new_flows; /* 1: every frame a new flow */
volatile const __u16 gen_sport;     /* first source port, host order */
volatile const __u32 gen_salt;      /* new-flow mode: start of this run */
volatile const __u32 gen_flood_every; /* established mode: every Nth frame a
				       * new flow (a flood mixed into the
				       * traffic); 0 = none */
volatile const __u64 gen_gap_ns; /* at least this long between frames on
				  * one CPU (a paced generator); 0 = none */

/* sink_xdp configuration. */
volatile const __u16 sink_port; /* host order */

/* Redirect targets of ref_xdp: 0 = internal iface, 1 = external iface. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 2);
} ref_tx SEC(".maps");

/* Frames generated on this CPU (gen_xdp) or counted (sink_xdp). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 4);
} bench_cnt SEC(".maps");

/* sink_xdp's switch, set from Go: 1 = pass (to be answered), 0 = drop. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} sink_ctl SEC(".maps");

#define CNT_GEN 0
#define CNT_SINK 1
#define CNT_FLOOD 2 /* gen_xdp: of CNT_GEN, new-flow frames (gen_flood_every) */
#define CNT_NEXT 3  /* gen_xdp, paced: when the next frame may leave, ns */

static __always_inline __u32 csum_add(__u32 a, __u32 b)
{
	a += b;
	return a + (a < b);
}

/* csum_replace4: *sum updated for a 32-bit word changing from -> to
 * (RFC 1624 eqn. 3). */
static __always_inline void csum_replace4(__u16 *sum, __u32 from, __u32 to)
{
	__u32 s = csum_add(csum_add((__u16)~*sum, ~from), to);

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	*sum = ~(__u16)s;
}

static __always_inline void set_macs(struct ethhdr *eth,
				     const volatile __u8 *src,
				     const volatile __u8 *dst)
{
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		eth->h_source[i] = src[i];
		eth->h_dest[i] = dst[i];
	}
}

/* l4_csum: the TCP or UDP checksum field of the packet, or NULL. An IPv4
 * UDP checksum of 0 (none) is returned as NULL: it stays 0. */
static __always_inline __u16 *l4_csum(struct iphdr *iph, void *data_end)
{
	void *l4 = (void *)iph + iph->ihl * 4;

	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return NULL;
		return &th->check;
	}
	if (iph->protocol == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || uh->check == 0)
			return NULL;
		return &uh->check;
	}
	return NULL;
}

SEC("xdp")
int ref_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	__u16 *l4sum;
	__u32 key;

	if ((void *)(iph + 1) > data_end ||
	    eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl != 5)
		return XDP_PASS;
	l4sum = l4_csum(iph, data_end);
	if (iph->daddr == ref_vip && ctx->ingress_ifindex == ref_ext_idx) {
		if (l4sum)
			csum_replace4(l4sum, iph->daddr, ref_rs);
		csum_replace4(&iph->check, iph->daddr, ref_rs);
		iph->daddr = ref_rs;
		set_macs(eth, ref_int_src, ref_int_dst);
		key = 0;
	} else if (iph->saddr == ref_rs && ctx->ingress_ifindex != ref_ext_idx) {
		if (l4sum)
			csum_replace4(l4sum, iph->saddr, ref_vip);
		csum_replace4(&iph->check, iph->saddr, ref_vip);
		iph->saddr = ref_vip;
		set_macs(eth, ref_ext_src, ref_ext_dst);
		key = 1;
	} else {
		return XDP_PASS;
	}
	return bpf_redirect_map(&ref_tx, key, XDP_DROP);
}

/* ip_csum: the header checksum of a 20-byte IPv4 header, computed whole. */
static __always_inline __u16 ip_csum(struct iphdr *iph)
{
	__u16 *w = (__u16 *)iph;
	__u32 s = 0;

	iph->check = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		s += w[i];
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~(__u16)s;
}

SEC("xdp")
int gen_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct udphdr *uh = (void *)(iph + 1);
	__u32 key = CNT_GEN, fkey = CNT_FLOOD, nkey = CNT_NEXT, flow;
	__u64 *n, *fl, *next, seq;
	int flood = 0;

	if ((void *)(uh + 1) > data_end)
		return XDP_ABORTED;
	if (gen_gap_ns) {
		/* Paced: a frame that is early is dropped here, before it
		 * reaches the veth. An unpaced generator offers several
		 * times what the director takes, and its failed pushes into
		 * the full receive ring contend for the ring's cache lines
		 * with the director that drains it. */
		__u64 now = bpf_ktime_get_ns();

		next = bpf_map_lookup_elem(&bench_cnt, &nkey);
		if (!next)
			return XDP_ABORTED;
		if (now < *next)
			return XDP_DROP;
		/* Catch up at most a millisecond's worth after a stall. */
		if (*next + 1000000 < now)
			*next = now - 1000000;
		*next += gen_gap_ns;
	}
	n = bpf_map_lookup_elem(&bench_cnt, &key);
	fl = bpf_map_lookup_elem(&bench_cnt, &fkey);
	if (!n || !fl)
		return XDP_ABORTED;
#pragma unroll
	for (int i = 0; i < GEN_HDR_WORDS; i++)
		((__u16 *)data)[i] = gen_hdr[i];
	seq = *n;
	if (!gen_new_flows && gen_flood_every && *n % gen_flood_every == 0) {
		flood = 1;
		seq = *fl;
		(*fl)++;
	}
	if (gen_new_flows || flood) {
		/* 2^15 ports x 2^15 addresses in the upper half of the
		 * template's /16; CPUs interleave. */
		flow = gen_salt + (__u32)seq * 64 + bpf_get_smp_processor_id();
		uh->source = bpf_htons(1024 + (flow & 0x7fff));
		iph->saddr = (iph->saddr & bpf_htonl(0xffff0000)) |
			     bpf_htonl(0x8000 | ((flow >> 15) & 0x7fff));
		iph->check = ip_csum(iph);
	} else {
		flow = (__u32)(*n % gen_flows);
		uh->source = bpf_htons(gen_sport + flow);
	}
	uh->check = 0;
	(*n)++;
	return XDP_TX;
}

SEC("xdp")
int sink_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct udphdr *uh = (void *)(iph + 1);
	__u32 key = CNT_SINK, zero = 0, *answer;
	__u64 *n;

	if ((void *)(uh + 1) > data_end ||
	    eth->h_proto != bpf_htons(ETH_P_IP) || iph->ihl != 5 ||
	    iph->protocol != IPPROTO_UDP || uh->dest != bpf_htons(sink_port))
		return XDP_PASS;
	n = bpf_map_lookup_elem(&bench_cnt, &key);
	if (n)
		(*n)++;
	answer = bpf_map_lookup_elem(&sink_ctl, &zero);
	if (answer && *answer)
		return XDP_PASS;
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
