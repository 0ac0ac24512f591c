package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/kvlog/kvlog/client"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// output is the -o flag of commands with tabular output.
type output struct{ format string }

func (o *output) register(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "table", "output format: table or json")
}

func (o *output) check() error {
	switch o.format {
	case "table", "json":
		return nil
	}
	return usageErr("--output must be table or json, not %q", o.format)
}

func (o *output) json() bool { return o.format == "json" }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSONOneOrMany writes the one item of items as an object, or else
// the list (describe commands given one or several names).
func writeJSONOneOrMany[T any](w io.Writer, items []T) error {
	if len(items) == 1 {
		return writeJSON(w, items[0])
	}
	return writeJSON(w, items)
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(anySlice(header)...)
	}
	return t
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func (t *table) row(cols ...any) {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(t.tw, strings.Join(parts, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// connect returns a franz-go client and its admin wrapper once a broker
// answers.
func (a *app) connect(opts ...kgo.Opt) (*kgo.Client, *kadm.Client, error) {
	ctx, cancel := a.reqCtx()
	defer cancel()
	if err := a.checkBroker(ctx); err != nil {
		return nil, nil, err
	}
	if a.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(a.tls))
	}
	cl, err := client.Connect(ctx, a.brokers(), client.WithDialTimeout(a.timeout), client.WithKgoOptions(opts...))
	if err != nil {
		return nil, nil, err
	}
	return cl, kadm.NewClient(cl), nil
}

// admin connects (see connect) and returns the admin client with a context
// bounded by --timeout for the command's requests; done releases both.
func (a *app) admin() (ctx context.Context, adm *kadm.Client, done func(), err error) {
	cl, adm, err := a.connect()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := a.reqCtx()
	return ctx, adm, func() { cancel(); cl.Close() }, nil
}

// textOrBase64 renders bytes for JSON: the string itself when it is valid
// UTF-8, else nil and the base64 form is used by the caller.
func jsonBytes(b []byte) (text *string, isNull bool) {
	if b == nil {
		return nil, true
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, false
	}
	return nil, false
}

// kvJSON is the JSON form of a key or value: "text" when valid UTF-8,
// "base64" otherwise; a null value has neither.
type kvJSON struct {
	Key         *string `json:"key,omitempty"`
	KeyBase64   []byte  `json:"key_base64,omitempty"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 []byte  `json:"value_base64,omitempty"`
	Null        bool    `json:"null,omitempty"`
}

func makeKV(key, value []byte) kvJSON {
	var kv kvJSON
	if s, null := jsonBytes(key); s != nil {
		kv.Key = s
	} else if !null {
		kv.KeyBase64 = key
	}
	if s, null := jsonBytes(value); s != nil {
		kv.Value = s
	} else if null {
		kv.Null = true
	} else {
		kv.ValueBase64 = value
	}
	return kv
}

// checkBroker fails fast, with the reason, when no bootstrap address speaks
// Kafka (see checkKafka); over TLS it leaves the check to the client.
func (a *app) checkBroker(ctx context.Context) error {
	if a.tls != nil {
		return nil
	}
	return checkKafka(ctx, a.brokers())
}
