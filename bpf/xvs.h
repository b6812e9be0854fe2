/* SPDX-License-Identifier: GPL-2.0 */
/*
 * xvs.h: every type shared between the datapath and Go. bpf2go generates the
 * Go side (bpf.Xvs*) from these with -type, so a layout lives in one place.
 *
 * Rules: fixed-width fields, explicit padding, no implicit holes. Addresses
 * are 16 bytes in network order; an IPv4 address sits in the first 4 bytes
 * and the other 12 are zero. Ports are network order (__be16).
 */
#ifndef XVS_H
#define XVS_H

#include <linux/types.h>

#define XVS_MAX_SVCS 4096
#define XVS_MAX_DESTS 65536
#define XVS_MAX_IFACES 64
#define XVS_DEFAULT_CONNS 1048576
/* Size of the half-open tables (xvs_conns_new, xvs_rconns_new): a quarter
 * of the main ones unless the loader says otherwise. */
#define XVS_DEFAULT_CONNS_NEW (XVS_DEFAULT_CONNS / 4)

/* Address families as in the kernel (AF_INET, AF_INET6). */
enum family {
	FAMILY_INET = 2,
	FAMILY_INET6 = 10,
};

/* TCP states with IPVS's numbering (ip_vs_proto_tcp.c); the sync protocol
 * carries these numbers on the wire. UDP conns stay in STATE_NONE. */
enum tcp_state {
	STATE_NONE = 0,
	STATE_ESTABLISHED = 1,
	STATE_SYN_SENT = 2,
	STATE_SYN_RECV = 3,
	STATE_FIN_WAIT = 4,
	STATE_TIME_WAIT = 5,
	STATE_CLOSE = 6,
	STATE_CLOSE_WAIT = 7,
	STATE_LAST_ACK = 8,
	STATE_LISTEN = 9,
	STATE_SYNACK = 10,
	STATE_MAX = 11,
};

/* Virtual service key: xvs_svcs. */
struct svc_key {
	__u8 addr[16]; /* VIP, network order */
	__be16 port;   /* virtual port, network order */
	__u8 proto;    /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family;   /* enum family */
};

/* Virtual service value: its index into the per-service stats. */
struct svc {
	__u32 id;    /* index into xvs_svc_stats, < XVS_MAX_SVCS */
	__u32 flags; /* reserved, 0 */
};

/*
 * Connection key. Client side (xvs_conns, xvs_conns_new): saddr/sport =
 * client, daddr/dport = VIP:vport. Server side (xvs_rconns,
 * xvs_rconns_new): saddr/sport = real server, daddr/dport = client.
 */
struct conn_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

enum conn_flags {
	/* Installed by the control plane, no packet forwarded yet: the first
	 * packet clears it and counts the conn in the conns statistics. */
	CONN_F_NEW = 1,
	/* Its install pointed an older conn's server-side key in xvs_rconns
	 * at it (lib/conn.h conn_install): removing it from the new pair
	 * drops that key too. Without it, removal spares that lookup, a cold
	 * one in a big table, per expired half-open conn. */
	CONN_F_SHADOW = 2,
};

/* Connection state: value of xvs_conns or xvs_conns_new (client-side
 * key). A conn lives in exactly one pair: the new pair (xvs_conns_new,
 * xvs_rconns_new) from its install until it is established (TCP
 * ESTABLISHED, UDP: the real server's first reply), the main pair
 * (xvs_conns, xvs_rconns) after that; see lib/conn.h.
 *
 * The real server's address is not here: dest_id names it, and
 * xvs_dests[dest_id].addr holds it (a dest id is not reused while a conn
 * uses it). That keeps the value at 24 bytes, the main pair's element
 * at 128 (docs/datapath.md). dport, state and flags share the aligned
 * first word (lib/conn.h). */
struct conn {
	__be16 dport;   /* real server port, network order */
	__u8 state;     /* enum tcp_state; UDP stays STATE_NONE */
	__u8 flags;     /* enum conn_flags */
	__u32 svc_id;   /* index into xvs_svc_stats and xvs_vips */
	__u32 dest_id;  /* index into xvs_dests and xvs_dest_stats */
	__u32 pad;
	__u64 last_seen; /* CLOCK_MONOTONIC ns of the last packet, either way, as
			  * of the last tick (bpf_ktime_get_coarse_ns, lib/conn.h) */
};

/* Server-side entry: value of xvs_rconns or xvs_rconns_new. With the
 * server-side key (real server -> client) it names the conn's client-side
 * key: saddr/sport = the key's daddr/dport (the client), daddr =
 * xvs_vips[svc_id].addr (the VIP), dport = vport, proto and family the
 * key's. One conn, one state; 8 bytes instead of a 40-byte key. */
struct rconn {
	__u32 svc_id; /* the conn's service: index into xvs_vips */
	__be16 vport; /* the conn's virtual port, network order */
	__u16 pad;
};

/* Per-CPU counters of one service or one real server (IPVS's five). */
struct stats {
	__u64 conns;
	__u64 inpkts;
	__u64 outpkts;
	__u64 inbytes;  /* IP total length as received */
	__u64 outbytes;
};

enum dest_flags {
	DEST_F_AVAILABLE = 1, /* on its service's list; else packets of its
			       * remaining conns are dropped (IPVS default
			       * expire_nodest_conn=0) */
};

/*
 * Real server: xvs_dests, an mmapable array shared with Go. active and
 * inactive are changed with atomic adds on both sides: Go adds a new conn
 * to inactive when it installs it and removes it from its class when it
 * expires it; the datapath moves it between the two when its TCP state
 * crosses active <-> inactive (IPVS: ESTABLISHED, SYN_SENT, SYN_RECV and
 * SYNACK are active). addr and family are Go's (maps.SetDest), written
 * before the id's first conn is installed and not changed while a conn
 * uses the id; the datapath only reads them.
 */
struct dest {
	__s64 active;
	__s64 inactive;
	__u32 flags;    /* enum dest_flags */
	__u8 family;    /* enum family of addr */
	__u8 pad[3];
	__u8 addr[16];  /* real server, network order: the conns' DNAT target */
};

/*
 * Datapath scheduling: xvs_rings, by service id. For a service whose
 * scheduler's picks depend on nothing but its own state (rr and wrr
 * without persistence or thresholds), the daemon writes one full cycle of
 * its picks here (sched.Pool.Cycle); the datapath takes the next one with
 * an atomic add. For sh, dh and mh (same conditions; mh-fallback only
 * while every real server is usable) it writes the pick of each hash
 * bucket (sched.Pool.HashTable); the datapath
 * hashes the packet as the scheduler does. Either way the datapath
 * installs the conn itself (lib/sched.h) instead of sending the first
 * packet to the daemon. A service without a ring, or whose ring pick is
 * not usable, is punted as before.
 */
#define XVS_RING_MAX 4096 /* a power of two (lib/sched.h masks with it),
			   >= mh's 4093 slots */

struct ring_ent {
	__u32 dest_id; /* index into xvs_dests */
	__be16 port;   /* the real server's port, network order */
	__u16 pad;
};

/* How a ring is indexed (lib/sched.h). */
enum ring_kind {
	RING_SEQ = 0,      /* rr, wrr: pick k is ents[k % len] */
	RING_SRC_HASH = 1, /* sh: ents[hash_32(fold(client addr)
			    * [+ client port with RING_F_PORT], 8)], len 256 */
	RING_DST_HASH = 2, /* dh: ents[hash_32(fold(VIP), 8)], len 256 */
	RING_MH_HASH = 3,  /* mh: ents[hsiphash(fold(client addr) [+ client
			    * port with RING_F_PORT]) % 4093], len 4093 */
};

enum ring_flags {
	RING_F_PORT = 1, /* sh-port, mh-port: the client port joins the hash */
};

/* A hash ring's entry without a usable real server: the daemon answers. */
#define XVS_RING_NONE 0xffffffffU

struct ring {
	__u32 next;  /* RING_SEQ: picks taken, datapath state */
	__u16 len;   /* 1 .. XVS_RING_MAX */
	__u8 kind;   /* enum ring_kind */
	__u8 flags;  /* enum ring_flags */
	struct ring_ent ents[XVS_RING_MAX];
};

/* What happened to one install (xvs_install's records and the datapath's
 * own installs, lib/conn.h conn_install). */
enum inst_result {
	INST_OK = 0,     /* installed in the new pair */
	INST_EXISTS = 1, /* the client-side key is in a pair already */
	INST_FULL = 2,   /* the new pair is full */
	INST_ERROR = 3,  /* another error */
};

/* Datapath events that are not a packet's verdict (xvs_events, per CPU). */
enum event {
	EVENT_SCHED_NEW = 0, /* conn scheduled and installed by the datapath */
	EVENT_SCHED_FULL,    /* ring pick found the new pair full: punted */
	EVENT_SCHED_UNUSABLE, /* ring pick named an unusable dest: punted */
	EVENT_SCHED_REUSED,  /* SYN on a closed conn's port: old conn removed,
			      * the SYN scheduled from the ring (lib/sched.h) */
	EVENT_MAX,
};

/* Datapath configuration: xvs_cfg[0], written by the daemon. */
struct cfg {
	__u32 punt_ifindex; /* the punt tap; 0 = no punt device */
	__u32 route_gen;    /* bumped by the daemon on every route, rule,
			     * address, link or neighbour change: xvs_routes
			     * entries of another generation are stale */
	__u64 alive_ns;     /* daemon liveness stamp, bpf_ktime_get_ns clock */
	__u64 stale_ns;     /* first packets are dropped when now - alive_ns > stale_ns */
};

/*
 * Next hops of real servers: xvs_routes, per CPU, by dest id, written by
 * the XDP datapath only. IPVS routes a NAT packet to its real server
 * through a route cached in the dest (dest_dst), valid until the routing
 * generation changes; xvs caches what bpf_fib_lookup said for a dest's
 * address the same way, for client -> server packets in XDP, and looks it
 * up again when cfg.route_gen moved, the dest's address changed or the
 * entry is XVS_ROUTE_MAX_AGE_NS old (a path MTU learnt by the kernel, or
 * a change while the daemon is down). Replies (server -> client) look
 * their client's route up every time, as the kernel routes them.
 */
#define XVS_ROUTE_MAX_AGE_NS 100000000ULL /* 100 ms */

struct route {
	__u64 stamp;    /* coarse clock of the lookup; 0 = empty */
	__u8 addr[16];  /* the dest's address it was looked up for */
	__u32 gen;      /* cfg.route_gen then */
	__u32 ifindex;  /* egress device */
	__u32 mtu;      /* egress path MTU */
	__u8 smac[6];
	__u8 dmac[6];
};

/*
 * The flow cache: xvs_flows, an array of xvs_flows_per_cpu entries per
 * CPU (XVS_FLOWS by default; the loader sizes it for the possible CPUs,
 * and CPU n owns the n-th part), two-way set-associative by a hash of the packet's tuple, written
 * by the datapath only (lib/flow.h). An entry is one cache line: the
 * tuple it answers and a copy of its conn; a set is two adjacent lines.
 * A hit in a big table costs a bucket and an element spread over hundreds
 * of megabytes (a TLB miss each on a table that has churned); an
 * established flow's packets find their copy here instead, in a megabyte
 * per CPU.
 *
 * What a copy may stand in for: a UDP conn, or a TCP conn in ESTABLISHED
 * for a segment with ACK and none of SYN, FIN, RST (which changes no state
 * reachable from ESTABLISHED, in either direction), whose real server was
 * available, for XVS_FLOW_TTL_NS after it was copied and only if no conn
 * was removed since other than by expiry (xvs_flow_void); copied from
 * neither a conn's first packet nor the one that moved it to the main
 * pair. TCP copies are of the main pair only; a UDP conn is copied in the
 * new pair too (one the real server never answers stays there). Expiry
 * needs no voiding: it removes a conn idle for its timeout (>= 1 s),
 * whose copies are older than XVS_FLOW_TTL_NS. A hit on a copy counts the same statistics and
 * still checks its real server's availability, TTL and MTU; it does not
 * stamp last_seen, so the conn's stamp lags by up to XVS_FLOW_TTL_NS, the
 * next full lookup's refresh. A copy is never newer than its conn's
 * last_seen (the full lookup that makes it stamps the same time).
 */
#define XVS_FLOWS 16384                   /* per CPU, default (xvs_flows_per_cpu) */
#define XVS_FLOW_TTL_NS 100000000ULL      /* 100 ms */
#define XVS_FLOW_MARGIN_NS 50000000ULL    /* the coarse clock's lag, and more */
#define XVS_FLOW_OUT 0x10000U             /* struct flow c.pad: server-side tuple */

struct flow {
	struct conn_key key; /* the packet tuple it answers, either side */
	struct conn c;       /* the conn as copied: c.last_seen is the time of
			      * the copy (coarse clock), c.pad XVS_FLOW_OUT |
			      * virtual port (network order) for a server-side
			      * tuple, else 0 */
};

/*
 * Fragment tracking: xvs_frags, written by the datapath only. A first
 * fragment of a conn's datagram (it carries the ports) records its
 * (src, dst, id, proto) as received; later fragments of the same datagram
 * find their conn through it.
 */
struct frag_key {
	__u8 saddr[16]; /* as received, network order */
	__u8 daddr[16];
	__be32 id;      /* IP identification, network order; IPv4's 16 bits
			 * in the first two bytes, the rest zero */
	__u8 proto;     /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 family;    /* enum family */
	__u8 pad[2];
};

struct frag {
	struct conn_key ckey; /* the conn's client-side key (xvs_conns) */
	__u32 out;            /* 0: client -> server, 1: server -> client */
};

/*
 * First-packet budget: xvs_budget, a token bucket per service id
 * (0 .. XVS_MAX_SVCS-1) and a global one at XVS_BUDGET_GLOBAL. The daemon
 * writes rate and burst (and zeroes tokens and last_ns, which makes the
 * bucket full at its next use); the datapath owns tokens and last_ns.
 * rate 0 (or above XVS_BUDGET_RATE_MAX) = unlimited; burst 0 = rate (one
 * second's worth). A first packet (one that would be punted) takes a
 * token from its service's bucket, then from the global one; without one
 * it is dropped (REASON_DROP_PUNT_BUDGET). Established flows never touch
 * the buckets. Refill and take are atomic adds and one compare-and-swap
 * of last_ns: under contention a bucket may admit a few packets more than
 * burst, never fewer.
 */
#define XVS_BUDGET_GLOBAL XVS_MAX_SVCS
#define XVS_BUDGET_RATE_MAX 100000000ULL

struct budget {
	__u64 rate;    /* first packets per second; 0 = unlimited */
	__u64 burst;   /* bucket size, packets */
	__s64 tokens;  /* datapath state */
	__u64 last_ns; /* datapath state: bpf_ktime_get_ns of the last refill */
};

/*
 * Why a packet got its verdict: xvs_reasons, per CPU. Every pass and drop
 * counts exactly one reason; forwarded and punted packets count theirs.
 */
enum reason {
	REASON_FWD_IN = 0,       /* client -> real server, rewritten */
	REASON_FWD_OUT,          /* real server -> client, rewritten */
	REASON_PUNT,             /* first packet sent to the punt device */
	REASON_PASS_NOT_IP,      /* not IPv4/IPv6 (ARP, ...) */
	REASON_PASS_NOT_L4,      /* neither TCP, UDP nor an ICMP error */
	REASON_PASS_FRAGMENT,    /* fragment not of a tracked conn, a later
				  * one before its first, or not TCP/UDP */
	REASON_PASS_IPV6_EXT,    /* IPv6 extension header before L4 */
	REASON_PASS_NO_SVC,      /* no conn, not a virtual service */
	REASON_PASS_NOT_FIRST,   /* no conn, to a VIP, may not create one */
	REASON_PASS_TTL,         /* TTL/hop limit <= 1 of an ICMP error or a
				  * later fragment, or no room to answer */
	REASON_PASS_FIB,         /* fib lookup failed: the kernel decides */
	REASON_PASS_NO_NEIGH,    /* rewritten, neighbour unresolved: kernel
				  * forwards */
	REASON_PASS_MTU,         /* rewritten packet too big for the egress
				  * link, may be fragmented (IPv4, no DF) */
	REASON_DROP_MALFORMED,   /* truncated or invalid headers */
	REASON_DROP_PUNT_STALE,  /* first packet while no daemon is alive */
	REASON_DROP_PUNT_MISS,   /* written back by the daemon without a conn */
	REASON_DROP_NO_DEST,     /* conn to a deleted real server */
	REASON_DROP_REDIRECT,    /* redirect or punt failed */
	/* appended: ICMP, path MTU, fragments, floods */
	REASON_FWD_ICMP_IN,      /* ICMP error from the client side, translated
				  * and sent to the real server */
	REASON_FWD_ICMP_OUT,     /* ICMP error from the real-server side,
				  * translated and sent to the client */
	REASON_PASS_ICMP,        /* ICMP error not about a tracked conn, or
				  * not translatable (quote without ports,
				  * longer than XVS_CSUM_MAX) */
	REASON_DROP_ICMP_CSUM,   /* ICMP error about a tracked conn with a
				  * bad checksum (IPVS drops it too) */
	REASON_TX_TTL,           /* answered ICMP time exceeded (TTL <= 1) */
	REASON_TX_FRAG_NEEDED,   /* answered fragmentation needed / packet
				  * too big (DF, egress MTU too small) */
	REASON_DROP_TX_FAILED,   /* building that answer failed half-way */
	REASON_DROP_PUNT_BUDGET, /* first packet over its service's or the
				  * global first-packet budget */
	REASON_MAX,
};

#endif /* XVS_H */
