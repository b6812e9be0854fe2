/* SPDX-License-Identifier: GPL-2.0 */
/*
 * parse.h: reads Ethernet (at most one 802.1Q tag), the IPv4 header (with
 * or without options) or the IPv6 fixed header, and the TCP or UDP header
 * with a cursor, checking bounds before every read and again after every
 * variable length.
 *
 * Contract: parse() returns XVS_CONTINUE with struct pkt filled, or the
 * enum reason of the packet's verdict:
 *   - not for us: REASON_PASS_NOT_IP, _NOT_L4, _FRAGMENT, _IPV6_EXT;
 *   - malformed IP packets: REASON_DROP_MALFORMED. That is ihl < 5, a wrong
 *     version, a total length beyond the frame or shorter than the headers,
 *     TCP doff < 5 or beyond the IP payload, a UDP length < 8 or beyond the
 *     IP payload. ip_rcv()/ipv6_rcv()/tcp_v4_rcv() would drop them as well;
 *     they are never rewritten. A frame whose 802.1Q tag is cut off is not
 *     known to be IP and passes as REASON_PASS_NOT_IP.
 * Padding after the IP datagram (short Ethernet frames) is allowed. A GSO
 * skb (TC) whose IP length is 0 (BIG TCP, over 64 KiB) takes its length
 * from the skb, as the kernel's iph_totlen() does. Packet
 * pointers in struct pkt stay valid until a helper moves packet data (XDP
 * calls none; TC uses offsets once it starts rewriting).
 */
#ifndef XVS_PARSE_H
#define XVS_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "../xvs.h"

/* "No decision yet": helpers return it or an enum reason (>= 0). */
#define XVS_CONTINUE -1

#define XVS_IP_MF 0x2000
#define XVS_IP_OFFSET 0x1fff

/* Longest header chain we read: Ethernet + tag + IPv4 with 40 bytes of
 * options + TCP without options. */
#define XVS_HDR_MAX (14 + 4 + 60 + 20)

struct vlan_tag {
	__be16 tci;
	__be16 proto; /* encapsulated EtherType */
};

/* One parsed packet. */
struct pkt {
	struct conn_key key; /* the packet's own tuple (src, dst, ports): the
			      * key of xvs_conns and of xvs_rconns alike */
	void *l3;            /* struct iphdr or struct ipv6hdr */
	void *l4;            /* struct tcphdr or struct udphdr */
	__u32 l3_off;        /* offsets from the frame start */
	__u32 l4_off;
	__u32 csum_off;      /* the TCP or UDP checksum field */
	__u32 ip_len;        /* IP total length as received (IPv6: payload + 40) */
	__u8 ttl;            /* TTL or hop limit */
	__u8 tcp_flags;      /* byte 13 of the TCP header; 0 for UDP */
	__u8 tos;            /* IPv4 TOS, for the fib lookup */
	__u8 pad;
};

/* parse_eth: returns XVS_CONTINUE with *l3 at the IP header and *proto its
 * EtherType (IPv4 or IPv6), or REASON_PASS_NOT_IP. */
static __always_inline int parse_eth(void *data, void *data_end, void **l3,
				     __be16 *proto)
{
	struct ethhdr *eth = data;
	struct vlan_tag *tag;

	if ((void *)(eth + 1) > data_end)
		return REASON_PASS_NOT_IP;
	*proto = eth->h_proto;
	*l3 = eth + 1;
	if (eth->h_proto == bpf_htons(ETH_P_8021Q)) {
		tag = (void *)(eth + 1);
		if ((void *)(tag + 1) > data_end)
			return REASON_PASS_NOT_IP;
		*proto = tag->proto;
		*l3 = tag + 1;
	}
	if (*proto != bpf_htons(ETH_P_IP) && *proto != bpf_htons(ETH_P_IPV6))
		return REASON_PASS_NOT_IP;
	return XVS_CONTINUE;
}

/* parse_ipv4: fills the addresses, ip_len, ttl and l4 of p from the header
 * at p->l3. Returns XVS_CONTINUE or a reason (see the file comment). */
static __always_inline int parse_ipv4(void *data_end, __u32 len, int gso,
				      struct pkt *p)
{
	struct iphdr *iph = p->l3;
	__u32 hlen, tot;

	if ((void *)(iph + 1) > data_end)
		return REASON_DROP_MALFORMED;
	if (iph->version != 4 || iph->ihl < 5)
		return REASON_DROP_MALFORMED;
	hlen = iph->ihl * 4;
	tot = bpf_ntohs(iph->tot_len);
	if (!tot && gso)
		tot = len - p->l3_off; /* >= 20: iph is within data */
	if (tot < hlen || p->l3_off + tot > len)
		return REASON_DROP_MALFORMED;
	if (p->l3 + hlen > data_end)
		return REASON_DROP_MALFORMED;
	if (iph->frag_off & bpf_htons(XVS_IP_MF | XVS_IP_OFFSET))
		return REASON_PASS_FRAGMENT;
	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return REASON_PASS_NOT_L4;

	p->key.family = FAMILY_INET;
	p->key.proto = iph->protocol;
	__builtin_memcpy(p->key.saddr, &iph->saddr, 4);
	__builtin_memcpy(p->key.daddr, &iph->daddr, 4);
	p->ip_len = tot;
	p->ttl = iph->ttl;
	p->tos = iph->tos;
	p->l4 = p->l3 + hlen;
	p->l4_off = p->l3_off + hlen;
	return XVS_CONTINUE;
}

/* ipv6_is_ext: whether nexthdr is an IPv6 extension header (RFC 8200 and
 * the IANA list), which we do not walk. */
static __always_inline int ipv6_is_ext(__u8 nexthdr)
{
	switch (nexthdr) {
	case 0:   /* hop-by-hop options */
	case 43:  /* routing */
	case 44:  /* fragment */
	case 50:  /* ESP */
	case 51:  /* AH */
	case 60:  /* destination options */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
	case 253: /* experiments */
	case 254:
		return 1;
	}
	return 0;
}

/* parse_ipv6: as parse_ipv4 for the IPv6 fixed header. */
static __always_inline int parse_ipv6(void *data_end, __u32 len, int gso,
				      struct pkt *p)
{
	struct ipv6hdr *ip6 = p->l3;
	__u32 plen;

	if ((void *)(ip6 + 1) > data_end)
		return REASON_DROP_MALFORMED;
	if (ip6->version != 6)
		return REASON_DROP_MALFORMED;
	plen = bpf_ntohs(ip6->payload_len);
	if (!plen && gso)
		plen = len - p->l3_off - sizeof(*ip6); /* ip6 is within data */
	if (p->l3_off + sizeof(*ip6) + plen > len)
		return REASON_DROP_MALFORMED;
	if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP)
		return ipv6_is_ext(ip6->nexthdr) ? REASON_PASS_IPV6_EXT :
						   REASON_PASS_NOT_L4;

	p->key.family = FAMILY_INET6;
	p->key.proto = ip6->nexthdr;
	__builtin_memcpy(p->key.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->key.daddr, &ip6->daddr, 16);
	p->ip_len = plen + sizeof(*ip6);
	p->ttl = ip6->hop_limit;
	p->l4 = ip6 + 1;
	p->l4_off = p->l3_off + sizeof(*ip6);
	return XVS_CONTINUE;
}

/* parse_l4: checks the TCP or UDP header at p->l4 against the frame and the
 * IP payload length, fills ports, flags and csum_off. */
static __always_inline int parse_l4(void *data_end, struct pkt *p)
{
	__u32 room = p->l3_off + p->ip_len - p->l4_off; /* L4 bytes per IP */
	struct tcphdr *th = p->l4;
	struct udphdr *uh = p->l4;
	__u32 ulen;

	if (p->key.proto == IPPROTO_TCP) {
		if ((void *)(th + 1) > data_end || room < sizeof(*th))
			return REASON_DROP_MALFORMED;
		if (th->doff < 5 || th->doff * 4 > room)
			return REASON_DROP_MALFORMED;
		p->tcp_flags = ((__u8 *)th)[13];
		p->key.sport = th->source;
		p->key.dport = th->dest;
		p->csum_off = p->l4_off + offsetof(struct tcphdr, check);
		return XVS_CONTINUE;
	}
	if ((void *)(uh + 1) > data_end || room < sizeof(*uh))
		return REASON_DROP_MALFORMED;
	ulen = bpf_ntohs(uh->len);
	if (ulen < sizeof(*uh) || ulen > room)
		return REASON_DROP_MALFORMED;
	p->key.sport = uh->source;
	p->key.dport = uh->dest;
	p->csum_off = p->l4_off + offsetof(struct udphdr, check);
	return XVS_CONTINUE;
}

/* parse: the whole chain. len is the packet length (XDP: the frame; TC:
 * skb->len), data..data_end the directly readable part, gso whether the
 * skb is GSO. Returns XVS_CONTINUE with p filled, or a reason. */
static __always_inline int parse(void *data, void *data_end, __u32 len,
				 int gso, struct pkt *p)
{
	__be16 proto;
	int r;

	r = parse_eth(data, data_end, &p->l3, &proto);
	if (r != XVS_CONTINUE)
		return r;
	p->l3_off = p->l3 - data;
	if (proto == bpf_htons(ETH_P_IP))
		r = parse_ipv4(data_end, len, gso, p);
	else
		r = parse_ipv6(data_end, len, gso, p);
	if (r != XVS_CONTINUE)
		return r;
	return parse_l4(data_end, p);
}

#endif /* XVS_PARSE_H */
