/* SPDX-License-Identifier: GPL-2.0 */
/*
 * state.h: IPVS's TCP state machine (ip_vs_proto_tcp.c, default tables,
 * secure_tcp off) for NAT conns: the INPUT table for client -> server
 * packets, OUTPUT for server -> client; INPUT-ONLY is never used.
 *
 * Each table row (one event) is packed into a __u64, four bits per current
 * state: next = row >> (4 * cur) & 0xf. No memory, no bounds to prove.
 */
#ifndef XVS_STATE_H
#define XVS_STATE_H

#include <linux/types.h>
#include <linux/tcp.h>
#include "../xvs.h"

#define S_NO STATE_NONE
#define S_ES STATE_ESTABLISHED
#define S_SS STATE_SYN_SENT
#define S_SR STATE_SYN_RECV
#define S_FW STATE_FIN_WAIT
#define S_TW STATE_TIME_WAIT
#define S_CL STATE_CLOSE
#define S_CW STATE_CLOSE_WAIT
#define S_LA STATE_LAST_ACK
#define S_LI STATE_LISTEN
#define S_SA STATE_SYNACK

/* One row, columns in state order NO ES SS SR FW TW CL CW LA LI SA. */
#define TCP_ROW(no, es, ss, sr, fw, tw, cl, cw, la, li, sa)                  \
	((__u64)(no) | (__u64)(es) << 4 | (__u64)(ss) << 8 |                  \
	 (__u64)(sr) << 12 | (__u64)(fw) << 16 | (__u64)(tw) << 20 |          \
	 (__u64)(cl) << 24 | (__u64)(cw) << 28 | (__u64)(la) << 32 |          \
	 (__u64)(li) << 36 | (__u64)(sa) << 40)

/* INPUT (client -> server) */
#define TCP_IN_SYN TCP_ROW(S_SR, S_ES, S_ES, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR, S_SR)
#define TCP_IN_FIN TCP_ROW(S_CL, S_CW, S_SS, S_TW, S_TW, S_TW, S_CL, S_CW, S_LA, S_LI, S_TW)
#define TCP_IN_ACK TCP_ROW(S_ES, S_ES, S_SS, S_ES, S_FW, S_TW, S_CL, S_CW, S_CL, S_LI, S_ES)
#define TCP_IN_RST TCP_ROW(S_CL, S_CL, S_CL, S_SR, S_CL, S_CL, S_CL, S_CL, S_LA, S_LI, S_SR)
/* OUTPUT (server -> client) */
#define TCP_OUT_SYN TCP_ROW(S_SS, S_ES, S_SS, S_SR, S_SS, S_SS, S_SS, S_SS, S_SS, S_LI, S_SR)
#define TCP_OUT_FIN TCP_ROW(S_TW, S_FW, S_SS, S_TW, S_FW, S_TW, S_CL, S_TW, S_LA, S_LI, S_TW)
#define TCP_OUT_ACK TCP_ROW(S_ES, S_ES, S_SS, S_ES, S_FW, S_TW, S_CL, S_CW, S_LA, S_ES, S_ES)
#define TCP_OUT_RST TCP_ROW(S_CL, S_CL, S_SS, S_CL, S_CL, S_TW, S_CL, S_CL, S_CL, S_CL, S_CL)

#define XVS_TCP_FIN 0x01
#define XVS_TCP_SYN 0x02
#define XVS_TCP_RST 0x04
#define XVS_TCP_ACK 0x10

/* tcp_next: the state after a segment with TCP flags byte flags in
 * direction out (0 INPUT, 1 OUTPUT) from cur (< STATE_MAX). The event is
 * the first of RST, SYN, FIN, ACK set; no flag at all gives CLOSE. */
static __always_inline __u8 tcp_next(__u8 cur, __u8 flags, int out)
{
	__u64 row;

	if (flags & XVS_TCP_RST)
		row = out ? TCP_OUT_RST : TCP_IN_RST;
	else if (flags & XVS_TCP_SYN)
		row = out ? TCP_OUT_SYN : TCP_IN_SYN;
	else if (flags & XVS_TCP_FIN)
		row = out ? TCP_OUT_FIN : TCP_IN_FIN;
	else if (flags & XVS_TCP_ACK)
		row = out ? TCP_OUT_ACK : TCP_IN_ACK;
	else
		return STATE_CLOSE;
	return (row >> (4 * (cur & 0xf))) & 0xf;
}

/* tcp_active: whether state s counts in ActiveConn (IPVS: ESTABLISHED,
 * SYN_SENT, SYN_RECV, SYNACK); every other state counts in InActConn. */
static __always_inline int tcp_active(__u8 s)
{
	const __u32 active = 1U << STATE_ESTABLISHED | 1U << STATE_SYN_SENT |
			     1U << STATE_SYN_RECV | 1U << STATE_SYNACK;
	__u32 v = s;

	/* A bit of a mask, without a compare: BPF has no setcc, and each
	 * branch here doubled the paths the verifier walks through the
	 * state change. (v >> 5) - 1 has its top bit set only for v < 32. */
	return (active >> (v & 31)) & (((v >> 5) - 1) >> 31);
}

#endif /* XVS_STATE_H */
