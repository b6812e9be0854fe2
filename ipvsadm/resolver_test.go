package ipvsadm

import (
	"errors"
	"net/netip"
	"strconv"
)

// fakeResolver resolves from fixed tables, so tests need no DNS.
type fakeResolver struct {
	hosts    map[string]string // name -> address
	services map[string]uint16 // "proto/name" -> port
}

var errFake = errors.New("fake: not found")

func newFakeResolver() *fakeResolver {
	return &fakeResolver{
		hosts: map[string]string{
			"filesystem.server.com":                       "202.103.106.5",
			"web1.example.com":                            "192.168.10.1",
			"www.example.com":                             "207.175.44.110",
			"ip-172-20-39-170.us-west-2.compute.internal": "172.20.39.170",
			"ip-172-20-35-14.us-west-2.compute.internal":  "172.20.35.14",
			"v6host.example.com":                          "2001:db8::80",
			"mask.example.com":                            "255.255.255.0",
		},
		services: map[string]uint16{
			"tcp/http": 80, "udp/http": 80, "tcp/https": 443, "udp/domain": 53, "tcp/domain": 53,
			"tcp/ssh": 22,
		},
	}
}

func (f *fakeResolver) LookupHost(name string) (netip.Addr, error) {
	a, ok := f.hosts[name]
	if !ok {
		return netip.Addr{}, errFake
	}
	return netip.MustParseAddr(a), nil
}

func (f *fakeResolver) LookupPort(proto, service string) (uint16, error) {
	p, ok := f.services[proto+"/"+service]
	if !ok {
		return 0, errFake
	}
	return p, nil
}

func (f *fakeResolver) LookupAddr(a netip.Addr) (string, error) {
	for n, s := range f.hosts {
		if netip.MustParseAddr(s) == a && n != "mask.example.com" {
			return n, nil
		}
	}
	return "", errFake
}

func (f *fakeResolver) LookupService(proto string, port uint16) (string, error) {
	for k, p := range f.services {
		if p == port && k[:len(proto)+1] == proto+"/" {
			return k[len(proto)+1:], nil
		}
	}
	return "", errors.New("fake: no service for " + strconv.Itoa(int(port)))
}
