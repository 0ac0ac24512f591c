package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvlog/kvlog/internal/testbroker"
)

// tourMarker precedes each documented shell block that TestReadmeTour runs.
const tourMarker = "<!-- tour:"

// tourCommand is one command of a tour block (continuation lines joined)
// and the output its "# →" comment promises ("" when none).
type tourCommand struct {
	line, want string
}

// tourBlocks reads the marked ```sh blocks of a Markdown file.
func tourBlocks(t *testing.T, path string) [][]tourCommand {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]tourCommand
	text := string(b)
	for {
		i := strings.Index(text, tourMarker)
		if i < 0 {
			break
		}
		text = text[i:]
		start := strings.Index(text, "```sh\n")
		if start < 0 {
			t.Fatalf("%s: a tour marker without a ```sh block", path)
		}
		text = text[start+len("```sh\n"):]
		end := strings.Index(text, "```\n")
		var cmds []tourCommand
		pending := ""
		for _, l := range strings.Split(text[:end], "\n") {
			if pending != "" {
				l = pending + " " + strings.TrimSpace(l)
				pending = ""
			}
			if strings.HasSuffix(strings.TrimSpace(l), "|") {
				pending = l
				continue
			}
			trimmed := strings.TrimSpace(l)
			if trimmed == "" || strings.HasPrefix(trimmed, "#") {
				continue
			}
			c := tourCommand{line: l}
			if k := strings.Index(l, "# →"); k >= 0 {
				c.line, c.want = l[:k], strings.TrimSpace(l[k+len("# →"):])
			}
			cmds = append(cmds, c)
		}
		blocks = append(blocks, cmds)
		text = text[end:]
	}
	if len(blocks) == 0 {
		t.Fatalf("%s has no tour block", path)
	}
	return blocks
}

// TestReadmeTour runs the commands of the tours in README.md and
// examples/README.md against a real kvlogd started as `make run` starts it
// (data in ./data of the working directory), in order, with bash: each must
// succeed, and print what its "# →" comment says ("\n" for a line break).
// make and go lines are skipped (the test provides bin/kvlog and the
// broker); the broker's address replaces 127.0.0.1:9092, its HTTP
// listener's 127.0.0.1:9644.
func TestReadmeTour(t *testing.T) {
	if os.Getenv("KVLOG_SKIP_BROKER") != "" {
		t.Skip("KVLOG_SKIP_BROKER set")
	}
	for _, doc := range []string{"../../README.md", "../../examples/README.md"} {
		t.Run(strings.TrimPrefix(doc, "../../"), func(t *testing.T) {
			work := t.TempDir()
			b := testbroker.Start(t, testbroker.Options{MakeRun: true, WorkDir: work, LogLevel: "warn"})
			binDir := filepath.Join(work, "bin")
			if err := os.MkdirAll(binDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(kvlogBinary(t), filepath.Join(binDir, "kvlog")); err != nil {
				t.Fatal(err)
			}
			for _, block := range tourBlocks(t, doc) {
				for _, c := range block {
					first := strings.Fields(c.line)[0]
					if first == "make" || first == "go" {
						continue
					}
					if first == "kcat" || strings.Contains(c.line, "| kcat") {
						if _, err := exec.LookPath("kcat"); err != nil {
							t.Logf("kcat not installed (make tools): skipping %s", c.line)
							continue
						}
					}
					if first == "curl" {
						if _, err := exec.LookPath("curl"); err != nil {
							t.Logf("curl not installed: skipping %s", c.line)
							continue
						}
					}
					line := strings.ReplaceAll(c.line, "127.0.0.1:9092", b.Addr)
					line = strings.ReplaceAll(line, "127.0.0.1:9644", b.HTTP)
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", line)
					cmd.Dir = work
					cmd.Env = append(os.Environ(), "KVLOG_BOOTSTRAP="+b.Addr, "PATH="+binDir+":"+os.Getenv("PATH"), "KVLOG_CONFIG="+filepath.Join(work, "profiles.json"))
					var out, errb bytes.Buffer
					cmd.Stdout, cmd.Stderr = &out, &errb
					err := cmd.Run()
					cancel()
					if err != nil {
						t.Fatalf("%s: %s\n%v\nstdout:\n%s\nstderr:\n%s", doc, c.line, err, out.String(), errb.String())
					}
					if c.want == "" {
						continue
					}
					got := strings.TrimSpace(out.String())
					if got == "" {
						got = strings.TrimSpace(errb.String())
					}
					if want := strings.ReplaceAll(c.want, `\n`, "\n"); got != want {
						t.Errorf("%s: %s\nprints %q, the comment says %q", doc, strings.TrimSpace(c.line), got, want)
					}
				}
			}
		})
	}
}
