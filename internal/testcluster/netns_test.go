package testcluster

import (
	"context"
	"net"
	"testing"
	"time"
)

// The Net's faults do what they say: a cut blocks a link both ways, a
// one-way drop blocks a TCP handshake whichever direction it drops, packet
// loss and a slow link keep the link usable, healing restores everything,
// and the bridge (the test's clients) is never cut.
func TestNetFaults(t *testing.T) {
	n := NewNet(t, "a", "b", "c")
	ln := map[string]net.Listener{}
	for _, node := range []string{"a", "b", "c"} {
		if err := n.Do(node, func() (err error) {
			ln[node], err = net.Listen("tcp", n.Node(node).IP+":7000")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		go func(l net.Listener) {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}(ln[node])
		t.Cleanup(func() { ln[node].Close() })
	}
	connects := func(from, to string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		defer cancel()
		var c net.Conn
		dial := func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, "tcp", n.Node(to).IP+":7000")
			return err
		}
		var err error
		if from == "" {
			c, err = n.DialContext(ctx, "tcp", n.Node(to).IP+":7000")
		} else {
			err = n.Do(from, dial)
		}
		if c != nil {
			c.Close()
		}
		return err == nil
	}
	apply := func() {
		t.Helper()
		if err := n.Apply(); err != nil {
			t.Fatal(err)
		}
	}
	want := func(from, to string, ok bool) {
		t.Helper()
		if got := connects(from, to); got != ok {
			t.Errorf("%s → %s connects = %v, want %v (faults: %s)", from, to, got, ok, n.Describe())
		}
	}
	want("a", "b", true)
	want("", "a", true)

	n.Cut("a", "b")
	apply()
	want("a", "b", false)
	want("b", "a", false)
	want("a", "c", true)
	want("", "a", true)
	want("", "b", true)

	n.HealAll()
	n.Drop("a", "b") // a's SYN never arrives
	apply()
	want("a", "b", false)
	n.HealAll()
	n.Drop("b", "a") // b's SYN-ACK never arrives
	apply()
	want("a", "b", false)
	want("b", "c", true)

	n.HealAll()
	n.Isolate("c", "a", "b")
	apply()
	want("a", "c", false)
	want("c", "b", false)
	want("a", "b", true)
	want("", "c", true)

	n.HealAll()
	n.Loss("b", 10)
	n.Slow("b")
	apply()
	ok := false
	for i := 0; i < 10 && !ok; i++ {
		ok = connects("a", "b")
	}
	if !ok {
		t.Errorf("a → b through 10%% loss and a slow link never connected")
	}

	n.HealAll()
	apply()
	want("a", "b", true)
	want("b", "a", true)
	want("c", "a", true)
	if d := n.Describe(); d != "" {
		t.Errorf("faults after healing: %q", d)
	}
}
