// restart probe: not part of the repo.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func freeAddr() string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	return ln.Addr().String()
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func start(bin string, args []string, logf *os.File, env []string) *proc {
	fmt.Fprintf(logf, "==== %s %s\n", time.Now().Format(time.RFC3339Nano), bin)
	c := exec.Command(bin, args...)
	c.Stdout, c.Stderr = logf, logf
	c.Env = append(os.Environ(), env...)
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.Start(); err != nil {
		panic(err)
	}
	p := &proc{cmd: c, done: make(chan struct{})}
	go func() { c.Wait(); close(p.done) }()
	return p
}

func allAt(ctx context.Context, addr string, topics []string, end int64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RetryTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	qctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(qctx, topics...)
	if err != nil {
		return err
	}
	n := 0
	var bad error
	ends.Each(func(o kadm.ListedOffset) {
		n++
		if o.Err != nil || o.Offset != end {
			bad = fmt.Errorf("%s-%d: %d %v", o.Topic, o.Partition, o.Offset, o.Err)
		}
	})
	if bad != nil {
		return bad
	}
	if n == 0 {
		return fmt.Errorf("none")
	}
	return nil
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

func until(ctx context.Context, p *proc, addr string, topics []string) time.Duration {
	t0 := time.Now()
	for i := 0; i < 100000; i++ {
		if ping(addr) == nil && allAt(ctx, addr, topics, 1) == nil {
			return time.Since(t0)
		}
		select {
		case <-p.done:
			panic("exited")
		default:
		}
		time.Sleep(5 * time.Millisecond)
	}
	panic("timeout")
}

func main() {
	bins := flag.String("bins", "", "comma-separated kvlogd binaries")
	np := flag.Int("n", 10000, "partitions")
	rounds := flag.Int("rounds", 1, "restart rounds per binary")
	out := flag.String("out", "/tmp/probe", "dir")
	prof := flag.Bool("prof", false, "cpu profiles")
	flag.Parse()
	ctx := context.Background()
	os.MkdirAll(*out, 0o755)
	type state struct {
		bin, dir, addr, http, cfg string
		topics                    []string
		logf                      *os.File
	}
	var sts []*state
	for i, bin := range strings.Split(*bins, ",") {
		root := filepath.Join(*out, fmt.Sprintf("b%d", i))
		os.RemoveAll(root)
		os.MkdirAll(root, 0o755)
		st := &state{bin: bin, dir: filepath.Join(root, "data"), addr: freeAddr(), http: freeAddr(), cfg: filepath.Join(root, "server.properties")}
		os.WriteFile(st.cfg, []byte("log.flush.offset.checkpoint.interval.ms=1000\nkvlog.fsync.acks.all=false\n"), 0o644)
		st.logf, _ = os.Create(filepath.Join(root, "kvlogd.log"))
		sts = append(sts, st)
	}
	args := func(st *state) []string {
		return []string{"--config", st.cfg, "--listeners", "PLAINTEXT://" + st.addr, "--log-dirs", st.dir, "--http", st.http, "--log-level", "info"}
	}
	var env []string
	if *prof {
		env = []string{"KVLOG_CPUPROFILE=" + *out}
	}
	// setup each
	for i, st := range sts {
		p := start(st.bin, args(st), st.logf, nil)
		for j := 0; j < 2000 && ping(st.addr) != nil; j++ {
			time.Sleep(10 * time.Millisecond)
		}
		cl, _ := kgo.NewClient(kgo.SeedBrokers(st.addr), kgo.RequestTimeoutOverhead(10*time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.MaxBufferedRecords(1<<20))
		adm := kadm.NewClient(cl)
		adm.SetTimeoutMillis(600000)
		var recs []*kgo.Record
		val := bytes.Repeat([]byte("v"), 100)
		for c := 0; c < *np; c += 5000 {
			n := min(5000, *np-c)
			t := fmt.Sprintf("many-%d", c)
			r, err := adm.CreateTopic(ctx, int32(n), 1, nil, t)
			if err == nil {
				err = r.Err
			}
			if err != nil {
				panic(err)
			}
			st.topics = append(st.topics, t)
			for q := 0; q < n; q++ {
				recs = append(recs, &kgo.Record{Topic: t, Partition: int32(q), Value: val})
			}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			panic(err)
		}
		cl.Close()
		t0 := time.Now()
		p.cmd.Process.Signal(syscall.SIGTERM)
		<-p.done
		fmt.Printf("bin%d setup; shutdown %.3f\n", i, time.Since(t0).Seconds())
	}
	for r := 0; r < *rounds; r++ {
		order := make([]int, len(sts))
		for i := range order {
			order[i] = (i + r) % len(sts)
		}
		for _, i := range order {
			st := sts[i]
			syscall.Sync()
			p := start(st.bin, args(st), st.logf, env)
			clean := until(ctx, p, st.addr, st.topics)
			deadline := time.Now().Add(2500 * time.Millisecond)
			for time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			p.cmd.Process.Kill()
			<-p.done
			syscall.Sync()
			p = start(st.bin, args(st), st.logf, env)
			unclean := until(ctx, p, st.addr, st.topics)
			t0 := time.Now()
			p.cmd.Process.Signal(syscall.SIGTERM)
			<-p.done
			shut := time.Since(t0)
			fmt.Printf("round %d bin%d clean %.3f unclean %.3f shutdown %.3f\n", r, i, clean.Seconds(), unclean.Seconds(), shut.Seconds())
		}
	}
}
