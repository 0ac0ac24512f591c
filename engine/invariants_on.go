//go:build invariants

package engine

// invariants enables expensive self-checks (make test builds with
// -tags invariants).
const invariants = true
