package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// state is what a report is made from, saved as raw/state.json beside
// raw/results.json, so that `kvbench -from <results dir>` can write the
// report and charts again (after a change to the report's layout) without
// rerunning anything.
type state struct {
	Mode        string
	Reps        int
	Started     time.Time
	Elapsed     time.Duration
	Notes       map[string][]string
	NotRun      []notRun
	Profiles    []profileTop
	RanScen     []string
	Durs        map[string]time.Duration
	CleanerWhy  string
	NatsVersion string
	Env         map[string]string
	// Apache Kafka.
	KafkaVersion, Kafka39Version, JavaVersion, KafkaWhy string
	KafkaEverywhere                                     bool
	Producer                                            string // produce load generator
	Consumer                                            string // consume scenario's consumer
}

func (r *runner) saveState() error {
	st := state{Mode: r.cfg.mode, Reps: r.cfg.reps, Started: r.started, Elapsed: r.elapsed, Notes: r.notes, NotRun: r.notRun,
		Profiles: r.profiles, RanScen: r.ranScen, Durs: r.durs, CleanerWhy: r.cleanerWhy, NatsVersion: r.natsVersion, Env: r.env,
		KafkaVersion: r.kafkaVersion, Kafka39Version: r.kafka39Version, JavaVersion: r.javaVersion, KafkaWhy: r.kafkaWhy, KafkaEverywhere: r.cfg.kafkaEverywhere, Producer: r.cfg.producer, Consumer: r.cfg.consumer}
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.raw, "state.json"), b, 0o644)
}

// regenerate rewrites dir's report.md and charts from its raw data.
func regenerate(dir string) error {
	dir, _ = filepath.Abs(dir)
	b, err := os.ReadFile(filepath.Join(dir, "raw", "state.json"))
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("state.json: %w", err)
	}
	cfg := configFor(st.Mode)
	cfg.reps = st.Reps
	r := &runner{cfg: cfg, out: dir, raw: filepath.Join(dir, "raw"), st: newStore(), notes: st.Notes, notRun: st.NotRun, profiles: st.Profiles,
		ranScen: st.RanScen, durs: st.Durs, cleanerWhy: st.CleanerWhy, natsVersion: st.NatsVersion, env: st.Env,
		started: st.Started, elapsed: st.Elapsed, charts: map[string][]string{},
		kafkaVersion: st.KafkaVersion, kafka39Version: st.Kafka39Version, javaVersion: st.JavaVersion, kafkaWhy: st.KafkaWhy, kafkaCP: "from raw data"}
	cfg.kafkaEverywhere = st.KafkaEverywhere
	// Runs saved before the generators were recorded used franz-go.
	cfg.producer, cfg.consumer = cmp.Or(st.Producer, genKgo), cmp.Or(st.Consumer, genKgo)
	if r.notes == nil {
		r.notes = map[string][]string{}
	}
	if err := r.st.readJSON(filepath.Join(r.raw, "results.json")); err != nil {
		return err
	}
	path, err := r.writeReport()
	if err == nil {
		logf("report: %s", path)
	}
	return err
}
