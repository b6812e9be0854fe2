/* SPDX-License-Identifier: GPL-2.0 */
/*
 * parse.h: reads Ethernet (at most one 802.1Q tag), the IPv4 header (with
 * or without options) or the IPv6 fixed header (and a fragment header right
 * after it), and the TCP or UDP header or the ICMP type with a cursor,
 * checking bounds before every read and again after every variable length.
 *
 * Contract: parse() returns XVS_CONTINUE with struct pkt filled (a TCP or
 * UDP packet, possibly a first fragment: p->frag == XVS_FRAG_FIRST), or
 *   - XVS_ICMP: an ICMP error (IPv4 types 3, 4, 11; ICMPv6 1, 2, 3), p->l4
 *     at the ICMP header, p->key with the outer addresses (lib/icmp.h
 *     reads the quoted packet);
 *   - XVS_FRAG: a later fragment (offset > 0) of a TCP or UDP datagram,
 *     p->key with addresses and protocol but no ports, p->frag_id set;
 *   - else the enum reason of the packet's verdict:
 *   - not for us: REASON_PASS_NOT_IP, _NOT_L4, _FRAGMENT (fragments of
 *     other protocols, ICMP fragments), _IPV6_EXT (other extension
 *     headers; only a fragment header right after the fixed header is
 *     walked);
 *   - malformed IP packets: REASON_DROP_MALFORMED. That is ihl < 5, a wrong
 *     version, a total length beyond the frame or shorter than the headers,
 *     TCP doff < 5 or beyond the IP payload, a UDP length < 8 or beyond the
 *     IP payload (a first fragment's only < 8), an IPv6 fragment header
 *     cut. ip_rcv()/ipv6_rcv()/tcp_v4_rcv() would drop them as well;
 *     they are never rewritten. A frame whose 802.1Q tag is cut off is not
 *     known to be IP and passes as REASON_PASS_NOT_IP.
 * Padding after the IP datagram (short Ethernet frames) is allowed. A GSO
 * skb (TC) whose IP length is 0 (BIG TCP, over 64 KiB) takes its length
 * from the skb, as the kernel's iph_totlen() does. Packet
 * pointers in struct pkt stay valid until a helper moves packet data (XDP:
 * only the ICMP answers of lib/reply.h; TC uses offsets once it starts
 * rewriting, except for ICMP errors, which it pulls whole first).
 */
#ifndef XVS_PARSE_H
#define XVS_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "../xvs.h"

/* xvs_opaque: hides x's origin from the compiler, so that a context field
 * is loaded where it is read rather than through a pointer kept for later
 * (the verifier refuses a modified context pointer). */
#define xvs_opaque(x) asm volatile("" : "+r"(x))

/* "No decision yet": helpers return it or an enum reason (>= 0). */
#define XVS_CONTINUE -1
/* parse(): an ICMP error, or a later fragment; see the file comment. */
#define XVS_ICMP -2
#define XVS_FRAG -3
/* punt_decide(): the datapath installed the packet's conn (lib/sched.h). */
#define XVS_NEW -4

/* struct pkt frag */
#define XVS_FRAG_NONE 0
#define XVS_FRAG_FIRST 1  /* offset 0, more fragments: carries the ports */
#define XVS_FRAG_LATER 2  /* offset > 0: no L4 header */

#define XVS_IP_DF 0x4000
#define XVS_ICMP_DEST_UNREACH 3
#define XVS_ICMP_SOURCE_QUENCH 4
#define XVS_ICMP_TIME_EXCEEDED 11
#define XVS_ICMP6_DEST_UNREACH 1
#define XVS_ICMP6_PKT_TOOBIG 2
#define XVS_ICMP6_TIME_EXCEED 3
#define XVS_IPPROTO_FRAGMENT 44

#define XVS_IP_MF 0x2000
#define XVS_IP_OFFSET 0x1fff

/* Longest header chain we read: Ethernet + tag + IPv4 with 40 bytes of
 * options + TCP without options. */
#define XVS_HDR_MAX (14 + 4 + 60 + 20)

/* IPv6 fragment header (RFC 8200 4.5). */
struct ip6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | M */
	__be32 id;
};

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
	__u8 ipproto;        /* outer IP protocol (key.proto may be an ICMP
			      * error's quoted one) */
	__u8 frag;           /* XVS_FRAG_* */
	__u8 df;             /* IPv4 DF, or IPv6 (no router fragments it) */
	__u8 l4_hlen;        /* TCP or UDP header length */
	__u8 pad;
	__be32 frag_id;      /* IP id of a fragment (IPv4: 16 bits) */
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

/* parse_l3_next: the verdict on the protocol after the IP header(s), once
 * p->key.proto and p->frag are known. */
static __always_inline int parse_l3_next(struct pkt *p)
{
	int l4 = p->key.proto == IPPROTO_TCP || p->key.proto == IPPROTO_UDP;

	if (p->frag == XVS_FRAG_LATER)
		return l4 ? XVS_FRAG : REASON_PASS_FRAGMENT;
	if (p->frag == XVS_FRAG_FIRST && !l4)
		return REASON_PASS_FRAGMENT;
	if (l4)
		return XVS_CONTINUE;
	if (p->key.proto == IPPROTO_ICMP && p->key.family == FAMILY_INET)
		return XVS_ICMP;
	if (p->key.proto == IPPROTO_ICMPV6 && p->key.family == FAMILY_INET6)
		return XVS_ICMP;
	return REASON_PASS_NOT_L4;
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

	p->key.family = FAMILY_INET;
	p->key.proto = iph->protocol;
	p->ipproto = iph->protocol;
	__builtin_memcpy(p->key.saddr, &iph->saddr, 4);
	__builtin_memcpy(p->key.daddr, &iph->daddr, 4);
	p->ip_len = tot;
	p->ttl = iph->ttl;
	p->tos = iph->tos;
	p->df = (iph->frag_off & bpf_htons(XVS_IP_DF)) != 0;
	p->l4 = p->l3 + hlen;
	p->l4_off = p->l3_off + hlen;
	if (iph->frag_off & bpf_htons(XVS_IP_OFFSET))
		p->frag = XVS_FRAG_LATER;
	else if (iph->frag_off & bpf_htons(XVS_IP_MF))
		p->frag = XVS_FRAG_FIRST;
	p->frag_id = iph->id; /* the first two bytes */
	return parse_l3_next(p);
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
	struct ip6_frag *fh;
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
	p->key.family = FAMILY_INET6;
	__builtin_memcpy(p->key.saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->key.daddr, &ip6->daddr, 16);
	p->ip_len = plen + sizeof(*ip6);
	p->ttl = ip6->hop_limit;
	p->df = 1;
	p->l4 = ip6 + 1;
	p->l4_off = p->l3_off + sizeof(*ip6);
	p->key.proto = ip6->nexthdr;
	if (ip6->nexthdr == XVS_IPPROTO_FRAGMENT) {
		fh = (void *)(ip6 + 1);
		if ((void *)(fh + 1) > data_end || plen < sizeof(*fh))
			return REASON_DROP_MALFORMED;
		p->key.proto = fh->nexthdr;
		p->frag_id = fh->id;
		if (fh->frag_off & bpf_htons(0xfff8))
			p->frag = XVS_FRAG_LATER;
		else if (fh->frag_off & bpf_htons(1))
			p->frag = XVS_FRAG_FIRST;
		/* else an atomic fragment (RFC 6946): a whole datagram */
		p->l4 = fh + 1;
		p->l4_off += sizeof(*fh);
	}
	p->ipproto = p->key.proto;
	if (!p->frag && ipv6_is_ext(p->key.proto))
		return REASON_PASS_IPV6_EXT;
	return parse_l3_next(p);
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
		p->l4_hlen = th->doff * 4;
		p->key.sport = th->source;
		p->key.dport = th->dest;
		p->csum_off = p->l4_off + offsetof(struct tcphdr, check);
		return XVS_CONTINUE;
	}
	if ((void *)(uh + 1) > data_end || room < sizeof(*uh))
		return REASON_DROP_MALFORMED;
	ulen = bpf_ntohs(uh->len);
	/* a first fragment holds only the start of the datagram */
	if (ulen < sizeof(*uh) || (ulen > room && p->frag != XVS_FRAG_FIRST))
		return REASON_DROP_MALFORMED;
	p->l4_hlen = sizeof(*uh);
	p->key.sport = uh->source;
	p->key.dport = uh->dest;
	p->csum_off = p->l4_off + offsetof(struct udphdr, check);
	return XVS_CONTINUE;
}

/* parse_icmp_type: XVS_ICMP for an ICMP error about another packet (the
 * ones IPVS translates), REASON_PASS_NOT_L4 for any other ICMP message
 * (echo, ...: the director's own business) and for a cut ICMP header. */
static __always_inline int parse_icmp_type(void *data_end, struct pkt *p)
{
	__u8 *type = p->l4;

	if ((void *)(type + 8) > data_end ||
	    p->l3_off + p->ip_len < p->l4_off + 8)
		return REASON_PASS_NOT_L4;
	if (p->key.family == FAMILY_INET) {
		if (*type == XVS_ICMP_DEST_UNREACH ||
		    *type == XVS_ICMP_SOURCE_QUENCH ||
		    *type == XVS_ICMP_TIME_EXCEEDED)
			return XVS_ICMP;
	} else if (*type == XVS_ICMP6_DEST_UNREACH ||
		   *type == XVS_ICMP6_PKT_TOOBIG ||
		   *type == XVS_ICMP6_TIME_EXCEED) {
		return XVS_ICMP;
	}
	return REASON_PASS_NOT_L4;
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
	if (r == XVS_ICMP)
		return parse_icmp_type(data_end, p);
	if (r != XVS_CONTINUE)
		return r;
	return parse_l4(data_end, p);
}

#endif /* XVS_PARSE_H */
