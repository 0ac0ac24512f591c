//go:build !invariants

package cleaner

const invariants = false
