package connsync

import (
	"reflect"
	"testing"
)

// FuzzDecode: the decoder never panics, and whatever it accepts encodes
// back into messages that decode to the same conns.
func FuzzDecode(f *testing.F) {
	for _, g := range goldens {
		f.Add(hexBytes(f, g.hex))
	}
	f.Add(hexBytes(f, goldenV0))
	msgs, err := Encode(0, manyConns(60), 1472)
	if err != nil {
		f.Fatal(err)
	}
	for _, m := range msgs {
		f.Add(m)
	}
	f.Add([]byte{0, 0, 0, 4})
	f.Add([]byte{0, 0, 0, 8, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b, 0)
		if err != nil {
			if m.Conns != nil {
				t.Fatalf("rejected with conns: %v", err)
			}
			return
		}
		if len(m.Conns) > 255 {
			t.Fatalf("%d conns from one datagram", len(m.Conns))
		}
		out, err := Encode(m.SyncID, m.Conns, 65507)
		if err != nil {
			t.Fatalf("accepted conns do not encode: %v", err)
		}
		var again []Conn
		for _, msg := range out {
			c, err := Decode(msg, m.SyncID)
			if err != nil {
				t.Fatalf("re-encoded message rejected: %v", err)
			}
			again = append(again, c...)
		}
		if len(again) != len(m.Conns) || (len(again) > 0 && !reflect.DeepEqual(again, m.Conns)) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, m.Conns)
		}
	})
}
