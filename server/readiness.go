package server

// Readiness reports whether the broker should receive traffic, and why
// not: the log dirs are loaded once New returned; it is ready once every
// listener accepts (Start) and, in cluster mode, the ZooKeeper session is
// up; not during shutdown. The HTTP listener's /readyz serves it.
func (s *Server) Readiness() (bool, []string) {
	var reasons []string
	if !s.started.Load() {
		reasons = append(reasons, "listeners not accepting yet")
	}
	if s.closing.Load() {
		reasons = append(reasons, "shutting down")
	}
	if why := s.mode.notReady(); why != "" {
		reasons = append(reasons, why)
	}
	return len(reasons) == 0, reasons
}
