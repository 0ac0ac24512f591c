//go:build !linux

package config

// machineMemory is the machine's physical memory in bytes, 0 if unknown.
func machineMemory() int64 { return 0 }
