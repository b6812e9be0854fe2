// Package ctl is the control plane of xvs: the service table (the source
// of truth, projected into the datapath's maps), the first-packet loop that
// schedules new connections, connection expiry, statistics and rates, the
// unix-socket API between xvsadm and xvsd, Prometheus metrics, and the
// IPVS connection sync daemons (master and backup, over package connsync).
//
// ctl talks to the datapath through small interfaces declared here, so its
// unit tests run on fakes without root.
package ctl
