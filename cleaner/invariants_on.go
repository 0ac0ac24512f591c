//go:build invariants

package cleaner

// invariants enables expensive self-checks after every pass (make test
// builds with -tags invariants).
const invariants = true
