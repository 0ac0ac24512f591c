package httpapi

import (
	"encoding/json"
	"net/http"
)

// Health endpoints:
//
//   - /healthz is liveness: 200 while the process serves HTTP at all
//     (restart it only when this fails), with "shutting down" in the body
//     once shutdown began.
//   - /readyz is readiness: 200 while Options.Ready says so (the broker:
//     log dirs loaded, every listener accepting and, in cluster mode, the
//     ZooKeeper session up); 503 with the reasons otherwise, and during
//     shutdown.
type readiness struct {
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons,omitempty"`
}

func (o *Options) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	if o.Closing() {
		w.Write([]byte("ok: shutting down\n"))
		return
	}
	w.Write([]byte("ok\n"))
}

func (o *Options) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	ok, reasons := o.Ready()
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(readiness{Ready: ok, Reasons: reasons})
}
