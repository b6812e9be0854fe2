/* SPDX-License-Identifier: GPL-2.0 */
/*
 * maps.h: every map of the datapath. All are pinned by name under the
 * daemon's bpffs directory, so a restart re-adopts them. xvs_conns and
 * xvs_rconns are resized by the loader before load (--conn-max), and so
 * should xvs_conns_new and xvs_rconns_new be (a quarter of it).
 *
 * Connections live in two pairs of tables: established ones in the LRU
 * pair xvs_conns/xvs_rconns, half-open and never-answered ones in the
 * plain hash pair xvs_conns_new/xvs_rconns_new, which the daemon and the
 * datapath's own scheduling (lib/sched.h) fill and nothing evicts. A
 * flood of first packets can fill only the new pair, so it never evicts
 * an established conn; lib/conn.h moves a conn from the new pair to the
 * main one when it is established.
 */
#ifndef XVS_MAPS_H
#define XVS_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "xvs.h"

/* Virtual services: (family, proto, VIP, port) -> service id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct svc_key);
	__type(value, struct svc);
	__uint(max_entries, XVS_MAX_SVCS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_svcs SEC(".maps");

/* Connections by client-side tuple (client -> VIP): the one state. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct conn_key);
	__type(value, struct conn);
	__uint(max_entries, XVS_DEFAULT_CONNS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_conns SEC(".maps");

/* Connections by server-side tuple (real server -> client): service id
 * and virtual port, from which lib/conn.h rebuilds the client-side key
 * (struct rconn). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct conn_key);
	__type(value, struct rconn);
	__uint(max_entries, XVS_DEFAULT_CONNS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_rconns SEC(".maps");

/* Half-open connections by client-side tuple: conns installed and not
 * yet established. A plain hash: full means an install fails (the
 * daemon's makes room), never that a conn silently disappears.
 * Not preallocated: the pair is empty in steady state (conns move to the
 * main pair within a round trip), so it costs memory only while a burst
 * of new conns or a flood fills it, not a quarter of the main pair's
 * 128 + 112 bytes per conn all the time. The daemon inserts, and so does
 * the datapath for the services it schedules itself (lib/sched.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct conn_key);
	__type(value, struct conn);
	__uint(max_entries, XVS_DEFAULT_CONNS_NEW);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_conns_new SEC(".maps");

/* Half-open connections by server-side tuple: struct rconn naming the
 * client-side key in xvs_conns_new. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct conn_key);
	__type(value, struct rconn);
	__uint(max_entries, XVS_DEFAULT_CONNS_NEW);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_rconns_new SEC(".maps");

/* Real servers by dest id: ActiveConn/InActConn, availability and the
 * address conns to it are rewritten to. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct dest);
	__uint(max_entries, XVS_MAX_DESTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_dests SEC(".maps");

/* Virtual addresses by service id: the service's key (VIP, port, proto,
 * family), written by the daemon with the service (maps.PutService) and
 * left in place when it is deleted, since its conns may outlive it (the id
 * is not reused until they are gone). The reverse lookup takes a conn's
 * VIP from here (struct rconn). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct svc_key);
	__uint(max_entries, XVS_MAX_SVCS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_vips SEC(".maps");

/* Per-service counters by service id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct stats);
	__uint(max_entries, XVS_MAX_SVCS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_svc_stats SEC(".maps");

/* Per-real-server counters by dest id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct stats);
	__uint(max_entries, XVS_MAX_DESTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_dest_stats SEC(".maps");

/* Packets by enum reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, REASON_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_reasons SEC(".maps");

/* Daemon-written configuration, one entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct cfg);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_cfg SEC(".maps");

/* Redirect targets for XDP: ifindex -> ifindex (attached interfaces and the tap). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, XVS_MAX_IFACES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_tx SEC(".maps");

/* Later IPv4/IPv6 fragments -> their conn: (src, dst, id, proto) of the
 * first fragment as received -> client-side key and direction. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct frag_key);
	__type(value, struct frag);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_frags SEC(".maps");

/* First-packet token buckets: service id -> bucket; XVS_BUDGET_GLOBAL is
 * the global one. Rate and burst written by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct budget);
	__uint(max_entries, XVS_MAX_SVCS + 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_budget SEC(".maps");

/* Per-CPU scratch for the datapath's ICMP checksums: one 64-byte chunk.
 * Not pinned, nothing to share. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u8[64]);
	__uint(max_entries, 1);
} xvs_scratch SEC(".maps");

/* Per-CPU copy of the client-side key of a hit in the new pair (lib/conn.h,
 * conn_fresh): the key of such a hit is then always in one kind of memory
 * whichever map it came from, which keeps the verifier's work down. Not
 * pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct conn_key);
	__uint(max_entries, 1);
} xvs_ckey SEC(".maps");

/* Per-CPU client-side key rebuilt by a server-side hit (lib/conn.h,
 * conn_find_in, from struct rconn): h->ckey of such a hit points here
 * until the program ends. Not xvs_ckey or xvs_scratch, which
 * conn_fresh and conn_promote write while it is in use. Not pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct conn_key);
	__uint(max_entries, 1);
} xvs_rckey SEC(".maps");

/* Datapath scheduling rings by service id (struct ring in xvs.h): only
 * services the datapath schedules have one. A hash, so that a service
 * without a ring costs nothing and the daemon replaces a ring whole (a
 * reader sees the old one or the new one, never a mix). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct ring);
	__uint(max_entries, XVS_MAX_SVCS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_rings SEC(".maps");

/* Next hops of real servers by dest id, per CPU (struct route in xvs.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct route);
	__uint(max_entries, XVS_MAX_DESTS);
} xvs_routes SEC(".maps");

/* The flow cache (struct flow in xvs.h): XVS_FLOWS entries per CPU, by
 * CPU then hash. Mmapable, which puts the entries on page boundaries and
 * so each in one cache line. Not pinned: a copy is good for 100 ms. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct flow);
	__uint(max_entries, XVS_FLOWS);
	__uint(map_flags, BPF_F_MMAPABLE);
} xvs_flows SEC(".maps");

/* One coarse-clock time: flow cache entries copied at or before it are
 * void. Raised (atomically, never lowered) by whoever removes a conn
 * other than by expiry: the datapath's reuse of a closed conn's port
 * (lib/sched.h), the daemon's deletions (maps). Mmapable for the
 * daemon's atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_flow_void SEC(".maps");

/* Event counters (enum event), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, EVENT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} xvs_events SEC(".maps");

/* The datapath's own program, for a packet to start over: a SYN whose
 * reused port's old conn was just removed runs again as a first packet
 * (lib/punt.h punt_reuse). One array per program type (the kernel ties a
 * program array to the type of the programs that use it), one entry each,
 * filled by the loader; not pinned (they hold this load's programs). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} xvs_progs_xdp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} xvs_progs_tc SEC(".maps");

#endif /* XVS_MAPS_H */
