package server

import (
	"encoding/json"
	"net/http"
)

// Health endpoints on the HTTP listener:
//
//   - /healthz is liveness: 200 while the process serves HTTP at all
//     (restart it only when this fails), with "shutting down" in the body
//     once shutdown began.
//   - /readyz is readiness: 200 once the log dirs are loaded (New), every
//     listener accepts (Start) and, in cluster mode, the ZooKeeper
//     session is up; 503 with the reasons otherwise, and during shutdown.
type readiness struct {
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons,omitempty"`
}

// Readiness reports whether the broker should receive traffic, and why
// not.
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

func (s *Server) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	if s.closing.Load() {
		w.Write([]byte("ok: shutting down\n"))
		return
	}
	w.Write([]byte("ok\n"))
}

func (s *Server) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	ok, reasons := s.Readiness()
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(readiness{Ready: ok, Reasons: reasons})
}
