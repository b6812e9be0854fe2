package connsync

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// MasterConfig configures a Master.
type MasterConfig struct {
	SyncID uint8
	// MaxLen bounds each message (IPVS header included); 0 means 1472, the
	// kernel master's default for an IPv4 group (reference 8.1).
	MaxLen int
	Policy Policy
	// FlushAfter is the longest a queued record waits for its message to
	// fill up; 0 means 2 s (IPVS_SYNC_FLUSH_TIME).
	FlushAfter time.Duration
	// Tick is how often Run looks for messages that are due; 0 means 1 s
	// (IPVS_SYNC_CHECK_PERIOD). Full messages are sent at once regardless.
	Tick time.Duration
	// QueueLen caps the full messages waiting to be sent (sync_qlen_max).
	// While the queue is full, records that would need a new message are
	// deferred: the conn is left unsent, so the next Observe offers it
	// again. (IPVS drops the message instead; with snapshots, deferring
	// loses nothing.) 0 means 1024.
	QueueLen int
}

// MasterStats are a Master's counters.
type MasterStats struct {
	Conns      int    // conns the master currently tracks
	Records    uint64 // records queued
	Messages   uint64 // messages handed to send without error
	Deferred   uint64 // records left for a later Observe because the queue was full
	Invalid    uint64 // conns refused by Conn.Validate
	SendErrors uint64 // messages whose send failed
}

type connKey struct {
	proto       uint8
	template    bool
	fwmark      uint32
	client, vip netip.AddrPort
}

type tracked struct {
	Sent
	gen uint64 // last Observe generation that saw the conn
}

// Master turns views of the connection table into sync messages. Observe
// (whole snapshots) and Update (single conns, e.g. state-change events from
// the datapath) queue records per its Policy; Run sends them. Their now
// must come from time.Now, the clock Run uses to flush. It is safe for
// concurrent use.
//
// The caller's side, in xvsd: a loop that every second or so reads the
// conn maps into []Conn (Timeout = the state's current timeout in seconds,
// templates with FlagTemplate) and calls Observe; optionally Update for
// each transition event the datapath reports; and Run with Sender.Send.
type Master struct {
	mu    sync.Mutex
	cfg   MasterConfig
	seen  map[connKey]*tracked
	gen   uint64
	cur   *Builder
	first time.Time // when the current message got its first record
	queue [][]byte
	stats MasterStats
	kick  chan struct{}
}

// NewMaster returns a Master with cfg's zero fields set to their defaults.
func NewMaster(cfg MasterConfig) *Master {
	if cfg.MaxLen <= 0 {
		cfg.MaxLen = 1500 - 28
	}
	if cfg.FlushAfter <= 0 {
		cfg.FlushAfter = 2 * time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 1024
	}
	return &Master{
		cfg:  cfg,
		seen: make(map[connKey]*tracked),
		cur:  NewBuilder(cfg.SyncID, cfg.MaxLen),
		kick: make(chan struct{}, 1),
	}
}

func keyOf(c *Conn) connKey {
	return connKey{proto: c.Proto, template: c.IsTemplate(), fwmark: c.FwMark, client: c.Client, vip: c.VIP}
}

// Observe takes a whole snapshot of the connection table at now: it queues
// what Policy says must be sent and forgets the conns that are gone. It
// returns the number of records queued.
func (m *Master) Observe(conns []Conn, now time.Time) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	n := 0
	for i := range conns {
		if m.consider(&conns[i], now) {
			n++
		}
	}
	for k, t := range m.seen {
		if t.gen != m.gen {
			delete(m.seen, k)
		}
	}
	return n
}

// Update considers one conn at now without forgetting any other, for
// events such as a state change reported by the datapath. It reports
// whether a record was queued.
func (m *Master) Update(c Conn, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.consider(&c, now)
}

func (m *Master) consider(c *Conn, now time.Time) bool {
	k := keyOf(c)
	t := m.seen[k]
	var last *Sent
	if t != nil {
		t.gen = m.gen
		last = &t.Sent
	}
	if m.cfg.Policy.Decide(last, c, now) == Skip {
		return false
	}
	if !m.add(c, now) {
		return false
	}
	if t == nil {
		t = &tracked{gen: m.gen}
		m.seen[k] = t
	}
	t.Sent = Sent{State: c.State, Dest: c.Dest, At: now}
	return true
}

func (m *Master) add(c *Conn, now time.Time) bool {
	if len(m.queue) >= m.cfg.QueueLen && !m.cur.Fits(c) && c.Validate() == nil {
		m.stats.Deferred++
		return false
	}
	full, err := m.cur.Add(c)
	if err != nil {
		m.stats.Invalid++
		return false
	}
	m.stats.Records++
	if full != nil {
		m.enqueue(full)
		m.first = now
	} else if m.cur.Count() == 1 {
		m.first = now
	}
	return true
}

func (m *Master) enqueue(msg []byte) {
	m.queue = append(m.queue, msg)
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Due returns, and removes, the messages ready to go at now: every full
// message, and the one being filled once its first record has waited
// FlushAfter.
func (m *Master) Due(now time.Time) [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.queue
	m.queue = nil
	if m.cur.Count() > 0 && now.Sub(m.first) >= m.cfg.FlushAfter {
		out = append(out, m.cur.Flush())
	}
	return out
}

// Flush returns, and removes, every pending message, the partial one too.
func (m *Master) Flush() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.queue
	m.queue = nil
	if msg := m.cur.Flush(); msg != nil {
		out = append(out, msg)
	}
	return out
}

// Stats returns the counters.
func (m *Master) Stats() MasterStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Conns = len(m.seen)
	return s
}

// Run sends due messages through send until ctx is done: full messages as
// soon as they are queued, a partial one at the latest FlushAfter (+Tick)
// after its first record. A failed send is counted and the message dropped
// (the kernel drops on errors other than a full socket buffer, and the
// refresh rule resends what matters). What is pending when ctx ends is
// discarded, as when IPVS stops its master thread. Run returns ctx.Err().
func (m *Master) Run(ctx context.Context, send func([]byte) error) error {
	tick := time.NewTicker(m.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.kick:
		case <-tick.C:
		}
		for _, msg := range m.Due(time.Now()) {
			err := send(msg)
			m.mu.Lock()
			if err != nil {
				m.stats.SendErrors++
			} else {
				m.stats.Messages++
			}
			m.mu.Unlock()
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
}
