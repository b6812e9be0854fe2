// Package connsync speaks IPVS's connection synchronisation protocol
// (Linux net/netfilter/ipvs/ip_vs_sync.c), so that an xvs director can pair
// with another xvs director or with a kernel IPVS director.
//
// It has four parts, each usable alone:
//
//   - the codec: [Encode] (and the incremental [Builder]) write version 1
//     messages; [Decode] and [DecodeMessage] read version 1 and version 0,
//     validate every field and reject a malformed datagram whole;
//   - the master policy: [Rules.OnPacket] is IPVS's per-packet decision
//     (ip_vs_sync_conn_needed) as a pure function, and [Policy.Decide] is the
//     snapshot-based rule xvs uses because its datapath has no per-packet
//     callback;
//   - the [Master]: diffs periodic snapshots of the connection table, queues
//     records into messages of at most maxlen bytes and sends them at the
//     latest FlushAfter (2 s) after the first queued record;
//   - the transport: [Sender] and [Receiver], UDP multicast sockets set up
//     as the kernel's sync threads set up theirs, with [Options] mirroring
//     ipvsadm's --start-daemon options and [FormatDaemon] printing
//     `ipvsadm -L --daemon`'s line.
//
// The package knows nothing of the datapath: the caller reads conns from its
// maps into []Conn for [Master.Observe], and installs what a [Receiver]
// delivers. Reference: ../shared/reference/ipvs.md section 8.
package connsync
