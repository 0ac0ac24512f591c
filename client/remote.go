package client

import "context"

// RemoteTable is a changelog table read remotely: no replay and no state
// in memory. Get asks the partition leader's key index (Lookup), writes
// go through a Writer, and GetAfter reads one's own write. It needs a
// kvlog broker's HTTP listener. Safe for concurrent use.
type RemoteTable struct {
	w    *Writer
	opts LookupOptions
}

// OpenRemote connects a Writer to brokers for topic (creating it with
// WithCreateTopic) and reads through the HTTP listener in lookup
// (lookup.HTTP is required).
func OpenRemote(ctx context.Context, brokers []string, topic string, lookup LookupOptions, opts ...Option) (*RemoteTable, error) {
	if _, err := lookup.base(); err != nil {
		return nil, err
	}
	w, err := NewWriter(ctx, brokers, topic, opts...)
	if err != nil {
		return nil, err
	}
	return &RemoteTable{w: w, opts: lookup}, nil
}

// Topic returns the table's topic.
func (t *RemoteTable) Topic() string { return t.w.Topic() }

// Get returns key's latest committed value; ok is false when the key has
// none.
func (t *RemoteTable) Get(ctx context.Context, key []byte) (value []byte, ok bool, err error) {
	res, err := Lookup(ctx, t.w.Topic(), key, t.opts)
	if err != nil {
		return nil, false, err
	}
	return res.Value, res.Found, nil
}

// GetAfter is Get once the record at pos (a Put's or Delete's Position)
// is committed: it sees that write or a later one.
func (t *RemoteTable) GetAfter(ctx context.Context, key []byte, pos Position) (value []byte, ok bool, err error) {
	o := t.opts
	o.Partition, o.Explicit = pos.Partition, true
	o.MinOffset, o.AtOffset = pos.Offset, true
	res, err := Lookup(ctx, t.w.Topic(), key, o)
	if err != nil {
		return nil, false, err
	}
	return res.Value, res.Found, nil
}

// Lookup returns key's latest committed record with its metadata.
func (t *RemoteTable) Lookup(ctx context.Context, key []byte) (LookupResult, error) {
	return Lookup(ctx, t.w.Topic(), key, t.opts)
}

// Put writes value under key (see Writer.Put).
func (t *RemoteTable) Put(ctx context.Context, key, value []byte) (Position, error) {
	return t.w.Put(ctx, key, value)
}

// Delete writes a tombstone for key (see Writer.Delete).
func (t *RemoteTable) Delete(ctx context.Context, key []byte) (Position, error) {
	return t.w.Delete(ctx, key)
}

// Close closes the writer.
func (t *RemoteTable) Close() { t.w.Close() }
