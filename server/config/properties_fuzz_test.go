package config

import (
	"strings"
	"testing"
)

// escapeProperty writes s as java.util.Properties.store would: every
// character the parser treats specially is escaped, so the text reads back
// as exactly s.
func escapeProperty(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\f':
			b.WriteString(`\f`)
		case '=', ':', '#', '!', ' ':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\ufeff':
			b.WriteString(`\ufeff`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// FuzzParseProperties: arbitrary text never panics the properties parser,
// and a key/value pair written with Java's escaping reads back unchanged
// whatever it holds, alone or between comment and continuation lines.
func FuzzParseProperties(f *testing.F) {
	f.Add("broker.id=1\nlog.dirs=./data\n", "listeners", "PLAINTEXT://127.0.0.1:9092")
	f.Add("# comment\n! other\n  a : b \\\n   c\n", "sasl.jaas.config", `org.apache.kafka.common.security.plain.PlainLoginModule required username="a" password="b=c";`)
	f.Add("\ufeffk=v\\u00e9\\", "key with spaces", " leading and trailing ")
	f.Add("x\\u12", "\\", "=:")
	f.Fuzz(func(t *testing.T, text, key, value string) {
		props, err := ParseProperties(strings.NewReader(text))
		if err == nil {
			for i, p := range props {
				if p.Line < 1 || (i > 0 && p.Line <= props[i-1].Line) {
					t.Fatalf("property %d (%q) at line %d after line %d", i, p.Key, p.Line, props[max(i-1, 0)].Line)
				}
			}
		}
		if key == "" || strings.ContainsRune(key, '\ufffd') || strings.ContainsRune(value, '\ufffd') {
			return // invalid UTF-8 does not survive the rune-wise escaper
		}
		doc := "# written by the test\n" + escapeProperty(key) + "=" + escapeProperty(value) + "\n!end\nnext=\\\n  1\n"
		props, err = ParseProperties(strings.NewReader(doc))
		if err != nil {
			t.Fatalf("escaped pair %q=%q: %v", key, value, err)
		}
		if len(props) != 2 || props[0].Key != key || props[0].Value != value || props[0].Line != 2 {
			t.Fatalf("escaped pair %q=%q read back as %+v", key, value, props)
		}
		if props[1].Key != "next" || props[1].Value != "1" || props[1].Line != 4 {
			t.Fatalf("the line after the pair read back as %+v", props[1])
		}
	})
}
