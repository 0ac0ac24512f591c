package bench

import (
	"context"
	"crypto/x509/pkix"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// listenerView is one listener of a kvlogd as a broker of the harness:
// the same process (so the same CPU counters) reached through another
// listener with its client options.
type listenerView struct {
	k     *kvlogd
	label string
	at    string
	opts  []kgo.Opt
}

func (v *listenerView) name() string                         { return v.label }
func (v *listenerView) addr() string                         { return v.at }
func (v *listenerView) cpuSeconds() (float64, float64, bool) { return v.k.cpuSeconds() }
func (v *listenerView) close()                               {}
func (v *listenerView) clientOpts() []kgo.Opt                { return v.opts }

// BenchmarkSecurity compares one kvlogd's PLAINTEXT listener with its
// SASL_SSL listener (TLS 1.3, SCRAM-SHA-512) on the same workload as
// BenchmarkVsKfake, in alternating rounds of the same run: produce and
// consume records per second and broker CPU seconds per GB of key+value
// payload. On TLS the fetch path cannot use sendfile (record batches are
// read into a buffer and encrypted), so consume shows the cost of
// encryption plus the lost zero-copy; produce only the encryption.
//
//	go test -run '^$' -bench Security -benchtime 1x ./bench
//
// KVLOG_BENCH_RECORDS and KVLOG_BENCH_ROUNDS size it, as for
// BenchmarkVsKfake.
func BenchmarkSecurity(b *testing.B) {
	n := envInt("KVLOG_BENCH_RECORDS", 300_000)
	rounds := envInt("KVLOG_BENCH_ROUNDS", 7)
	for b.Loop() {
		ca := testbroker.NewCA(b, "bench CA")
		cert := ca.Issue(b, pkix.Name{CommonName: "localhost"})
		secure := freeAddr(b)
		k := startKvlogdListeners(b, "kvlogd", ",SASL_SSL://"+secure,
			"listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512",
			"ssl.keystore.location="+cert.File,
			"kvlog.fsync.acks.all=false")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		adm, err := kgo.NewClient(kgo.SeedBrokers(k.addr()))
		if err != nil {
			b.Fatal(err)
		}
		res, err := kadm.NewClient(adm).AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "bench", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "bench-pw"}})
		adm.Close()
		cancel()
		if err != nil || res.Error() != nil {
			b.Fatalf("creating the SCRAM user: %v %v", err, res.Error())
		}
		brokers := []broker{
			&listenerView{k: k, label: "plaintext", at: k.addr()},
			&listenerView{k: k, label: "sasl_ssl", at: secure, opts: []kgo.Opt{
				kgo.DialTLSConfig(ca.TLS(b, nil)),
				kgo.SASL(scram.Auth{User: "bench", Pass: "bench-pw"}.AsSha512Mechanism()),
			}},
		}
		out := compare(b, brokers, 4, n, rounds)
		k.close()
		prod := func(r roundResult) float64 { return r.produceRate }
		cons := func(r roundResult) float64 { return r.consumeRate }
		med := func(name string, f func(roundResult) float64) float64 {
			var xs []float64
			for _, r := range out[name].rounds {
				xs = append(xs, f(r))
			}
			return median(xs)
		}
		for _, name := range []string{"plaintext", "sasl_ssl"} {
			r := out[name]
			b.ReportMetric(med(name, prod), name+"-produce-rec/s")
			b.ReportMetric(med(name, cons), name+"-consume-rec/s")
			b.ReportMetric(r.produceSched/r.prodGB, name+"-cpu-s/GB-produced")
			b.ReportMetric(r.consumeSched/r.fetchGB, name+"-cpu-s/GB-fetched")
		}
		var pr, cr []float64
		for i, r := range out["sasl_ssl"].rounds {
			pr = append(pr, r.produceRate/out["plaintext"].rounds[i].produceRate)
			cr = append(cr, r.consumeRate/out["plaintext"].rounds[i].consumeRate)
		}
		b.ReportMetric(median(pr), "sasl_ssl/plaintext-produce-x")
		b.ReportMetric(median(cr), "sasl_ssl/plaintext-consume-x")
		fmt.Println()
	}
}
