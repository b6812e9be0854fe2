package ctl

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"xvs/ctl/ctltest"
	"xvs/maps"
)

func TestMetricsUseNodeExporterNames(t *testing.T) {
	dp := ctltest.New()
	tb := NewTable(dp, TableOptions{})
	must(t, tb.Apply(parseAll(t, "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 172.16.0.2:8080 -m -w 5"), nil))
	client := netip.MustParseAddrPort("192.0.2.1:1000")
	vip := netip.MustParseAddrPort("10.0.0.1:80")
	must(t, dp.InstallConn(maps.Conn{Proto: 6, Client: client, VIP: vip, Dest: netip.MustParseAddrPort("172.16.0.2:8080"), DestID: 0}))
	dp.Establish(6, client, vip)
	m := &Metrics{Table: tb, Counters: func() ([]Counter, error) {
		return []Counter{{Name: "fwd_in", Value: 7}, {Name: "punt", Value: 1}}, nil
	}}
	want := `
# HELP node_ipvs_backend_connections_active The current active connections by local and remote address.
# TYPE node_ipvs_backend_connections_active gauge
node_ipvs_backend_connections_active{local_address="10.0.0.1",local_mark="",local_port="80",proto="TCP",remote_address="172.16.0.2",remote_port="8080"} 1
# HELP node_ipvs_backend_weight The current backend weight by local and remote address.
# TYPE node_ipvs_backend_weight gauge
node_ipvs_backend_weight{local_address="10.0.0.1",local_mark="",local_port="80",proto="TCP",remote_address="172.16.0.2",remote_port="8080"} 5
# HELP node_ipvs_connections_total The total number of connections made.
# TYPE node_ipvs_connections_total counter
node_ipvs_connections_total 1
# HELP xvs_datapath_events_total Packets and first-packet frames by what happened to them.
# TYPE xvs_datapath_events_total counter
xvs_datapath_events_total{reason="fwd_in"} 7
xvs_datapath_events_total{reason="punt"} 1
`
	err := testutil.CollectAndCompare(m, strings.NewReader(want),
		"node_ipvs_backend_connections_active", "node_ipvs_backend_weight", "node_ipvs_connections_total", "xvs_datapath_events_total")
	if err != nil {
		t.Error(err)
	}
}
