package ipvsadm

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseSave feeds restore input to ParseRestore. It must never panic,
// must fail only with a line-numbered *Error, and every input that applies
// as a table must save (numeric and named) to text that restores to the
// same table.
func FuzzParseSave(f *testing.F) {
	seeds := []string{
		seedSave,
		"-A -t 207.175.44.110:80 -s rr\n-a -t 207.175.44.110:80 -r 192.168.10.1:80 -m\n",
		"-A -t 207.175.44.110:80 -s rr\n-a -t 207.175.44.110:80 -r 192.168.10.1:80 -m -w 1\n-a -t 207.175.44.110:80 -r 192.168.10.2:80 -m -w 3\n",
		"-A -u 207.175.44.110:53 -s wlc -p 360 -M 255.255.255.0\n-a -u 207.175.44.110:53 -r 192.168.10.1:53 -m -w 1\n",
		"-A -t [2001:db8::80]:80 -s rr\n-a -t [2001:db8::80]:80 -r [2001:db8::a0a0]:80 -m -w 1\n",
		"-A -t [2001:db8::80]:80 -s sh -b sh-fallback,sh-port -p 60 -M 64\n",
		"-A -t 10.0.0.1:80 -s wrr -b flag-1,flag-3\n-a -t 10.0.0.1:80 -r 10.0.0.2:8080 -m -w 0 -x 10 -y 5\n",
		"-A -t www.example.com:https -s lc\n-a -t www.example.com:https -r web1.example.com:https -m -w 2\n",
		"ipvsadm -A -t 1.2.3.4:80 -s rr\n# comment\n\nipvsadm -a -t 1.2.3.4:80 -r 10.1:80 -m\n",
		"-A -u 1.2.3.4:0 -p\n-e -u 1.2.3.4:0 -r 10.0.0.1 -m\n",
		"-A -f 1 -s sh -b sh-fallback,sh-port\n-a -f 1 -r 192.168.10.1:0 -m -w 1\n",
		"-A -t 1.2.3.4:80 -s rr # web\n",
		"-A -t 1.2.3.4:80\n-E -t 1.2.3.4:80 -s wrr -p\n-C\n-R\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r := newFakeResolver()
		cmds, err := ParseRestore(strings.NewReader(in), r)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !strings.HasPrefix(e.Msg, "line ") || (e.Code != 2 && e.Code != 255) {
				t.Fatalf("error %#v is not a line-numbered ipvsadm error", err)
			}
			if cmds != nil {
				t.Fatal("commands returned with an error")
			}
			return
		}
		table, ok := buildTable(cmds)
		if !ok {
			return
		}
		want := normalize(table)
		for _, numeric := range []bool{true, false} {
			var b bytes.Buffer
			if err := WriteSave(&b, table, numeric, r); err != nil {
				t.Fatal(err)
			}
			cmds2, err := ParseRestore(bytes.NewReader(b.Bytes()), r)
			if err != nil {
				t.Fatalf("saved text does not restore: %v\n%s", err, b.String())
			}
			for _, c := range cmds2 {
				if c.Kind != CmdAddService && c.Kind != CmdAddDest {
					t.Fatalf("saved text has a %v line:\n%s", c.Kind, b.String())
				}
			}
			table2, ok := buildTable(cmds2)
			if !ok {
				t.Fatalf("saved text does not apply:\n%s", b.String())
			}
			if got := normalize(table2); !reflect.DeepEqual(got, want) {
				t.Fatalf("numeric=%v: restored\n%v\nwant\n%v\nsaved:\n%s", numeric, got, want, b.String())
			}
		}
	})
}
