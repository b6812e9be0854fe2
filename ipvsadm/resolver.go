package ipvsadm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Resolver does the name lookups ipvsadm does with the C library. It is
// injectable so that tests need no DNS.
type Resolver interface {
	// LookupHost is gethostbyname: the first IPv4 address of name.
	LookupHost(name string) (netip.Addr, error)
	// LookupPort is getservbyname: the port of a service name for proto
	// ("tcp", "udp", "sctp").
	LookupPort(proto, service string) (uint16, error)
	// LookupAddr is gethostbyaddr: the name of an address.
	LookupAddr(a netip.Addr) (string, error)
	// LookupService is getservbyport: the service name of a port.
	LookupService(proto string, port uint16) (string, error)
}

// errNotFound is returned for names and ports that do not resolve.
var errNotFound = errors.New("not found")

const lookupTimeout = 10 * time.Second

// SystemResolver resolves with the net package (hosts file and DNS) and
// /etc/services.
func SystemResolver() Resolver {
	return &systemResolver{servicesFile: "/etc/services"}
}

type systemResolver struct {
	servicesFile string
	once         sync.Once
	byName       map[string]uint16 // "proto/name" -> port
	byPort       map[string]string // "proto/port" -> first name
}

func (s *systemResolver) LookupHost(name string) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("lookup host %s: %w", name, err)
	}
	if len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("lookup host %s: %w", name, errNotFound)
	}
	return addrs[0].Unmap(), nil
}

func (s *systemResolver) LookupAddr(a netip.Addr) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	names, err := net.DefaultResolver.LookupAddr(ctx, a.String())
	if err != nil {
		return "", fmt.Errorf("lookup address %s: %w", a, err)
	}
	if len(names) == 0 {
		return "", fmt.Errorf("lookup address %s: %w", a, errNotFound)
	}
	return strings.TrimSuffix(names[0], "."), nil
}

func (s *systemResolver) load() {
	s.byName = map[string]uint16{}
	s.byPort = map[string]string{}
	f, err := os.Open(s.servicesFile)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fs := strings.Fields(line)
		if len(fs) < 2 {
			continue
		}
		pp := strings.SplitN(fs[1], "/", 2)
		if len(pp) != 2 {
			continue
		}
		port, err := strconv.ParseUint(pp[0], 10, 16)
		if err != nil {
			continue
		}
		proto := pp[1]
		key := proto + "/" + pp[0]
		if _, ok := s.byPort[key]; !ok {
			s.byPort[key] = fs[0]
		}
		for _, n := range append([]string{fs[0]}, fs[2:]...) {
			if _, ok := s.byName[proto+"/"+n]; !ok {
				s.byName[proto+"/"+n] = uint16(port)
			}
		}
	}
}

func (s *systemResolver) LookupPort(proto, service string) (uint16, error) {
	s.once.Do(s.load)
	if p, ok := s.byName[proto+"/"+service]; ok {
		return p, nil
	}
	if len(s.byName) == 0 {
		// No services file: fall back to Go's built-in table.
		ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		p, err := net.DefaultResolver.LookupPort(ctx, proto, service)
		if err == nil {
			return uint16(p), nil
		}
	}
	return 0, fmt.Errorf("lookup service %s/%s: %w", service, proto, errNotFound)
}

func (s *systemResolver) LookupService(proto string, port uint16) (string, error) {
	s.once.Do(s.load)
	if n, ok := s.byPort[proto+"/"+strconv.Itoa(int(port))]; ok {
		return n, nil
	}
	return "", fmt.Errorf("lookup port %d/%s: %w", port, proto, errNotFound)
}
