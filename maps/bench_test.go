package maps

import "testing"

// BenchmarkInstallDelete: the daemon's map work for one new conn: its
// install (first packet) and its removal (expiry or delete).
func BenchmarkInstallDelete(b *testing.B) {
	m, _ := newTestMaps(b)
	conns := make([]Conn, 1024)
	for i := range conns {
		conns[i] = tcpConn(i)
	}
	b.ResetTimer()
	for i := range b.N {
		c := conns[i%len(conns)]
		if err := m.InstallConn(c); err != nil {
			b.Fatal(err)
		}
		if _, err := m.DeleteConn(c.Proto, c.Client, c.VIP); err != nil {
			b.Fatal(err)
		}
	}
}
