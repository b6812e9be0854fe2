/* SPDX-License-Identifier: GPL-2.0 */
/*
 * csum.h: incremental Internet checksum updates (RFC 1624, eqn. 3:
 * HC' = ~(~HC + ~m + m')) for the XDP entry. Values are raw packet words
 * as loaded (network order); the one's complement sum does not care about
 * byte order as long as every word is treated alike. Never sums a payload.
 */
#ifndef XVS_CSUM_H
#define XVS_CSUM_H

#include <linux/types.h>

/* csum_add: one's complement addition of two 32-bit partial sums. */
static __always_inline __u32 csum_add(__u32 a, __u32 b)
{
	a += b;
	return a + (a < b);
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

#endif /* XVS_CSUM_H */
