package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Scenario 11: transactions. Produce: per cell (1 or 8 partitions; 1, 100
// or 10,000 records per transaction) the same records are written by an
// idempotent producer (acks=all, no transaction) and by a transactional one
// (BeginTransaction, the transaction's records, Flush, EndTransaction
// commit), each run to a fresh compacted topic, the two modes and the
// systems alternating in rotating rounds. Consume: per system one topic of
// 8 partitions written by a transactional producer (10,000 records per
// transaction, every tenth aborted) is read from the start under
// read_uncommitted and read_committed in alternating rounds; both read the
// whole log (a read_committed consumer receives the aborted batches too
// and drops them), so CPU per GB is per GB of the log, which is what the
// broker sends either way.

// txnCell is a produce cell of the scenario.
type txnCell struct {
	partitions int32
	perTxn     int
}

func (c txnCell) String() string {
	return fmt.Sprintf("p=%d %s records/txn", c.partitions, countName(c.perTxn))
}

func (c txnCell) shape() shape {
	return shape{partitions: c.partitions, valueLen: 100, keys: 1000, acks: "all", comp: "none"}
}

// txnConsumeCell names the consume measurements.
const txnConsumeCell = "consume p=8 10k records/txn, 10% aborted"

// txnProps are the broker settings of the scenario: one node, so the
// transaction log has one replica (Kafka's default is 3).
var txnProps = []string{"transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1"}

func scenTxn(ctx context.Context, r *runner) error {
	specs := r.available("txn", "kvlog", "kafka")
	ins, err := r.startAll(specs, txnProps...)
	if err != nil {
		return err
	}
	defer r.stopAll("txn", ins)
	type item struct {
		in  *instance
		txn bool
	}
	var items []item
	for _, in := range ins {
		items = append(items, item{in, false}, item{in, true})
	}
	for ci, cell := range r.cfg.txnCells {
		n := r.cfg.txnRecords
		if cell.perTxn == 1 {
			n = r.cfg.txnSmallRecords
		}
		logf("txn cell %d/%d: %s, %d records", ci+1, len(r.cfg.txnCells), cell, n)
		err := rotate(r.cfg.reps, items, func(rep int, it item) error {
			addr := []string{it.in.addr}
			topic := nextName("txn-")
			if err := createTopic(ctx, addr, topic, cell.partitions, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
				return err
			}
			defer deleteTopic(ctx, addr, topic)
			var (
				st   runStats
				err  error
				mode = "idempotent"
			)
			if it.txn {
				mode = "transactional"
				st, _, err = txnProduce(ctx, addr, topic, cell.shape(), n, cell.perTxn, 0, []int{it.in.p.pid})
			} else {
				st, err = kafkaProduce(ctx, addr, topic, cell.shape(), 0, n, []int{it.in.p.pid})
			}
			if err != nil {
				return fmt.Errorf("%s %s %s: %w", it.in.spec.name, mode, cell, err)
			}
			r.addRun("txn", cell.String(), it.in.spec.name+" "+mode, "", st)
			logf("  %-6s %-13s rep %d: %9.0f rec/s %7.1f MB/s  cpu %.2f s/GB", it.in.spec.name, mode, rep, st.recPerSec(), st.mbPerSec(), st.cpuPerGB())
			return nil
		})
		if err != nil {
			return err
		}
	}

	// read_committed against read_uncommitted.
	type loaded struct {
		in             *instance
		topic          string
		total, visible int64
		logBytes       int64
		committed      bool
	}
	var ls []*loaded
	cs := shape{partitions: 8, valueLen: 100, keys: 1_000_000, acks: "all", comp: "none"}
	for _, in := range ins {
		addr := []string{in.addr}
		topic := nextName("txn-consume-")
		if err := createTopic(ctx, addr, topic, cs.partitions, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
			return err
		}
		defer deleteTopic(ctx, addr, topic)
		n := r.cfg.txnConsumeRecords
		_, committed, err := txnProduce(ctx, addr, topic, cs, n, 10_000, 10, nil)
		if err != nil {
			return fmt.Errorf("%s: loading: %w", in.spec.name, err)
		}
		for _, c := range []bool{false, true} {
			// n records and the first transaction's one.
			ls = append(ls, &loaded{in: in, topic: topic, total: int64(n) + 1, visible: map[bool]int64{false: int64(n) + 1, true: committed}[c],
				logBytes: int64(n) * int64(cs.recordBytes()), committed: c})
		}
	}
	err = rotate(r.cfg.reps, ls, func(rep int, l *loaded) error {
		iso, name := kgo.ReadUncommitted(), "read_uncommitted"
		if l.committed {
			iso, name = kgo.ReadCommitted(), "read_committed"
		}
		st, err := txnConsume(ctx, []string{l.in.addr}, l.topic, iso, l.visible, []int{l.in.p.pid})
		if err != nil {
			return fmt.Errorf("%s %s: %w", l.in.spec.name, name, err)
		}
		st.bytes = l.logBytes // per GB of the log: the broker sends all of it either way
		r.addRun("txn", txnConsumeCell, l.in.spec.name+" "+name, "", st)
		logf("  %-6s %-16s rep %d: %9.0f rec/s %7.1f MB/s  cpu %.2f s/GB", l.in.spec.name, name, rep, st.recPerSec(), st.mbPerSec(), st.cpuPerGB())
		return nil
	})
	return err
}

// txnProduce writes n records of shape s to topic with a transactional
// producer, perTxn records per transaction (each flushed, then committed;
// with abortEvery > 0 every abortEvery-th aborted) and times it after a
// first committed transaction of one record. It returns the records
// committed too, that first one included.
func txnProduce(ctx context.Context, addr []string, topic string, s shape, n, perTxn, abortEvery int, pids []int) (runStats, int64, error) {
	cl, err := kafkaClient(addr, append(producerOpts(s, -1), kgo.DefaultProduceTopic(topic),
		kgo.TransactionalID(nextName("kvbench-txn-")), kgo.TransactionTimeout(time.Minute))...)
	if err != nil {
		return runStats{}, 0, err
	}
	defer cl.Close()
	keys, vals := keySet(s.keys), valuePool(s.valueLen)
	if err := cl.BeginTransaction(); err != nil {
		return runStats{}, 0, err
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: keys[0], Value: vals[0]}).FirstErr(); err != nil {
		return runStats{}, 0, fmt.Errorf("warm-up produce: %w", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return runStats{}, 0, fmt.Errorf("warm-up commit: %w", err)
	}
	const pool = 60_000
	free := make(chan *kgo.Record, pool)
	for i := 0; i < pool; i++ {
		free <- new(kgo.Record)
	}
	var (
		wg       sync.WaitGroup
		firstErr atomic.Pointer[error]
	)
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			firstErr.CompareAndSwap(nil, &err)
		}
		free <- r
		wg.Done()
	}
	committed := int64(1)
	m := meterCPU(pids...)
	start := time.Now()
	for i, t := 0, 0; i < n; t++ {
		if err := cl.BeginTransaction(); err != nil {
			return runStats{}, 0, err
		}
		k := min(perTxn, n-i)
		wg.Add(k)
		for j := 0; j < k; j, i = j+1, i+1 {
			r := <-free
			*r = kgo.Record{Key: keys[keyIndex(i, s.keys)], Value: vals[i%len(vals)]}
			cl.Produce(ctx, r, promise)
		}
		if err := cl.Flush(ctx); err != nil {
			return runStats{}, 0, err
		}
		wg.Wait()
		if p := firstErr.Load(); p != nil {
			return runStats{}, 0, fmt.Errorf("transactional produce: %w", *p)
		}
		commit := kgo.TryCommit
		if abortEvery > 0 && t%abortEvery == abortEvery-1 {
			commit = kgo.TryAbort
		} else {
			committed += int64(k)
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			return runStats{}, 0, fmt.Errorf("end transaction %d: %w", t, err)
		}
	}
	st := runStats{records: int64(n), bytes: int64(n) * int64(s.recordBytes()), elapsed: time.Since(start), cpu: m.seconds()}
	return st, committed, nil
}

// txnConsume reads topic from the start at isolation level iso until want
// records arrived, timed from the first poll.
func txnConsume(ctx context.Context, addr []string, topic string, iso kgo.IsolationLevel, want int64, pids []int) (runStats, error) {
	cl, err := kafkaClient(addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso),
		kgo.FetchMaxBytes(fetchMaxBytes), kgo.FetchMaxPartitionBytes(fetchMaxPartBytes), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return runStats{}, err
	}
	defer cl.Close()
	var st runStats
	m := meterCPU(pids...)
	start := time.Now()
	for st.records < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return st, fmt.Errorf("consume %s: %d of %d records read: %w", topic, st.records, want, ctx.Err())
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) { ferr = fmt.Errorf("fetch partition %d: %w", p, err) })
		if ferr != nil {
			return st, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			st.records++
			st.bytes += int64(len(r.Key) + len(r.Value))
		})
	}
	st.elapsed = time.Since(start)
	st.cpu = m.seconds()
	if st.records != want {
		return st, fmt.Errorf("consume %s: %d records read, want %d", topic, st.records, want)
	}
	return st, nil
}

func reportTxn(r *runner, w *md) {
	w.p("Transactional produce against idempotent produce of the same records (acks=all, 100-byte values, 1,000 keys), each run to a fresh compacted topic; modes and systems alternate in rotating rounds. A transaction is BeginTransaction, its records, Flush, EndTransaction (commit), so a transaction of one record is a round of AddPartitionsToTxn, Produce, EndTxn and the markers. The ratio is the median over rounds of transactional / idempotent measured in the same round. CPU s/GB is the broker's CPU per GB of payload.")
	var sysNames []string
	for _, sys := range r.st.systems("txn", "") {
		name, _, _ := strings.Cut(sys, " ")
		if !slices.Contains(sysNames, name) {
			sysNames = append(sysNames, name)
		}
	}
	var rows [][]string
	for _, c := range r.st.cells("txn") {
		if c == txnConsumeCell || c == "peak RSS" {
			continue
		}
		for _, sys := range sysNames {
			idem, txn := r.st.get("txn", c, sys+" idempotent", "rec/s"), r.st.get("txn", c, sys+" transactional", "rec/s")
			if len(idem) == 0 && len(txn) == 0 {
				continue
			}
			rows = append(rows, []string{c, sys, mr(idem), mr(txn), ratioText(pairedRatio(txn, idem)),
				fnum(median(r.st.get("txn", c, sys+" idempotent", "cpu/GB"))), fnum(median(r.st.get("txn", c, sys+" transactional", "cpu/GB"))),
				fx(pairedRatio(r.st.get("txn", c, sys+" transactional", "cpu/GB"), r.st.get("txn", c, sys+" idempotent", "cpu/GB")))})
		}
	}
	w.table([]string{"Cell", "System", "idempotent records/s", "transactional records/s", "txn / idempotent", "CPU s/GB idempotent", "CPU s/GB transactional", "CPU txn / idempotent"}, rows)
	w.h(3, txnConsumeCell)
	w.p("One topic per system written by a transactional producer, read from the start under each isolation level in alternating rounds. read_committed returns the committed 90%%; both receive the whole log (aborted batches included, which a read_committed client drops), so MB/s and CPU s/GB are per byte of the log. kvlog's goal: read_committed keeps zero-copy, its CPU per GB within 1.2× of read_uncommitted.")
	rows = nil
	for _, sys := range sysNames {
		ru, rc := sys+" read_uncommitted", sys+" read_committed"
		if len(r.st.get("txn", txnConsumeCell, ru, "rec/s")) == 0 {
			continue
		}
		rows = append(rows, []string{sys,
			mr(r.st.get("txn", txnConsumeCell, ru, "MB/s")), mr(r.st.get("txn", txnConsumeCell, rc, "MB/s")),
			fx(pairedRatio(r.st.get("txn", txnConsumeCell, rc, "MB/s"), r.st.get("txn", txnConsumeCell, ru, "MB/s"))),
			fnum(median(r.st.get("txn", txnConsumeCell, ru, "cpu/GB"))), fnum(median(r.st.get("txn", txnConsumeCell, rc, "cpu/GB"))),
			fx(pairedRatio(r.st.get("txn", txnConsumeCell, rc, "cpu/GB"), r.st.get("txn", txnConsumeCell, ru, "cpu/GB")))})
	}
	w.table([]string{"System", "read_uncommitted MB/s", "read_committed MB/s", "committed / uncommitted", "CPU s/GB uncommitted", "CPU s/GB committed", "CPU committed / uncommitted"}, rows)
	reportTxnRestore(r, w)
}

// ratioText is a ratio with the precision of its size (fx rounds small
// ones to 0.00×).
func ratioText(v float64) string {
	if s := fnum(v); s != "–" {
		return s + "×"
	}
	return "–"
}
