// Package wire is the Kafka protocol's framing, below the broker's
// handlers: it knows bytes and kmsg messages, never a Server, a topic or a
// configuration.
//
//   - frame.go: a request frame's header parsed by hand and its body
//     decoded with kmsg at the header's version, within the versions the
//     caller serves (ParseRequest); response frames (AppendResponse).
//   - framepool.go: reading a frame whose size prefix is only a claim
//     (ReadFrame checks it against the limit; ReadFrameBody grows the
//     buffer as bytes arrive and reserves request memory), and pooled
//     frame buffers for large produce requests.
//   - reqmem.go: the request memory budget across connections
//     (queued.max.request.bytes, Memory).
//   - fetch.go, sendfile.go: Fetch responses as encoded bytes plus engine
//     file ranges (EncodeFetch), sent with sendfile(2) on plaintext
//     connections, or gathered into a pooled buffer and encrypted on TLS
//     (WriteFetch); a reply without file ranges goes out in one write, and
//     one with little file data (smallCopy) is read into one buffer and
//     written at once.
//   - conn.go: a connection's frame loop (Conn): a reader hands each frame
//     to the broker's Handler, which queues the request (its Pending: the
//     place in the response order and the request memory it holds); a
//     writer answers the queued requests strictly in order as they
//     complete, and after a request fails only cancels the rest.
//
// What a frame means is the broker's (package server, conn.go: parsing
// against the served versions, SASL, authorization, quotas, the handlers);
// this package never sees a Server. Limits and their Kafka counterparts:
// docs/limits-and-hostile-clients.md.
package wire
