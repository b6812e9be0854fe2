/* SPDX-License-Identifier: GPL-2.0 */
/*
 * csum.h: incremental Internet checksum updates (RFC 1624, eqn. 3:
 * HC' = ~(~HC + ~m + m')) for the XDP entry. Values are raw packet words
 * as loaded (network order); the one's complement sum does not care about
 * byte order as long as every word is treated alike. Never sums a TCP or
 * UDP payload: csum_pkt() exists for ICMP errors only (verifying a received
 * one, summing one we build), which are at most XVS_CSUM_MAX bytes.
 */
#ifndef XVS_CSUM_H
#define XVS_CSUM_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../maps.h"

/* csum_pkt sums at most this much: 24 chunks of 64 bytes. ICMP errors
 * quote at most 576 (IPv4) or 1280 (IPv6) bytes of packet. */
#define XVS_CSUM_CHUNK 64
#define XVS_CSUM_CHUNKS 24
#define XVS_CSUM_MAX (XVS_CSUM_CHUNK * XVS_CSUM_CHUNKS)

/* csum_add: one's complement addition of two 32-bit partial sums. In 64
 * bits, so that the carry is a shift and not a compare: BPF has no setcc,
 * and the branch of `a + (a < b)` doubled the paths the verifier walks
 * through every checksum update. (The 33-bit sum is at most 2^33 - 2, so
 * its low half plus its carry cannot overflow.) */
static __always_inline __u32 csum_add(__u32 a, __u32 b)
{
	__u64 s = (__u64)a + b;

	return (__u32)s + (__u32)(s >> 32);
}

/* csum_fold16: folds a 32-bit partial sum to 16 bits (not inverted). */
static __always_inline __u16 csum_fold16(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* csum_diff4: adds the change of one 32-bit word from -> to to diff. */
static __always_inline __u32 csum_diff4(__u32 diff, __u32 from, __u32 to)
{
	return csum_add(csum_add(diff, ~from), to);
}

/* csum_diff2: adds the change of one 16-bit word from -> to to diff. */
static __always_inline __u32 csum_diff2(__u32 diff, __u16 from, __u16 to)
{
	return csum_add(csum_add(diff, (__u16)~from), to);
}

/* csum_apply: returns checksum field hc updated by the accumulated diff. */
static __always_inline __u16 csum_apply(__u16 hc, __u32 diff)
{
	return ~csum_fold16(csum_add(diff, (__u16)~hc));
}

/* csum_replace4: *sum updated for a 32-bit word changing from -> to. */
static __always_inline void csum_replace4(__u16 *sum, __u32 from, __u32 to)
{
	*sum = csum_apply(*sum, csum_diff4(0, from, to));
}

/* csum_replace2: *sum updated for a 16-bit word changing from -> to. */
static __always_inline void csum_replace2(__u16 *sum, __u16 from, __u16 to)
{
	*sum = csum_apply(*sum, csum_diff2(0, from, to));
}

/* XVS_CSUM_LOOP: the body of xvs_csum_xdp/xvs_csum_skb with LOAD, the
 * entry's byte loader. Each chunk of up to 64 bytes is copied to a per-CPU
 * scratch buffer (the stack is full) and summed by bpf_csum_diff; a short
 * last chunk is zero-padded to 4 bytes, which leaves the sum as it is (a
 * trailing odd byte is the high byte of a word whose low byte is zero, as
 * RFC 1071 wants). */
#define XVS_CSUM_LOOP(LOAD, ctx, off, len)                                  \
	__u32 s = 0, n, zero = 0;                                            \
	__u8 *buf;                                                           \
	int i;                                                               \
                                                                             \
	buf = bpf_map_lookup_elem(&xvs_scratch, &zero);                      \
	if (!buf || len > XVS_CSUM_MAX || off > 0xffff)                      \
		return -1;                                                   \
	for (i = 0; i < XVS_CSUM_CHUNKS && len; i++) {                       \
		n = len < XVS_CSUM_CHUNK ? len : XVS_CSUM_CHUNK;             \
		if (n < XVS_CSUM_CHUNK)                                      \
			__builtin_memset(buf, 0, XVS_CSUM_CHUNK);            \
		if (LOAD(ctx, off, buf, n))                                  \
			return -1;                                           \
		n = (n + 3) & ~3U;                                           \
		s = csum_add(s, bpf_csum_diff(0, 0, (void *)buf,             \
					      n < XVS_CSUM_CHUNK ? n :       \
					      XVS_CSUM_CHUNK, 0));           \
		if (len <= XVS_CSUM_CHUNK)                                   \
			break;                                               \
		off += XVS_CSUM_CHUNK;                                       \
		len -= XVS_CSUM_CHUNK;                                       \
	}                                                                    \
	return s

/* xvs_csum_xdp, xvs_csum_skb: the unfolded sum of the packet bytes off ..
 * off + len (len <= XVS_CSUM_MAX), or -1 if len is too long or the bytes
 * are not all in the packet. Global functions: the verifier checks each
 * once, on its own, instead of once per path that reaches a call. */
__noinline __s64 xvs_csum_xdp(struct xdp_md *ctx, __u32 off, __u32 len)
{
	XVS_CSUM_LOOP(bpf_xdp_load_bytes, ctx, off, len);
}

__noinline __s64 xvs_csum_skb(struct __sk_buff *skb, __u32 off, __u32 len)
{
	XVS_CSUM_LOOP(bpf_skb_load_bytes, skb, off, len);
}

/* csum_pkt: adds the packet bytes off .. off + len (off even relative to
 * the message start) to the partial sum *sum; ctx is the xdp_md (xdp != 0,
 * a constant) or the __sk_buff. Returns 0 or -1 (see xvs_csum_xdp). */
static __always_inline int csum_pkt(void *ctx, int xdp, __u32 off, __u32 len,
				    __u32 *sum)
{
	__s64 s = xdp ? xvs_csum_xdp(ctx, off, len) :
			xvs_csum_skb(ctx, off, len);

	if (s < 0)
		return -1;
	*sum = csum_add(*sum, (__u32)s);
	return 0;
}

/* csum_pseudo6: the IPv6 pseudo-header sum (RFC 8200 8.1) of addresses
 * src and dst (4 words each, network order), upper-layer length len and
 * next header nh. */
static __always_inline __u32 csum_pseudo6(const __u32 *src, const __u32 *dst,
					  __u32 len, __u8 nh)
{
	__u32 s = 0;
	int i;

	for (i = 0; i < 4; i++) {
		s = csum_add(s, src[i]);
		s = csum_add(s, dst[i]);
	}
	s = csum_add(s, bpf_htonl(len));
	return csum_add(s, bpf_htonl(nh));
}

#endif /* XVS_CSUM_H */
