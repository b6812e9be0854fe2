package ipvsadm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The types are the JSON API between xvsadm and xvsd: they must survive
// a round trip unchanged.
func TestJSONRoundTrip(t *testing.T) {
	r := newFakeResolver()
	for _, line := range []string{
		"-A -t [2001:db8::80]:443 -s sh -b sh-port -p 60 -M 64",
		"-e -t 1.2.3.4:80 -r 10.0.0.1:8080 -w 0",
		"-L -n --stats --exact",
		"--set 900 120 300",
		"--start-daemon master --mcast-group 224.0.0.81 --syncid 3",
	} {
		c, _ := Parse(strings.Fields(line), r)
		if c == nil {
			t.Fatalf("Parse(%q) returned no command", line)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back Command
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&back, c) {
			t.Errorf("%q: JSON %s\ngives %+v\nwant  %+v", line, b, back, *c)
		}
	}
	svcs := referenceServices()
	b, err := json.Marshal(svcs)
	if err != nil {
		t.Fatal(err)
	}
	var back []ServiceEntry
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, svcs) {
		t.Errorf("service entries do not survive JSON:\n%s", b)
	}
}

func TestSystemResolverServices(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services")
	data := "# comment\nhttp\t\t80/tcp\t\twww # WorldWideWeb HTTP\nhttp 80/udp\ndomain\t\t53/tcp\ndomain\t\t53/udp\nbogus\nx 99999/tcp\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &systemResolver{servicesFile: path}
	if p, err := r.LookupPort("tcp", "www"); err != nil || p != 80 {
		t.Errorf("LookupPort(tcp, www) = %d, %v", p, err)
	}
	if p, err := r.LookupPort("udp", "domain"); err != nil || p != 53 {
		t.Errorf("LookupPort(udp, domain) = %d, %v", p, err)
	}
	if _, err := r.LookupPort("sctp", "http"); err == nil {
		t.Error("LookupPort(sctp, http) succeeded")
	}
	if n, err := r.LookupService("tcp", 80); err != nil || n != "http" {
		t.Errorf("LookupService(tcp, 80) = %q, %v", n, err)
	}
	if _, err := r.LookupService("tcp", 81); err == nil {
		t.Error("LookupService(tcp, 81) succeeded")
	}
}
