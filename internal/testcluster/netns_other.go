//go:build !linux

package testcluster

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"testing"
	"time"
)

// Net is Linux-only (network namespaces); elsewhere tests that need one skip.
type Net struct{}

// NetNode is one namespace with one address.
type NetNode struct{ Name, NS, IP string }

// NetAvailable reports why private network namespaces cannot be used here.
func NetAvailable() string { return "network namespaces need Linux" }

// NewNet skips the test.
func NewNet(t testing.TB, names ...string) *Net {
	t.Skip(NetAvailable())
	return nil
}

// Node is never reached.
func (n *Net) Node(name string) *NetNode { return nil }

// Command is never reached.
func (n *Net) Command(node, bin string, args ...string) *exec.Cmd { return nil }

// DialContext is never reached.
func (n *Net) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return nil, errors.New(NetAvailable())
}

// Dial is never reached.
func (n *Net) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	return nil, errors.New(NetAvailable())
}
