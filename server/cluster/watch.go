package cluster

import (
	"strconv"
	"strings"
	"time"

	"github.com/kvlog/kvlog/internal/clock"
	"github.com/kvlog/kvlog/server/acl"
)

// configWatcher hands the /config/changes notifications (topic, broker
// and client-quota configs changed through any broker or Kafka's tools)
// to Config.OnConfigChange, in sequence order. The notifications present
// at start are skipped: the broker read the configs after them. A failed
// read is retried after retryWait.
func (m *Member) configWatcher() {
	last := int64(-1) // sequence number of the last change applied
	first := true
	for m.ctx.Err() == nil {
		names, ch, err := m.zk.ConfigChangesW()
		if err != nil {
			m.log.Debug("reading config changes failed; retrying", "err", err)
			clock.Sleep(m.ctx, m.clk, retryWait)
			continue
		}
		for _, n := range names {
			seq, err := strconv.ParseInt(strings.TrimPrefix(n, "config_change_"), 10, 64)
			if err != nil || seq <= last {
				continue
			}
			last = seq
			if first {
				continue // the snapshot was read after these
			}
			entity, err := m.zk.TakeConfigChange(n)
			if err != nil {
				continue
			}
			if m.cfg.OnConfigChange != nil {
				m.cfg.OnConfigChange(entity)
			}
		}
		first = false
		select {
		case <-ch:
		case <-m.ctx.Done():
		}
	}
}

// ACL change notifications older than aclChangeMaxAge are deleted once
// more than aclChangesKept exist (Kafka purges them after 15 minutes).
const (
	aclChangeMaxAge = 15 * time.Minute
	aclChangesKept  = 100
)

// aclWatcher applies the ACL change notifications other brokers (or
// Kafka's tools) write in ZooKeeper to the authorizer: each names a
// resource pattern, whose ACLs are read again. extended selects the
// notification path (both are watched). A failed read is retried after
// retryWait.
func (m *Member) aclWatcher(extended bool) {
	az := m.authz
	var last int64 = -1
	first := true
	for m.ctx.Err() == nil {
		names, ch, err := m.zk.AclChangesW(extended)
		if err != nil {
			m.log.Debug("reading ACL changes failed; retrying", "err", err)
			clock.Sleep(m.ctx, m.clk, retryWait)
			continue
		}
		changed := map[acl.Pattern][]acl.Entry{}
		for _, n := range names {
			seq, err := strconv.ParseInt(strings.TrimPrefix(n, "acl_changes_"), 10, 64)
			if err != nil || seq <= last {
				continue
			}
			last = seq
			if first {
				continue // read below, with everything else
			}
			p, ok := m.zk.AclChange(extended, n)
			if !ok {
				continue
			}
			es, err := m.zk.ResourceAcls(p)
			if err != nil {
				m.log.Warn("reading changed ACLs failed; reloading all", "pattern", p.String(), "err", err)
				if all, err := m.zk.Acls(); err == nil {
					az.Replace(all)
				}
				continue
			}
			changed[p] = es
		}
		if first {
			// The listing set the watch: reading everything now covers
			// the changes made since the authorizer loaded at start-up.
			all, err := m.zk.Acls()
			if err != nil {
				m.log.Warn("reading the ACLs failed; retrying", "err", err)
				clock.Sleep(m.ctx, m.clk, retryWait)
				continue
			}
			az.Replace(all)
		} else if len(changed) > 0 {
			az.Set(changed)
			m.log.Info("applied ACL changes", "patterns", len(changed), "acls", az.Count())
		}
		first = false
		if len(names) > aclChangesKept {
			m.zk.PurgeAclChanges(extended, aclChangeMaxAge)
		}
		select {
		case <-ch:
		case <-m.ctx.Done():
		}
	}
}
