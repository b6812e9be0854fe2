package ctl

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"xvs/ipvsadm"
	"xvs/maps"
)

// Snapshot is the table's state as xvsd keeps it on disk, so that a
// restarted daemon rebuilds the same table over the pinned maps (ids must
// match what the datapath's connections refer to).
type Snapshot struct {
	Version  int              `json:"version"`
	Timeouts ipvsadm.Timeouts `json:"timeouts"`
	Services []SnapService    `json:"services"`
	Trash    []SnapDest       `json:"trash,omitempty"`
}

// SnapService is one service in a Snapshot.
type SnapService struct {
	Service ipvsadm.Service `json:"service"`
	ID      uint32          `json:"id"`
	Zero    maps.Stats      `json:"zero"`
	Dests   []SnapDest      `json:"dests"`
}

// SnapDest is one real server in a Snapshot; a trashed one names its
// service.
type SnapDest struct {
	Dest     ipvsadm.Dest   `json:"dest"`
	ID       uint32         `json:"id"`
	SvcID    uint32         `json:"svc_id"`
	Zero     maps.Stats     `json:"zero"`
	SvcProto uint8          `json:"svc_proto,omitempty"`
	SvcAddr  netip.AddrPort `json:"svc_addr,omitzero"`
}

const snapshotVersion = 1

func (t *Table) snapshotLocked() *Snapshot {
	sn := &Snapshot{Version: snapshotVersion, Timeouts: t.timeouts}
	for _, s := range t.svcs {
		ss := SnapService{Service: s.cfg, ID: s.id, Zero: s.zero}
		for _, d := range s.dests {
			ss.Dests = append(ss.Dests, SnapDest{Dest: d.cfg, ID: d.id, SvcID: d.svcID, Zero: d.zero})
		}
		sn.Services = append(sn.Services, ss)
	}
	for k, d := range t.trash {
		sn.Trash = append(sn.Trash, SnapDest{Dest: d.cfg, ID: d.id, SvcID: d.svcID, Zero: d.zero, SvcProto: k.svc.proto, SvcAddr: k.svc.addr})
	}
	return sn
}

// Snapshot returns the table's current state.
func (t *Table) Snapshot() *Snapshot {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.snapshotLocked()
}

// Adopt rebuilds an empty table from sn over a datapath whose maps already
// hold sn's services and connections (a restarted daemon). Real servers
// are re-added in their order, so schedulers start as after that
// configuration.
func (t *Table) Adopt(sn *Snapshot) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.svcs) != 0 {
		return fmt.Errorf("adopt state: table is not empty")
	}
	t.timeouts = sn.Timeouts
	for _, ss := range sn.Services {
		pool, err := newPool(ss.Service, t.wall)
		if err != nil {
			return fmt.Errorf("adopt service %v: %w", ss.Service.Addr, err)
		}
		if !t.svcIDs.take(ss.ID) {
			return fmt.Errorf("adopt service %v: id %d taken twice", ss.Service.Addr, ss.ID)
		}
		s := &service{cfg: ss.Service, id: ss.ID, pool: pool, zero: ss.Zero}
		k := keyOf(&s.cfg)
		if err := t.dp.SetBudget(s.id, false, t.budget.Rate, t.budget.Burst); err != nil {
			return fmt.Errorf("adopt service %v: %w", ss.Service.Addr, err)
		}
		if err := t.dp.PutService(mapKey(k), s.id); err != nil {
			return fmt.Errorf("adopt service %v: %w", ss.Service.Addr, err)
		}
		for _, sd := range ss.Dests {
			if !t.destIDs.take(sd.ID) {
				return fmt.Errorf("adopt destination %v: id %d taken twice", sd.Dest.Addr, sd.ID)
			}
			d := &dest{cfg: sd.Dest, id: sd.ID, svcID: s.id, zero: sd.Zero}
			if _, err := pool.AddDest(destConfig(d.cfg), counters{dp: t.dp, id: d.id}); err != nil {
				return fmt.Errorf("adopt destination %v: %w", sd.Dest.Addr, err)
			}
			s.add(d)
		}
		t.svcs[k] = s
	}
	for _, sd := range sn.Trash {
		if !t.destIDs.take(sd.ID) {
			return fmt.Errorf("adopt deleted destination %v: id %d taken twice", sd.Dest.Addr, sd.ID)
		}
		k := trashKey{svc: svcKey{proto: sd.SvcProto, addr: sd.SvcAddr}, addr: sd.Dest.Addr}
		t.trash[k] = &dest{cfg: sd.Dest, id: sd.ID, svcID: sd.SvcID, zero: sd.Zero}
		if _, live := t.svcs[k.svc]; !live {
			t.deadSvcs[sd.SvcID] = t.svcIDs.take(sd.SvcID) || t.deadSvcs[sd.SvcID]
		}
	}
	return nil
}

// WriteSnapshotFile writes sn to path atomically (temp file and rename).
func WriteSnapshotFile(path string, sn *Snapshot) error {
	b, err := json.MarshalIndent(sn, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// ReadSnapshotFile reads a state file; a missing file is (nil, nil).
func ReadSnapshotFile(path string) (*Snapshot, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var sn Snapshot
	if err := json.Unmarshal(b, &sn); err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	if sn.Version != snapshotVersion {
		return nil, fmt.Errorf("read state %s: version %d, want %d", path, sn.Version, snapshotVersion)
	}
	return &sn, nil
}
