package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Def describes one configuration key: its Kafka type, default and
// validation. Broker keys (server.properties) and topic keys share it.
type Def struct {
	Name string
	Type kmsg.ConfigType
	// Default is the default as Kafka prints it; NoDefault marks keys
	// whose default is null (DescribeConfigs reports a null value).
	Default   string
	NoDefault bool
	// Check validates a value that already parsed as Type.
	Check func(string) error
	// Dynamic keys may be changed at runtime through AlterConfigs /
	// IncrementalAlterConfigs (broker resources only; every topic key is).
	Dynamic bool
	// Sensitive values (passwords, keys) are never returned by
	// DescribeConfigs: it reports them as null with IsSensitive.
	Sensitive bool
	Doc       string
}

// Validate parses v as d's type and runs d's extra check.
func (d *Def) Validate(v string) error {
	if err := checkType(d.Type, v); err != nil {
		return err
	}
	if d.Check != nil {
		return d.Check(v)
	}
	return nil
}

func checkType(t kmsg.ConfigType, v string) error {
	switch t {
	case kmsg.ConfigTypeBoolean:
		if _, err := parseBool(v); err != nil {
			return err
		}
	case kmsg.ConfigTypeInt:
		if _, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32); err != nil {
			return fmt.Errorf("expected a 32-bit integer, got %q", v)
		}
	case kmsg.ConfigTypeShort:
		if _, err := strconv.ParseInt(strings.TrimSpace(v), 10, 16); err != nil {
			return fmt.Errorf("expected a 16-bit integer, got %q", v)
		}
	case kmsg.ConfigTypeLong:
		if _, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err != nil {
			return fmt.Errorf("expected a 64-bit integer, got %q", v)
		}
	case kmsg.ConfigTypeDouble:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) {
			return fmt.Errorf("expected a number, got %q", v)
		}
	}
	return nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("expected true or false, got %q", v)
}

// intOf is the integer a validator sees: checkType has parsed v already.
func intOf(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	return n
}

// floatOf is the number a validator sees: checkType has parsed v already.
func floatOf(v string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
	return f
}

// SplitList splits a Kafka LIST value: comma separated, blanks trimmed,
// empty items dropped.
func SplitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Validators.

func atLeast(min int64) func(string) error {
	return func(v string) error {
		if n := intOf(v); n < min {
			return fmt.Errorf("value %d must be at least %d", n, min)
		}
		return nil
	}
}

func between(min, max int64) func(string) error {
	return func(v string) error {
		if n := intOf(v); n < min || n > max {
			return fmt.Errorf("value %d must be between %d and %d", n, min, max)
		}
		return nil
	}
}

func betweenFloat(min, max float64) func(string) error {
	return func(v string) error {
		if f := floatOf(v); f < min || f > max {
			return fmt.Errorf("value %v must be between %v and %v", f, min, max)
		}
		return nil
	}
}

func oneOf(allowed ...string) func(string) error {
	return func(v string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fmt.Errorf("value %q must be one of %s", v, strings.Join(allowed, ", "))
	}
}

// listOf accepts a comma-separated list whose items are all in allowed.
func listOf(allowed ...string) func(string) error {
	return func(v string) error {
		for _, item := range SplitList(v) {
			if err := oneOf(allowed...)(item); err != nil {
				return err
			}
		}
		return nil
	}
}

func nonEmpty(v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("value must not be empty")
	}
	return nil
}

const (
	maxLong = "9223372036854775807"
	maxInt  = "2147483647"
)
