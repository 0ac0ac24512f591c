// Package hygiene holds repository-wide checks of the test code, run by
// `go test` like any other test (it has no code of its own).
//
// TestNoSleepOrdersEvents keeps the timing rules of docs/testing.md true:
// every time.Sleep in a _test.go file is a step of a bounded poll (a loop
// bounded in real time or by a count), moves a testing/synctest bubble's
// fake clock, or is a pacing site listed with its reason in the test's
// allowlist; and no test asserts on real elapsed time (an if on
// time.Since or time.Until that fails the test).
package hygiene
