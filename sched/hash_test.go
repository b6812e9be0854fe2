package sched

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestHash32(t *testing.T) {
	tests := []struct {
		name string
		addr string
		want uint32
	}{
		{name: "10.0.0.2", addr: "10.0.0.2", want: 137},
		{name: "10.0.0.3", addr: "10.0.0.3", want: 235},
		{name: "192.168.1.100", addr: "192.168.1.100", want: 89},
		{name: "207.175.44.110", addr: "207.175.44.110", want: 174},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hash32(foldAddr(netip.MustParseAddr(tt.addr)), 8); got != tt.want {
				t.Errorf("hash_32(%s, 8) = %d, want %d", tt.addr, got, tt.want)
			}
		})
	}
}

func TestFoldAddr(t *testing.T) {
	tests := []struct {
		name string
		addr netip.Addr
		want uint32
	}{
		{name: "ipv4 host order", addr: netip.MustParseAddr("10.0.0.2"), want: 0x0A000002},
		{name: "v4-mapped folds as ipv4", addr: netip.MustParseAddr("::ffff:10.0.0.2"), want: 0x0A000002},
		{name: "ipv6 xor of words", addr: netip.MustParseAddr("2001:db8:1:2:3:4:5:6"), want: 0x20010db8 ^ 0x00010002 ^ 0x00030004 ^ 0x00050006},
		{name: "invalid", addr: netip.Addr{}, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := foldAddr(tt.addr); got != tt.want {
				t.Errorf("foldAddr(%v) = %#x, want %#x", tt.addr, got, tt.want)
			}
		})
	}
}

func TestSipHash(t *testing.T) {
	// The SipHash-2-4 paper's vector: key 00..0f, message 00..0e.
	msg := make([]byte, 15)
	for i := range msg {
		msg[i] = byte(i)
	}
	const k0, k1 = 0x0706050403020100, 0x0f0e0d0c0b0a0908
	if got, want := sipHash(2, 4, k0, k1, msg), uint64(0xa129ca6149be45e5); got != want {
		t.Fatalf("SipHash-2-4 = %#x, want %#x", got, want)
	}
	// hsiphash32 is the allocation-free SipHash-1-3 of four bytes.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		v, a, b := rng.Uint32(), rng.Uint64(), rng.Uint64()
		m := []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
		if got, want := hsiphash32(a, b, v), uint32(sipHash(1, 3, a, b, m)); got != want {
			t.Fatalf("hsiphash32(%#x, %#x, %#x) = %#x, want %#x", a, b, v, got, want)
		}
	}
}

func TestMaglevHashVectors(t *testing.T) {
	tests := []struct {
		name string
		got  uint32
		want uint32
	}{
		{name: "H1(10.0.0.2) mod M", got: mhHash(mhKey1, 0x0A000002) % mhSize, want: 1884},
		{name: "H1(10.0.0.3) mod M", got: mhHash(mhKey1, 0x0A000003) % mhSize, want: 3741},
		{name: "H1(192.168.1.100) mod M", got: mhHash(mhKey1, 0xC0A80164) % mhSize, want: 1341},
		{name: "offset 172.16.0.2:80", got: mhHash(mhKey1, 0xAC100002+80) % mhSize, want: 678},
		{name: "skip 172.16.0.2:80", got: mhHash(mhKey2, 0xAC100002+80)%(mhSize-1) + 1, want: 551},
		{name: "offset 172.16.0.3:80", got: mhHash(mhKey1, 0xAC100003+80) % mhSize, want: 1954},
		{name: "skip 172.16.0.3:80", got: mhHash(mhKey2, 0xAC100003+80)%(mhSize-1) + 1, want: 525},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("= %d, want %d", tt.got, tt.want)
			}
		})
	}
}
