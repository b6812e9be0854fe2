// Package tests holds the end-to-end suite: Go tests, in the kernel
// selftest style, that build xvsd and xvsadm, create the seed scenario's
// topology out of network namespaces (testutil.NewTopo), run real HTTP and
// UDP servers on the real servers and real clients on the client, and
// configure the director with xvsadm exactly as an operator would.
//
//	client 202.103.106.100 ── ext0 [director 202.103.106.5 (VIP) | 172.16.0.1] int0 ── br0 ── node1 172.16.0.2
//	                                       xvsd --iface ext0 --iface int0          └── node2 172.16.0.3
//
// Every case runs in fresh namespaces with a per-run prefix and removes
// them, the daemon and its pinned state when it ends. The tests need root;
// without it they skip with a reason.
package tests
