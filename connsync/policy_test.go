package connsync

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func TestRulesOnPacket(t *testing.T) {
	type step struct {
		state uint16
		pkts  int
		sec   int
		want  bool
	}
	tests := []struct {
		name  string
		rules Rules
		proto uint8
		flags uint32
		// inPersist marks the conn as controlled by a template.
		inPersist bool
		steps     []step
	}{
		{
			name: "tcp: 3rd, 53rd, 103rd packet", rules: DefaultRules(), proto: ProtoTCP,
			steps: []step{
				{TCPSynRecv, 1, 0, false}, {TCPEstablished, 2, 0, false}, {TCPEstablished, 3, 0, true},
				{TCPEstablished, 4, 0, false}, {TCPEstablished, 52, 1, false}, {TCPEstablished, 53, 1, true},
				{TCPEstablished, 103, 2, true}, {TCPEstablished, 104, 2, false},
			},
		},
		{
			name: "tcp: state changes other than into ESTABLISHED go at once", rules: DefaultRules(), proto: ProtoTCP,
			steps: []step{
				{TCPEstablished, 3, 0, true}, {TCPCloseWait, 4, 1, true}, {TCPCloseWait, 5, 1, false},
				{TCPLastAck, 6, 2, false}, {TCPClose, 7, 3, true}, {TCPClose, 8, 3, false},
			},
		},
		{
			name: "tcp: into ESTABLISHED waits for the packet count", rules: DefaultRules(), proto: ProtoTCP,
			steps: []step{
				{TCPFinWait, 10, 0, true}, {TCPEstablished, 11, 1, false}, {TCPEstablished, 53, 2, true},
			},
		},
		{
			name: "tcp: unsynced states never", rules: DefaultRules(), proto: ProtoTCP,
			steps: []step{
				{TCPSynRecv, 3, 0, false}, {TCPSynSent, 53, 0, false}, {TCPLastAck, 103, 0, false},
				{TCPListen, 3, 0, false}, {TCPSynAck, 3, 0, false}, {TCPNone, 3, 0, false},
			},
		},
		{
			name: "udp: by packet count only", rules: DefaultRules(), proto: ProtoUDP,
			steps: []step{{UDPNormal, 1, 0, false}, {UDPNormal, 3, 0, true}, {UDPNormal, 4, 0, false}, {UDPNormal, 53, 0, true}},
		},
		{
			name: "sctp: shutdown goes at once", rules: DefaultRules(), proto: ProtoSCTP,
			steps: []step{
				{SCTPCookieEchoed, 2, 0, false}, {SCTPEstablished, 3, 0, true},
				{SCTPShutdownSent, 4, 0, true}, {SCTPClosed, 5, 0, true}, {SCTPClosed, 6, 0, false},
			},
		},
		{
			name: "template: every packet while sync_period is set", rules: DefaultRules(), proto: ProtoTCP, flags: FlagTemplate,
			steps: []step{{TemplateNone, 1, 0, true}, {TemplateNone, 2, 0, true}, {TemplateAssured, 7, 0, true}},
		},
		{
			name: "template: only the threshold packet without periods", rules: Rules{Threshold: 3}, proto: ProtoTCP, flags: FlagTemplate,
			steps: []step{{TemplateNone, 1, 0, false}, {TemplateNone, 3, 0, true}, {TemplateNone, 53, 0, false}},
		},
		{
			name: "one-packet conns never", rules: DefaultRules(), proto: ProtoUDP, flags: FlagOnePacket,
			steps: []step{{UDPNormal, 3, 0, false}, {UDPNormal, 53, 0, false}},
		},
		{
			name: "period 0: once at the threshold, state changes still at once", rules: Rules{Threshold: 3}, proto: ProtoTCP,
			steps: []step{
				{TCPEstablished, 3, 0, true}, {TCPEstablished, 53, 0, false}, {TCPFinWait, 54, 0, true},
			},
		},
		{
			name: "persist mode skips controlled conns", rules: Rules{Threshold: 3, Period: 50, PersistMode: true}, proto: ProtoTCP, inPersist: true,
			steps: []step{{TCPEstablished, 3, 0, false}, {TCPFinWait, 4, 0, false}},
		},
		{
			name: "refresh period holds back resends", rules: Rules{Threshold: 3, Period: 50, RefreshPeriod: 100 * time.Second}, proto: ProtoTCP,
			steps: []step{
				{TCPEstablished, 3, 0, true}, {TCPEstablished, 53, 30, false}, {TCPEstablished, 103, 99, false},
				{TCPEstablished, 153, 100, true}, {TCPFinWait, 154, 101, true},
			},
		},
		{
			name: "refresh retries every period/8", rules: Rules{Threshold: 3, Period: 50, RefreshPeriod: 80 * time.Second, Retries: 1}, proto: ProtoTCP,
			steps: []step{
				{TCPEstablished, 3, 0, true}, {TCPEstablished, 53, 5, false}, {TCPEstablished, 103, 20, true},
				{TCPEstablished, 153, 40, false}, {TCPEstablished, 203, 100, true},
			},
		},
		{
			name: "refresh period without sync period: every packet past the period", rules: Rules{Threshold: 3, RefreshPeriod: 60 * time.Second}, proto: ProtoUDP,
			steps: []step{{UDPNormal, 1, 0, true}, {UDPNormal, 2, 30, false}, {UDPNormal, 3, 61, true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &PacketConn{Proto: tt.proto, Flags: tt.flags, InPersistence: tt.inPersist}
			for i, s := range tt.steps {
				c.State = s.state
				c.Timeout = DefaultTimeout(c.Proto, c.State, c.Flags)
				if got := tt.rules.OnPacket(c, s.pkts, at(s.sec)); got != s.want {
					t.Fatalf("step %d (state %d, packet %d, t=%ds): sync = %v, want %v", i, s.state, s.pkts, s.sec, got, s.want)
				}
			}
		})
	}
}

func TestPolicyDecide(t *testing.T) {
	est := connTCP4 // timeout 900
	noTimeout := est
	noTimeout.Timeout = 0
	fin := est
	fin.State, fin.Timeout = TCPFinWait, 120
	closing := est
	closing.State, closing.Timeout = TCPClose, 10
	lastAck := est
	lastAck.State = TCPLastAck
	synRecv := est
	synRecv.State = TCPSynRecv
	moved := est
	moved.Dest = ap("10.0.0.9:8080")
	onePkt := connUDP6
	onePkt.Flags |= FlagOnePacket
	tplAssured := connTemplate
	tplAssured.State = TemplateAssured
	sentEst := &Sent{State: TCPEstablished, Dest: est.Dest, At: at(0)}
	sentCW := &Sent{State: TCPCloseWait, Dest: est.Dest, At: at(0)}

	tests := []struct {
		name   string
		policy Policy
		last   *Sent
		c      Conn
		sec    int
		want   Decision
	}{
		{name: "new established", c: est, want: SendNew},
		{name: "new syn_recv waits", c: synRecv, want: Skip},
		{name: "new udp", c: connUDP6, want: SendNew},
		{name: "new template", c: connTemplate, want: SendNew},
		{name: "one-packet never", c: onePkt, want: Skip},
		{name: "established to fin_wait", last: sentEst, c: fin, sec: 1, want: SendState},
		{name: "close_wait to last_ack is not synced", last: sentCW, c: lastAck, sec: 1, want: Skip},
		{name: "unchanged before half the timeout", last: sentEst, c: est, sec: 449, want: Skip},
		{name: "unchanged at half the timeout", last: sentEst, c: est, sec: 450, want: SendRefresh},
		{name: "no timeout in the conn uses the state default", last: sentEst, c: noTimeout, sec: 450, want: SendRefresh},
		{name: "short timeouts refresh at 10s at most", last: &Sent{State: TCPClose, Dest: est.Dest, At: at(0)}, c: closing, sec: 10, want: SendRefresh},
		{name: "refresh period caps the interval", policy: Policy{RefreshPeriod: time.Minute}, last: sentEst, c: est, sec: 60, want: SendRefresh},
		{name: "refresh period within", policy: Policy{RefreshPeriod: time.Minute}, last: sentEst, c: est, sec: 59, want: Skip},
		{name: "other real server", last: sentEst, c: moved, sec: 1, want: SendDest},
		{name: "template assured", last: &Sent{State: TemplateNone, Dest: connTemplate.Dest, At: at(0)}, c: tplAssured, sec: 1, want: SendState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.policy.Decide(tt.last, &tt.c, at(tt.sec)); got != tt.want {
				t.Errorf("Decide = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBackupView(t *testing.T) {
	tests := []struct {
		name        string
		c           Conn
		wantFlags   uint32
		wantTimeout time.Duration
	}{
		{name: "v1 timeout kept", c: Conn{Proto: ProtoTCP, State: TCPEstablished, Timeout: 77, Flags: FlagNoOutput | FlagOnePacket | FlagHashed},
			wantFlags: FlagNoOutput | FlagSync, wantTimeout: 77 * time.Second},
		{name: "tcp default", c: Conn{Proto: ProtoTCP, State: TCPTimeWait, Flags: FlagSeqMask | FlagInactive},
			wantFlags: FlagSeqMask | FlagInactive | FlagSync, wantTimeout: 120 * time.Second},
		{name: "udp default", c: Conn{Proto: ProtoUDP}, wantFlags: FlagSync, wantTimeout: 300 * time.Second},
		{name: "sctp established default", c: Conn{Proto: ProtoSCTP, State: SCTPEstablished}, wantFlags: FlagSync, wantTimeout: 900 * time.Second},
		{name: "template default 180s", c: Conn{Proto: ProtoNone, Flags: FlagTemplate | FlagDRoute},
			wantFlags: FlagTemplate | FlagDRoute | FlagSync, wantTimeout: 180 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.BackupFlags(); got != tt.wantFlags {
				t.Errorf("BackupFlags = %#x, want %#x", got, tt.wantFlags)
			}
			if got := tt.c.TimeoutOrDefault(); got != tt.wantTimeout {
				t.Errorf("TimeoutOrDefault = %v, want %v", got, tt.wantTimeout)
			}
		})
	}
}
