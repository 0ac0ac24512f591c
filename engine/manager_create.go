package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
)

// createThreads bounds the logs CreateLogs opens at once.
const createThreads = 8

// CreateLogs is CreateLog for many partitions at once (a LeaderAndIsr
// request naming thousands of new partitions, a topic created on a single
// node): logs[i], errs[i] answer tps[i] (cfgs[i] its config). The new
// partition directories are made first, then each log dir is fsynced once
// for all of them (a new directory must be durable before anything synced
// inside it), and the logs are opened in parallel without holding the
// manager's lock, so the cost is not one directory fsync per partition nor
// a serial walk. A directory this call made is known to be empty: its log
// is opened without listing it, and its first segment file is created
// with its first record (segment.unborn), so a new partition costs a
// mkdir and its share of one fsync. A directory made for a partition
// whose log then failed (the log dir's sync, the log's open) is removed
// again, best effort: the partition is not created, and a directory left
// behind would come back as an empty log at the next start.
//
// Crash safety: a partition is reported created only once its directory
// is durable (the log dir's sync returned); a log directory found empty
// is loaded as an empty log.
func (m *Manager) CreateLogs(tps []TopicPartition, cfgs []Config) ([]*Log, []error) {
	logs := make([]*Log, len(tps))
	errs := make([]error, len(tps))
	m.createMu.Lock()
	defer m.createMu.Unlock()
	m.checkpointIfRecreated(tps...)

	// Existing logs, refusals and the placement of the new ones.
	type fresh struct {
		i    int
		dir  string // the partition directory
		made bool   // made by this call (so empty)
	}
	var todo []fresh
	placed := map[TopicPartition]int{} // a partition named twice: the first
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		for i, tp := range tps {
			errs[i] = fmt.Errorf("engine: create %s: %w", tp, ErrClosed)
		}
		return logs, errs
	}
	perDir := map[string]int{}
	for d, n := range m.perDir {
		perDir[d] = n
	}
	for i, tp := range tps {
		if l, ok := m.logs[tp]; ok {
			logs[i] = l
			continue
		}
		if f, ok := m.failed[tp]; ok {
			errs[i] = fmt.Errorf("engine: create %s: the partition's log failed to open at start-up and is left as found: %w: %w", tp, ErrStorage, f.err)
			continue
		}
		if _, ok := placed[tp]; ok {
			continue
		}
		dir := m.opts.Dirs[0]
		for _, d := range m.opts.Dirs[1:] {
			if perDir[d] < perDir[dir] {
				dir = d
			}
		}
		perDir[dir]++
		placed[tp] = i
		todo = append(todo, fresh{i: i, dir: filepath.Join(dir, PartitionDirName(tp))})
	}
	m.mu.Unlock()

	// The directories, then one fsync per log dir.
	parents := map[string]bool{}
	var made []fresh
	for _, f := range todo {
		if _, err := m.opts.FS.Stat(f.dir); err == nil {
			made = append(made, f)
			continue
		}
		if err := m.opts.FS.MkdirAll(f.dir, 0o755); err != nil {
			errs[f.i] = fmt.Errorf("engine: create %s: %w: %w", tps[f.i], ErrStorage, err)
			continue
		}
		parents[filepath.Dir(f.dir)] = true
		f.made = true
		made = append(made, f)
	}
	for p := range parents {
		if err := m.opts.FS.SyncDir(p); err != nil {
			err = fmt.Errorf("engine: create logs in %s: syncing the log dir: %w: %w", p, ErrStorage, err)
			for _, f := range made {
				if filepath.Dir(f.dir) == p {
					errs[f.i] = err
				}
			}
		}
	}

	// The logs, in parallel.
	var wg sync.WaitGroup
	next := make(chan fresh)
	for range min(createThreads, max(len(made), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range next {
				logs[f.i], errs[f.i] = OpenLog(f.dir, tps[f.i], cfgs[f.i], LogOptions{
					FS: m.opts.FS, Clock: m.opts.Clock, Logger: m.opts.Logger,
					CleanShutdown: true, RecoveryPoint: -1, LogStartOffset: -1, handles: m.handles,
					RecoveryPointLowered: m.WriteCheckpoints, listed: true, empty: f.made, maintenance: &m.maint, journal: m.journals[filepath.Dir(f.dir)],
				})
				if errs[f.i] == nil {
					errs[f.i] = logs[f.i].journalCreated()
				}
			}
		}()
	}
	for _, f := range made {
		if errs[f.i] == nil {
			next <- f
		}
	}
	close(next)
	wg.Wait()

	m.mu.Lock()
	closed := m.closed
	for _, f := range made {
		if l := logs[f.i]; l != nil && errs[f.i] == nil {
			if closed {
				_ = l.Close()
				logs[f.i], errs[f.i] = nil, fmt.Errorf("engine: create %s: %w", tps[f.i], ErrClosed)
				continue
			}
			m.logs[tps[f.i]] = l
			m.perDir[filepath.Dir(f.dir)]++
		}
	}
	m.mu.Unlock()
	// Directories made for partitions that were not created go again.
	for _, f := range made {
		if f.made && errs[f.i] != nil {
			if err := m.opts.FS.RemoveAll(f.dir); err != nil {
				m.opts.Logger.Warn("removing the directory of a partition that was not created failed", "partition", tps[f.i].String(), "dir", f.dir, "err", err)
			}
		}
	}
	// A partition named twice gets the first one's answer.
	for i, tp := range tps {
		if j, ok := placed[tp]; ok && j != i && logs[i] == nil && errs[i] == nil {
			logs[i], errs[i] = logs[j], errs[j]
		}
	}
	for i := range errs {
		if errs[i] != nil && !errors.Is(errs[i], ErrStorage) && !errors.Is(errs[i], ErrClosed) {
			errs[i] = fmt.Errorf("engine: create %s: %w: %w", tps[i], ErrStorage, errs[i])
		}
	}
	return logs, errs
}
