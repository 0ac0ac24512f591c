package engine

// Abandon releases the log's files without flushing, sealing, snapshotting
// or checkpointing anything, as a crash would leave them. Layers above the
// engine use it with vfs.CrashFS to simulate a power loss of a whole broker
// (replica tests); after Abandon the log behaves as closed.
func (l *Log) Abandon() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Swap(true) {
		return
	}
	l.wg.Wait()
	l.closeSegments()
	if l.ownHandles {
		l.handles.close()
	}
}
