package connsync

import (
	"net/netip"
	"testing"
)

func TestResolve(t *testing.T) {
	v6 := netip.MustParseAddr("ff02::81")
	tests := []struct {
		name string
		in   Options
		role Role
		mtu  int
		want Options
	}{
		{name: "master defaults", role: RoleMaster, mtu: 9000,
			want: Options{Interface: "eth0", MaxLen: 1472, Group: DefaultGroup(), Port: 8848, TTL: 1}},
		{name: "master ipv6 group", in: Options{Interface: "eth1", Group: v6}, role: RoleMaster, mtu: 1500,
			want: Options{Interface: "eth1", MaxLen: 1452, Group: v6, Port: 8848, TTL: 1}},
		{name: "backup follows a jumbo mtu", role: RoleBackup, mtu: 9000,
			want: Options{Interface: "eth0", MaxLen: 8972, Group: DefaultGroup(), Port: 8848, TTL: 1}},
		{name: "backup mtu clamped up to 1500", role: RoleBackup, mtu: 1400,
			want: Options{Interface: "eth0", MaxLen: 1472, Group: DefaultGroup(), Port: 8848, TTL: 1}},
		{name: "master configured maxlen kept", in: Options{MaxLen: 100, SyncID: 9, Port: 9000, TTL: 3}, role: RoleMaster, mtu: 1500,
			want: Options{Interface: "eth0", SyncID: 9, MaxLen: 100, Group: DefaultGroup(), Port: 9000, TTL: 3}},
		{name: "master maxlen clamped to 65507", in: Options{MaxLen: 70000}, role: RoleMaster, mtu: 1500,
			want: Options{Interface: "eth0", MaxLen: 65507, Group: DefaultGroup(), Port: 8848, TTL: 1}},
		{name: "backup maxlen at least 1024", in: Options{MaxLen: 100}, role: RoleBackup, mtu: 1500,
			want: Options{Interface: "eth0", MaxLen: 1024, Group: DefaultGroup(), Port: 8848, TTL: 1}},
		{name: "ipv6 maxlen clamped to 65487", in: Options{MaxLen: 65507, Group: v6}, role: RoleBackup, mtu: 1500,
			want: Options{Interface: "eth0", MaxLen: 65487, Group: v6, Port: 8848, TTL: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.Resolve(tt.role, tt.mtu); got != tt.want {
				t.Errorf("Resolve = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFormatDaemon(t *testing.T) {
	tests := []struct {
		name  string
		state string
		o     Options
		want  string
	}{
		{name: "master defaults", state: "master", o: Options{}.Resolve(RoleMaster, 1500),
			want: "master sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"},
		{name: "backup ipv6", state: "backup",
			o:    Options{Interface: "eth1", SyncID: 7, Group: netip.MustParseAddr("ff02::81"), Port: 9999, TTL: 2}.Resolve(RoleBackup, 9000),
			want: "backup sync daemon (mcast=eth1, syncid=7, maxlen=8952, group=ff02::81, port=9999, ttl=2)"},
		{name: "unknown fields omitted", state: "backup", o: Options{Interface: "eth2", SyncID: 1},
			want: "backup sync daemon (mcast=eth2, syncid=1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FormatDaemon(tt.state, tt.o); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	for _, s := range []string{"master", "backup"} {
		r, err := ParseRole(s)
		if err != nil || r.String() != s {
			t.Errorf("ParseRole(%q) = %v, %v", s, r, err)
		}
	}
	if _, err := ParseRole("both"); err == nil {
		t.Error("ParseRole(both) accepted")
	}
}

func TestReason(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		want string
	}{
		{in: []byte{1}, want: "short"},
		{in: []byte{0, 0, 0, 9}, want: "size"},
		{in: []byte{0, 2, 0, 4}, want: "syncid"},
	} {
		_, err := Decode(tt.in, 1)
		if got := Reason(err); got != tt.want {
			t.Errorf("Reason(%v) = %q, want %q", err, got, tt.want)
		}
	}
}
