// Package testcluster starts real ZooKeeper servers and kvlogd processes for
// tests: a ZooKeeper on a free loopback port with a temp data dir (the
// Debian package's jars), and clusters of kvlogd brokers pointed at it, each
// torn down when the test ends.
package testcluster

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// zkJars are the jars ZooKeeperServerMain needs, from /usr/share/java.
var zkJars = []string{
	"zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-simple.jar",
	"netty-handler.jar", "netty-common.jar", "netty-buffer.jar", "netty-transport.jar", "netty-codec.jar",
	"netty-resolver.jar", "netty-transport-native-epoll.jar", "netty-transport-native-unix-common.jar",
	"metrics-core.jar", "commons-cli.jar",
}

// ZooKeeper is a running standalone ZooKeeper server.
type ZooKeeper struct {
	Addr string // 127.0.0.1:port, or the node's address in a Net
	Dir  string
	dial func(network, addr string, timeout time.Duration) (net.Conn, error)
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

// ZooKeeperAvailable reports why ZooKeeper cannot be started here ("" if it can).
func ZooKeeperAvailable() string {
	if _, err := exec.LookPath("java"); err != nil {
		return "java not installed"
	}
	if _, err := os.Stat("/usr/share/java/zookeeper.jar"); err != nil {
		return "Debian package zookeeper not installed (make tools)"
	}
	return ""
}

// StartZooKeeper starts a ZooKeeper (tickTime 500 ms, so sessions may be as
// short as 1 s) and stops it when the test ends. It skips the test when
// ZooKeeper is not installed.
func StartZooKeeper(t testing.TB) *ZooKeeper {
	t.Helper()
	if why := ZooKeeperAvailable(); why != "" {
		t.Skip("ZooKeeper unavailable: " + why)
	}
	dir := t.TempDir()
	zk, err := startZooKeeper(dir, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zk.Stop)
	return zk
}

// StartZooKeeperIn starts a ZooKeeper in node of n, listening on the
// node's address, port 2181.
func StartZooKeeperIn(t testing.TB, n *Net, node string) *ZooKeeper {
	t.Helper()
	if why := ZooKeeperAvailable(); why != "" {
		t.Skip("ZooKeeper unavailable: " + why)
	}
	zk, err := startZooKeeper(t.TempDir(), n, node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zk.Stop)
	return zk
}

// Dial opens a connection to the server's network (a Net's bridge, or
// loopback).
func (zk *ZooKeeper) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	if zk.dial != nil {
		return zk.dial(network, addr, timeout)
	}
	return net.DialTimeout(network, addr, timeout)
}

// FreePort returns a free 127.0.0.1 port.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func startZooKeeper(dir string, n *Net, node string) (*ZooKeeper, error) {
	host, port := "127.0.0.1", 2181
	if n == nil {
		var err error
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	} else {
		host = n.Node(node).IP
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`tickTime=500
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%d
clientPortAddress=%s
maxClientCnxns=0
minSessionTimeout=1000
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
`, data, port, host)
	cfgPath := filepath.Join(dir, "zoo.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	var cp []string
	for _, j := range zkJars {
		p := filepath.Join("/usr/share/java", j)
		if _, err := os.Stat(p); err == nil {
			cp = append(cp, p)
		}
	}
	zk := &ZooKeeper{Addr: net.JoinHostPort(host, fmt.Sprint(port)), Dir: dir, done: make(chan struct{})}
	args := []string{"-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dzookeeper.admin.enableServer=false", "-Dzookeeper.jmx.log4j.disable=true",
		"-cp", strings.Join(cp, ":"), "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfgPath}
	if n != nil {
		zk.dial = n.Dial
		zk.cmd = n.Command(node, "java", args...)
	} else {
		zk.cmd = exec.Command("java", args...)
	}
	zk.cmd.Stdout = &lockedWriter{zk}
	zk.cmd.Stderr = &lockedWriter{zk}
	zk.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := zk.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		zk.cmd.Wait()
		close(zk.done)
	}()
	deadline := time.Now().Add(120 * time.Second) // a loaded machine starts the JVM slowly
	for {
		if ruok(zk) && sessionOK(zk, 5*time.Second) {
			return zk, nil
		}
		select {
		case <-zk.done:
			return nil, fmt.Errorf("zookeeper exited at start-up:\n%s", zk.Output())
		default:
		}
		if time.Now().After(deadline) {
			zk.Stop()
			return nil, fmt.Errorf("zookeeper did not start in 120s:\n%s", zk.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sessionOK reports whether a client session can be established.
func sessionOK(srv *ZooKeeper, timeout time.Duration) bool {
	c, events, err := zk.Connect([]string{srv.Addr}, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(nopLogger{}), zk.WithDialer(srv.Dial))
	if err != nil {
		return false
	}
	defer c.Close()
	t := time.NewTimer(max(timeout, time.Second))
	defer t.Stop()
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return true
			}
		case <-t.C:
			return false
		}
	}
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

func ruok(srv *ZooKeeper) bool {
	c, err := srv.Dial("tcp", srv.Addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ruok")); err != nil {
		return false
	}
	b := make([]byte, 4)
	n, _ := c.Read(b)
	return string(b[:n]) == "imok"
}

type lockedWriter struct{ zk *ZooKeeper }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.zk.mu.Lock()
	defer w.zk.mu.Unlock()
	if w.zk.out.Len() < 4<<20 {
		w.zk.out.Write(p)
	}
	return len(p), nil
}

// Output is what the server printed so far.
func (zk *ZooKeeper) Output() string {
	zk.mu.Lock()
	defer zk.mu.Unlock()
	return zk.out.String()
}

// Stop kills the server and waits for it.
func (zk *ZooKeeper) Stop() {
	select {
	case <-zk.done:
		return
	default:
	}
	zk.cmd.Process.Kill()
	<-zk.done
}
