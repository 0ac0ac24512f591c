// Package wire is the Kafka protocol's framing, below the broker's
// handlers: it knows bytes and kmsg messages, never a Server, a topic or a
// configuration.
//
//   - frame.go: a request frame's header parsed by hand and its body
//     decoded with kmsg at the header's version, within the versions the
//     caller serves (ParseRequest); response frames (AppendResponse).
//   - framepool.go: reading a frame whose size prefix is only a claim
//     (ReadFrameBody grows the buffer as bytes arrive), and pooled frame
//     buffers for large produce requests.
//   - reqmem.go: the request memory budget across connections
//     (queued.max.request.bytes, Memory).
//   - fetch.go, sendfile.go: Fetch responses as encoded bytes plus engine
//     file ranges (EncodeFetch), sent with sendfile(2) on plaintext
//     connections, or gathered into a pooled buffer and encrypted on TLS
//     (WriteFetch).
//
// The connection loop that reads frames, runs handlers and writes
// responses in order is the broker's (package server, conn.go): it holds
// the SASL state, quotas and authorization of the connection. Limits and
// their Kafka counterparts: docs/limits-and-hostile-clients.md.
package wire
