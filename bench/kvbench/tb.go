package main

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// benchTB lets the benchmark program drive internal/testcluster (whose
// helpers take a testing.TB) outside `go test`. It implements the methods
// the harness calls; Fatal and Skip unwind with a panic that runTB turns
// into an error. The embedded (nil) testing.TB only supplies the interface's
// unexported method: any other method would be a nil call, so the set below
// must cover what internal/testcluster uses.
type benchTB struct {
	testing.TB
	name     string
	tmp      string
	mu       sync.Mutex
	cleanups []func()
	failed   bool
	logf     func(format string, args ...any)
}

type tbAbort struct {
	skip bool
	msg  string
}

func (t *benchTB) Helper()      {}
func (t *benchTB) Name() string { return t.name }
func (t *benchTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}
func (t *benchTB) TempDir() string {
	d, err := os.MkdirTemp(t.tmp, "cluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
func (t *benchTB) Log(args ...any)                 { t.logf("%s", fmt.Sprint(args...)) }
func (t *benchTB) Logf(format string, args ...any) { t.logf(format, args...) }
func (t *benchTB) Error(args ...any)               { t.setFailed(); t.Log(args...) }
func (t *benchTB) Errorf(format string, args ...any) {
	t.setFailed()
	t.Logf(format, args...)
}
func (t *benchTB) Fail()    { t.setFailed() }
func (t *benchTB) FailNow() { t.setFailed(); panic(tbAbort{msg: "FailNow"}) }
func (t *benchTB) Fatal(args ...any) {
	t.setFailed()
	panic(tbAbort{msg: fmt.Sprint(args...)})
}
func (t *benchTB) Fatalf(format string, args ...any) {
	t.setFailed()
	panic(tbAbort{msg: fmt.Sprintf(format, args...)})
}
func (t *benchTB) Skip(args ...any) { panic(tbAbort{skip: true, msg: fmt.Sprint(args...)}) }
func (t *benchTB) Skipf(format string, args ...any) {
	panic(tbAbort{skip: true, msg: fmt.Sprintf(format, args...)})
}
func (t *benchTB) SkipNow()      { panic(tbAbort{skip: true, msg: "skipped"}) }
func (t *benchTB) Skipped() bool { return false }
func (t *benchTB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}
func (t *benchTB) setFailed() {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}

// finish runs the cleanups, last registered first.
func (t *benchTB) finish() {
	t.mu.Lock()
	cs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// runTB calls fn with a benchTB and turns Fatal/Skip into errors; skipped
// reports a Skip (the harness found a prerequisite missing).
func runTB(name, tmp string, logf func(string, ...any), fn func(tb *benchTB)) (skipped bool, err error) {
	tb := &benchTB{name: name, tmp: tmp, logf: logf}
	defer tb.finish()
	defer func() {
		if p := recover(); p != nil {
			a, ok := p.(tbAbort)
			if !ok {
				panic(p)
			}
			skipped = a.skip
			err = fmt.Errorf("%s", a.msg)
		}
	}()
	fn(tb)
	return false, nil
}
