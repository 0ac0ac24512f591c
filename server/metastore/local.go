package metastore

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvlog/kvlog/engine/vfs"
	"github.com/kvlog/kvlog/server/acl"
)

// The files of the embedded store, in its directory (the format is
// described in FORMAT.md beside this file).
const (
	// LocalFileName holds the current generation of the metadata.
	LocalFileName = "kvlog-metadata.json"
	// PrevSuffix names the previous generation (LocalFileName+PrevSuffix),
	// the fallback when the current one is missing or corrupt.
	PrevSuffix = ".prev"
	// tmpSuffix names a generation being written.
	tmpSuffix = ".tmp"
	// corruptSuffix names a current generation found corrupt, kept aside
	// for inspection when the store fell back to the previous one.
	corruptSuffix = ".corrupt"
	// deleteMarkerInfix, followed by a topic id in hex, names an empty file
	// recording a topic deletion the store could not write for lack of
	// space.
	deleteMarkerInfix = ".deleted-"
)

// formatVersion is the version of the envelope Local writes. Version 1 is
// the bare state document of earlier releases (no generation, no
// checksum), still read.
const formatVersion = 2

// producerIDBlock is how many producer ids Local reserves per durable write.
// A restart skips the rest of the current block, as Kafka's
// /latest_producer_id_block does.
const producerIDBlock = 1000

// localState is the persisted document.
type localState struct {
	ClusterID        string                       `json:"cluster_id"`
	Topics           map[string]*Topic            `json:"topics"`
	PendingDeletions map[string]*Topic            `json:"pending_deletions,omitempty"`
	BrokerConfigs    map[string]map[string]string `json:"broker_configs,omitempty"`
	ProducerIDBlock  int64                        `json:"producer_id_block_end"`
	// ScramUsers are SCRAM credentials: user → mechanism → stored form.
	ScramUsers map[string]map[string]string `json:"scram_users,omitempty"`
	// Acls are the authorizer's ACLs, one element per resource pattern.
	Acls []storedACLs `json:"acls,omitempty"`
	// ClientQuotas are client quotas: entity path → quota key → value.
	ClientQuotas map[string]map[string]float64 `json:"client_quotas,omitempty"`
}

// storedACLs are one resource pattern's ACLs, with Kafka's names for
// resource types, operations and permissions.
type storedACLs struct {
	ResourceType string      `json:"resource_type"`
	Name         string      `json:"name"`
	PatternType  string      `json:"pattern_type"`
	Acls         []storedACL `json:"acls"`
}

type storedACL struct {
	Principal      string `json:"principal"`
	Host           string `json:"host"`
	Operation      string `json:"operation"`
	PermissionType string `json:"permission_type"`
}

// envelope is the file: the state with its generation and checksum.
type envelope struct {
	Version    int             `json:"version"`
	Generation uint64          `json:"generation"`
	CRC32C     uint32          `json:"crc32c"`
	State      json.RawMessage `json:"state"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// LocalOptions are Local's dependencies.
type LocalOptions struct {
	FS     vfs.FS       // nil: the operating system
	Logger *slog.Logger // nil: slog.Default()
}

// Local is the embedded metadata store: a JSON document rewritten on every
// change as a new generation (temporary file, fsync, the current file
// renamed to the previous one, the temporary file renamed to the current
// one, directory fsync). Opening loads the newest generation whose
// checksum holds, so a corrupt or missing current file falls back to the
// previous generation.
type Local struct {
	mu      sync.Mutex
	fs      vfs.FS
	log     *slog.Logger
	dir     string
	path    string
	state   localState
	gen     uint64 // generation of the state last written (or loaded)
	curOK   bool   // path holds a valid generation: the next write keeps it as the previous one
	markers []string
	nextPID int64 // next producer id to hand out; < state.ProducerIDBlock
	closed  bool
	created bool // no generation existed: this open created the store
}

var _ Store = (*Local)(nil)

// OpenLocal opens (or creates) the store in dir on the operating system's
// file system. clusterID, if not empty, is used for a new store; an
// existing store keeps its own.
func OpenLocal(dir, clusterID string) (*Local, error) {
	return OpenLocalWith(dir, clusterID, LocalOptions{})
}

// loaded is one generation read from a file.
type loaded struct {
	file   string
	exists bool
	gen    uint64
	state  localState
	err    error // not nil: missing (exists false) or unusable
}

// OpenLocalWith opens (or creates) the store in dir. It loads the newest
// valid generation of the current and previous files, saying at WARN when
// that is the previous one (the current one is then kept aside as
// kvlog-metadata.json.corrupt and rewritten), and fails only when neither
// holds a valid generation or a file has a version this build cannot read.
// Topic deletions recorded by marker files (see DeleteTopic) are applied.
func OpenLocalWith(dir, clusterID string, opts LocalOptions) (*Local, error) {
	l := &Local{fs: opts.FS, log: opts.Logger, dir: dir, path: filepath.Join(dir, LocalFileName)}
	if l.fs == nil {
		l.fs = vfs.Default
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	if err := l.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("metastore: %s: %w", dir, err)
	}
	cur := l.read(l.path)
	prev := l.read(l.path + PrevSuffix)
	for _, c := range []loaded{cur, prev} {
		if errors.Is(c.err, errUnsupportedVersion) {
			return nil, c.err
		}
	}
	markers, err := l.listMarkers()
	if err != nil {
		return nil, err
	}
	switch {
	case !cur.exists && !prev.exists:
		if clusterID == "" {
			clusterID = newClusterID()
		}
		l.state = localState{ClusterID: clusterID, Topics: map[string]*Topic{}}
		l.created = true
		if err := l.persist(); err != nil {
			return nil, err
		}
		for _, m := range markers { // of a store that no longer exists
			_ = l.fs.Remove(filepath.Join(dir, m))
		}
		markers = nil
	case cur.err == nil && (prev.err != nil || cur.gen >= prev.gen):
		l.state, l.gen, l.curOK = cur.state, cur.gen, true
		if prev.exists && prev.err != nil {
			l.log.Warn("previous generation of the metadata is unusable; the current one is fine", "file", prev.file, "err", prev.err)
		}
	case prev.err == nil:
		curErr := "missing"
		if cur.exists {
			curErr = cur.err.Error()
		}
		l.log.Warn("current metadata file unusable; using the previous generation",
			"file", cur.file, "err", curErr, "using", prev.file, "generation", prev.gen)
		l.state, l.gen = prev.state, prev.gen
		if cur.exists && cur.err != nil {
			if err := l.fs.Rename(l.path, l.path+corruptSuffix); err != nil {
				l.log.Warn("keeping the corrupt metadata file aside failed", "file", cur.file, "err", err)
			}
		}
		// Rewrite the current file from the previous generation, keeping
		// that one as the fallback (curOK is false: no rotation).
		if err := l.persist(); err != nil {
			l.log.Warn("rewriting the metadata file failed; the next change retries", "file", cur.file, "err", err)
		}
	default:
		return nil, fmt.Errorf("metastore: no usable generation of the metadata: %w", errors.Join(cur.err, prev.err))
	}
	if l.state.Topics == nil {
		l.state.Topics = map[string]*Topic{}
	}
	l.nextPID = l.state.ProducerIDBlock
	if len(markers) > 0 {
		l.applyMarkers(markers)
	}
	return l, nil
}

var errUnsupportedVersion = errors.New("metastore: unsupported metadata format version")

// read loads one file.
func (l *Local) read(path string) loaded {
	c := loaded{file: path}
	f, err := l.fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			c.err = err
			return c
		}
		c.exists = true
		c.err = fmt.Errorf("metastore: %s: %w", path, err)
		return c
	}
	c.exists = true
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		c.err = fmt.Errorf("metastore: %s: %w", path, err)
		return c
	}
	c.state, c.gen, c.err = decode(path, b)
	return c
}

// decode parses a file's content.
func decode(path string, b []byte) (localState, uint64, error) {
	var st localState
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return st, 0, fmt.Errorf("metastore: %s: corrupt: %w", path, err)
	}
	switch env.Version {
	case 1: // the bare state of earlier releases
		if err := json.Unmarshal(b, &st); err != nil {
			return st, 0, fmt.Errorf("metastore: %s: corrupt: %w", path, err)
		}
		if err := st.check(); err != nil {
			return st, 0, fmt.Errorf("metastore: %s: corrupt: %w", path, err)
		}
		return st, 0, nil
	case formatVersion:
	default:
		return st, 0, fmt.Errorf("%w %d in %s", errUnsupportedVersion, env.Version, path)
	}
	if len(env.State) == 0 {
		return st, 0, fmt.Errorf("metastore: %s: corrupt: no state", path)
	}
	if sum := crc32.Checksum(env.State, castagnoli); sum != env.CRC32C {
		return st, 0, fmt.Errorf("metastore: %s: corrupt: generation %d has checksum %08x, its state hashes to %08x", path, env.Generation, env.CRC32C, sum)
	}
	if err := json.Unmarshal(env.State, &st); err != nil {
		return st, 0, fmt.Errorf("metastore: %s: corrupt: %w", path, err)
	}
	if err := st.check(); err != nil {
		return st, 0, fmt.Errorf("metastore: %s: corrupt: generation %d: %w", path, env.Generation, err)
	}
	return st, env.Generation, nil
}

// check rejects a decoded state the store could not serve: a topic entry
// that is null, filed under another name than its own, or without
// partitions. JSON that parses is not yet a state (a hand edit, or damage
// in a file of the first format, which has no checksum).
func (st *localState) check() error {
	for _, m := range []map[string]*Topic{st.Topics, st.PendingDeletions} {
		for name, t := range m {
			switch {
			case t == nil:
				return fmt.Errorf("topic %q: null", name)
			case t.Name != name:
				return fmt.Errorf("topic %q: filed under %q", t.Name, name)
			case t.Partitions < 1:
				return fmt.Errorf("topic %q: %d partitions", name, t.Partitions)
			}
		}
	}
	return nil
}

// encode renders a generation. The state is indented for people; the
// checksum covers its bytes exactly as written.
func encode(st *localState, gen uint64) ([]byte, error) {
	body, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\"version\": %d, \"generation\": %d, \"crc32c\": %d,\n\"state\": ", formatVersion, gen, crc32.Checksum(body, castagnoli))
	b.Write(body)
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// Created reports whether opening created the store: no generation of it
// existed in the directory.
func (l *Local) Created() bool { return l.created }

// newClusterID returns a Kafka-style cluster id: a random UUID in
// unpadded URL-safe base64.
func newClusterID() string {
	var id [16]byte
	rand.Read(id[:])
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// NewTopicID returns a random, non-zero topic id.
func NewTopicID() TopicID {
	var id TopicID
	rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40 // version 4
	id[8] = id[8]&0x3f | 0x80 // variant
	return id
}

// persist writes the state durably as the next generation, keeping the
// current file (when valid) as the previous generation. Caller holds mu
// (or owns l). On failure the files hold the last good generation (the
// current file, or only the previous one when the failure came between
// the two renames).
func (l *Local) persist() error {
	gen := l.gen + 1
	b, err := encode(&l.state, gen)
	if err != nil {
		return err
	}
	tmp := l.path + tmpSuffix
	f, err := l.fs.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("metastore: write %s: %w", tmp, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && l.curOK {
		err = l.fs.Rename(l.path, l.path+PrevSuffix)
	}
	if err != nil {
		_ = l.fs.Remove(tmp)
		return fmt.Errorf("metastore: write generation %d to %s: %w", gen, tmp, err)
	}
	if err := l.fs.Rename(tmp, l.path); err != nil {
		l.curOK = false // rotated away: only the previous generation is on disk
		_ = l.fs.Remove(tmp)
		return fmt.Errorf("metastore: install generation %d as %s: %w", gen, l.path, err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		l.curOK = false
		return fmt.Errorf("metastore: sync %s: %w", l.dir, err)
	}
	l.gen, l.curOK = gen, true
	if len(l.markers) > 0 { // the state written includes their deletions
		for _, m := range l.markers {
			_ = l.fs.Remove(filepath.Join(l.dir, m))
		}
		l.markers = nil
	}
	return nil
}

// isNoSpace reports a write that failed for lack of space or quota.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// markerName is the name of the deletion marker of a topic.
func markerName(id TopicID) string {
	return LocalFileName + deleteMarkerInfix + hex.EncodeToString(id[:])
}

// listMarkers lists the deletion markers in the store's directory.
func (l *Local) listMarkers() ([]string, error) {
	ents, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return nil, fmt.Errorf("metastore: %s: %w", l.dir, err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), LocalFileName+deleteMarkerInfix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// writeMarker records the deletion of the topic with id in an empty file:
// a directory entry and an inode, no data blocks, so it can be made on a
// file system with no free space left. Caller holds mu.
func (l *Local) writeMarker(id TopicID) error {
	name := markerName(id)
	f, err := l.fs.OpenFile(filepath.Join(l.dir, name), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("metastore: deletion marker %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("metastore: deletion marker %s: %w", name, err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("metastore: deletion marker %s: %w", name, err)
	}
	l.markers = append(l.markers, name)
	return nil
}

// applyMarkers applies the deletions recorded by marker files at open:
// the topic with the marker's id, if still live, becomes a pending
// deletion. The markers go once a generation holding that is written.
func (l *Local) applyMarkers(markers []string) {
	for _, m := range markers {
		idHex := strings.TrimPrefix(m, LocalFileName+deleteMarkerInfix)
		var id TopicID
		if b, err := hex.DecodeString(idHex); err != nil || len(b) != len(id) {
			l.log.Warn("ignoring a malformed deletion marker", "file", filepath.Join(l.dir, m))
			continue
		} else {
			copy(id[:], b)
		}
		l.markers = append(l.markers, m)
		for name, t := range l.state.Topics {
			if t.ID == id {
				l.log.Warn("finishing a topic deletion recorded while the metadata could not be written", "topic", name, "marker", m)
				deleteTopicIn(&l.state, name)
			}
		}
	}
	if err := l.persist(); err != nil {
		l.log.Warn("writing the metadata after applying deletion markers failed; the next change retries", "err", err)
	}
}

// mutate applies fn to the state and persists it, restoring the previous
// state if persisting fails.
func (l *Local) mutate(fn func(s *localState) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	prev := cloneState(&l.state)
	if err := fn(&l.state); err != nil {
		return err
	}
	if err := l.persist(); err != nil {
		l.state = prev
		return err
	}
	return nil
}

func cloneTopic(t *Topic) Topic {
	c := *t
	c.Configs = maps.Clone(t.Configs)
	return c
}

func cloneState(s *localState) localState {
	c := *s
	c.Topics = make(map[string]*Topic, len(s.Topics))
	for k, t := range s.Topics {
		tc := cloneTopic(t)
		c.Topics[k] = &tc
	}
	if s.PendingDeletions != nil {
		c.PendingDeletions = make(map[string]*Topic, len(s.PendingDeletions))
		for k, t := range s.PendingDeletions {
			tc := cloneTopic(t)
			c.PendingDeletions[k] = &tc
		}
	}
	if s.BrokerConfigs != nil {
		c.BrokerConfigs = make(map[string]map[string]string, len(s.BrokerConfigs))
		for k, m := range s.BrokerConfigs {
			c.BrokerConfigs[k] = maps.Clone(m)
		}
	}
	c.Acls = slices.Clone(s.Acls)
	if s.ClientQuotas != nil {
		c.ClientQuotas = make(map[string]map[string]float64, len(s.ClientQuotas))
		for k, m := range s.ClientQuotas {
			c.ClientQuotas[k] = maps.Clone(m)
		}
	}
	if s.ScramUsers != nil {
		c.ScramUsers = make(map[string]map[string]string, len(s.ScramUsers))
		for k, m := range s.ScramUsers {
			c.ScramUsers[k] = maps.Clone(m)
		}
	}
	return c
}

func (l *Local) ClusterID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state.ClusterID
}

func sortedTopics(m map[string]*Topic) []Topic {
	out := make([]Topic, 0, len(m))
	for _, t := range m {
		out = append(out, cloneTopic(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (l *Local) Topics() []Topic {
	l.mu.Lock()
	defer l.mu.Unlock()
	return sortedTopics(l.state.Topics)
}

func (l *Local) CreateTopic(t Topic) error {
	return l.mutate(func(s *localState) error {
		if _, ok := s.Topics[t.Name]; ok {
			return ErrTopicExists
		}
		if _, ok := s.PendingDeletions[t.Name]; ok {
			return ErrTopicExists
		}
		tc := cloneTopic(&t)
		s.Topics[t.Name] = &tc
		return nil
	})
}

// DeleteTopic moves a live topic to the pending deletions. When the new
// generation cannot be written for lack of space (a full disk is when
// deleting a topic matters most), the deletion is recorded instead in an
// empty marker file, which needs no data blocks, and applied by the next
// open; the next generation written includes it and removes the marker.
func (l *Local) DeleteTopic(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	t, ok := l.state.Topics[name]
	if !ok {
		return ErrUnknownTopic
	}
	prev := cloneState(&l.state)
	deleteTopicIn(&l.state, name)
	err := l.persist()
	if err == nil {
		return nil
	}
	if !isNoSpace(err) {
		l.state = prev
		return err
	}
	if merr := l.writeMarker(t.ID); merr != nil {
		l.state = prev
		return errors.Join(err, merr)
	}
	l.log.Warn("no space to write the metadata; topic deletion recorded in a marker file", "topic", name, "err", err)
	return nil
}

// deleteTopicIn moves a live topic to the pending deletions.
func deleteTopicIn(s *localState, name string) {
	t := s.Topics[name]
	delete(s.Topics, name)
	if s.PendingDeletions == nil {
		s.PendingDeletions = map[string]*Topic{}
	}
	if p := s.PendingDeletions[name]; p != nil && p.Partitions > t.Partitions {
		t.Partitions = p.Partitions // an older incarnation's logs may reach further
	}
	s.PendingDeletions[name] = t
}

func (l *Local) PendingDeletions() []Topic {
	l.mu.Lock()
	defer l.mu.Unlock()
	return sortedTopics(l.state.PendingDeletions)
}

func (l *Local) DeletionDone(name string) error {
	return l.mutate(func(s *localState) error {
		delete(s.PendingDeletions, name)
		return nil
	})
}

func (l *Local) SetTopicConfigs(name string, configs map[string]string) error {
	return l.mutate(func(s *localState) error {
		t, ok := s.Topics[name]
		if !ok {
			return ErrUnknownTopic
		}
		t.Configs = maps.Clone(configs)
		return nil
	})
}

func (l *Local) SetPartitionCount(name string, partitions int32) error {
	return l.mutate(func(s *localState) error {
		t, ok := s.Topics[name]
		if !ok {
			return ErrUnknownTopic
		}
		if partitions < t.Partitions {
			return fmt.Errorf("%w: topic %s has %d partitions, asked for %d", ErrPartitionCount, name, t.Partitions, partitions)
		}
		t.Partitions = partitions
		return nil
	})
}

func (l *Local) BrokerConfigs(resource string) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.state.BrokerConfigs[resource])
}

func (l *Local) SetBrokerConfigs(resource string, configs map[string]string) error {
	return l.mutate(func(s *localState) error {
		if s.BrokerConfigs == nil {
			s.BrokerConfigs = map[string]map[string]string{}
		}
		if len(configs) == 0 {
			delete(s.BrokerConfigs, resource)
		} else {
			s.BrokerConfigs[resource] = maps.Clone(configs)
		}
		return nil
	})
}

func (l *Local) NextProducerID() (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if l.nextPID >= l.state.ProducerIDBlock {
		prev := l.state.ProducerIDBlock
		l.state.ProducerIDBlock = l.nextPID + producerIDBlock
		if err := l.persist(); err != nil {
			l.state.ProducerIDBlock = prev
			return 0, err
		}
	}
	id := l.nextPID
	l.nextPID++
	return id, nil
}

func (l *Local) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return nil
}

// ScramCredential implements ScramStore.
func (l *Local) ScramCredential(user, mechanism string) (string, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.state.ScramUsers[user][mechanism]
	return v, ok, nil
}

// ScramCredentials implements ScramStore.
func (l *Local) ScramCredentials(user string) (map[string]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := maps.Clone(l.state.ScramUsers[user])
	if out == nil {
		out = map[string]string{}
	}
	return out, nil
}

// ScramUsers implements ScramStore.
func (l *Local) ScramUsers() ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.state.ScramUsers))
	for u := range l.state.ScramUsers {
		out = append(out, u)
	}
	sort.Strings(out)
	return out, nil
}

// SetScramCredentials implements ScramStore.
func (l *Local) SetScramCredentials(user string, creds map[string]string) error {
	return l.mutate(func(s *localState) error {
		if len(creds) == 0 {
			delete(s.ScramUsers, user)
			return nil
		}
		if s.ScramUsers == nil {
			s.ScramUsers = map[string]map[string]string{}
		}
		s.ScramUsers[user] = maps.Clone(creds)
		return nil
	})
}

// Acls implements AclStore.
func (l *Local) Acls() (map[acl.Pattern][]acl.Entry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return decodeACLs(l.state.Acls)
}

// UpdateAcls implements AclStore.
func (l *Local) UpdateAcls(patterns []acl.Pattern, fn func(p acl.Pattern, cur []acl.Entry) []acl.Entry) (map[acl.Pattern][]acl.Entry, error) {
	out := map[acl.Pattern][]acl.Entry{}
	err := l.mutate(func(s *localState) error {
		all, err := decodeACLs(s.Acls)
		if err != nil {
			return err
		}
		for _, p := range patterns {
			es := fn(p, slices.Clone(all[p]))
			out[p] = es
			if len(es) == 0 {
				delete(all, p)
			} else {
				all[p] = es
			}
		}
		s.Acls = encodeACLs(all)
		return nil
	})
	return out, err
}

func decodeACLs(stored []storedACLs) (map[acl.Pattern][]acl.Entry, error) {
	out := make(map[acl.Pattern][]acl.Entry, len(stored))
	for _, sa := range stored {
		rt, ok := acl.ParseResourceType(sa.ResourceType)
		if !ok {
			return nil, fmt.Errorf("metastore: ACLs of unknown resource type %q", sa.ResourceType)
		}
		pt := kmsg.ACLResourcePatternTypeLiteral
		if strings.EqualFold(sa.PatternType, "PREFIXED") {
			pt = kmsg.ACLResourcePatternTypePrefixed
		}
		p := acl.Pattern{Type: rt, Name: sa.Name, PatternType: pt}
		for _, a := range sa.Acls {
			op, ok1 := acl.ParseOperation(a.Operation)
			perm, ok2 := acl.ParsePermission(a.PermissionType)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("metastore: ACL of %s: unknown operation %q or permission %q", p, a.Operation, a.PermissionType)
			}
			out[p] = append(out[p], acl.Entry{Principal: a.Principal, Host: a.Host, Operation: op, Permission: perm})
		}
	}
	return out, nil
}

func encodeACLs(all map[acl.Pattern][]acl.Entry) []storedACLs {
	var out []storedACLs
	for p, es := range all {
		sa := storedACLs{ResourceType: acl.ResourceTypeName(p.Type), Name: p.Name, PatternType: acl.PatternTypeName(p.PatternType)}
		for _, e := range es {
			sa.Acls = append(sa.Acls, storedACL{Principal: e.Principal, Host: e.Host,
				Operation: acl.OperationName(e.Operation), PermissionType: acl.PermissionName(e.Permission)})
		}
		out = append(out, sa)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ResourceType != b.ResourceType {
			return a.ResourceType < b.ResourceType
		}
		if a.PatternType != b.PatternType {
			return a.PatternType < b.PatternType
		}
		return a.Name < b.Name
	})
	return out
}

// ClientQuotas implements QuotaStore.
func (l *Local) ClientQuotas() (map[string]map[string]float64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]map[string]float64, len(l.state.ClientQuotas))
	for k, m := range l.state.ClientQuotas {
		out[k] = maps.Clone(m)
	}
	return out, nil
}

// SetClientQuotas implements QuotaStore.
func (l *Local) SetClientQuotas(changes map[string]map[string]float64) error {
	return l.mutate(func(s *localState) error {
		for entity, vals := range changes {
			if len(vals) == 0 {
				delete(s.ClientQuotas, entity)
				continue
			}
			if s.ClientQuotas == nil {
				s.ClientQuotas = map[string]map[string]float64{}
			}
			s.ClientQuotas[entity] = maps.Clone(vals)
		}
		return nil
	})
}
