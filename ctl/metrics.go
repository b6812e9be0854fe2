package ctl

import (
	"net/netip"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exports the table and datapath for Prometheus, under the names of
// node_exporter's ipvs collector (node_ipvs_*) that operators already graph,
// plus xvs_* for what IPVS has no counter of.
type Metrics struct {
	Table    *Table
	Counters func() ([]Counter, error)
}

var (
	backendLabels = []string{"local_address", "local_port", "remote_address", "remote_port", "proto", "local_mark"}

	descConns    = prometheus.NewDesc("node_ipvs_connections_total", "The total number of connections made.", nil, nil)
	descInPkts   = prometheus.NewDesc("node_ipvs_incoming_packets_total", "The total number of incoming packets.", nil, nil)
	descOutPkts  = prometheus.NewDesc("node_ipvs_outgoing_packets_total", "The total number of outgoing packets.", nil, nil)
	descInBytes  = prometheus.NewDesc("node_ipvs_incoming_bytes_total", "The total amount of incoming data.", nil, nil)
	descOutBytes = prometheus.NewDesc("node_ipvs_outgoing_bytes_total", "The total amount of outgoing data.", nil, nil)
	descActive   = prometheus.NewDesc("node_ipvs_backend_connections_active", "The current active connections by local and remote address.", backendLabels, nil)
	descInactive = prometheus.NewDesc("node_ipvs_backend_connections_inactive", "The current inactive connections by local and remote address.", backendLabels, nil)
	descWeight   = prometheus.NewDesc("node_ipvs_backend_weight", "The current backend weight by local and remote address.", backendLabels, nil)
	descCounter  = prometheus.NewDesc("xvs_datapath_events_total", "Packets and first-packet frames by what happened to them.", []string{"reason"}, nil)
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConns, descInPkts, descOutPkts, descInBytes, descOutBytes, descActive, descInactive, descWeight, descCounter} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	svcs, err := m.Table.Services(nil)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descConns, err)
		return
	}
	var conns, inp, outp, inb, outb float64
	for _, s := range svcs {
		conns += float64(s.Stats.Conns)
		inp += float64(s.Stats.InPkts)
		outp += float64(s.Stats.OutPkts)
		inb += float64(s.Stats.InBytes)
		outb += float64(s.Stats.OutBytes)
		proto := "TCP"
		if s.Proto == protoUDP {
			proto = "UDP"
		}
		for _, d := range s.Dests {
			l := []string{addrLabel(s.Addr.Addr()), strconv.Itoa(int(s.Addr.Port())), addrLabel(d.Addr.Addr()), strconv.Itoa(int(d.Addr.Port())), proto, ""}
			ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(d.ActiveConns), l...)
			ch <- prometheus.MustNewConstMetric(descInactive, prometheus.GaugeValue, float64(d.InactConns), l...)
			ch <- prometheus.MustNewConstMetric(descWeight, prometheus.GaugeValue, float64(d.Weight), l...)
		}
	}
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.CounterValue, conns)
	ch <- prometheus.MustNewConstMetric(descInPkts, prometheus.CounterValue, inp)
	ch <- prometheus.MustNewConstMetric(descOutPkts, prometheus.CounterValue, outp)
	ch <- prometheus.MustNewConstMetric(descInBytes, prometheus.CounterValue, inb)
	ch <- prometheus.MustNewConstMetric(descOutBytes, prometheus.CounterValue, outb)
	if m.Counters == nil {
		return
	}
	cs, err := m.Counters()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descCounter, err)
		return
	}
	for _, c := range cs {
		ch <- prometheus.MustNewConstMetric(descCounter, prometheus.CounterValue, float64(c.Value), c.Name)
	}
}

func addrLabel(a netip.Addr) string { return a.Unmap().String() }
