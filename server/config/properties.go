package config

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Property is one key/value pair of a Java properties file, with the line it
// started on (for error messages).
type Property struct {
	Key   string
	Value string
	Line  int
}

// ParseProperties reads a Java .properties file (java.util.Properties.load
// syntax): '#' and '!' comment lines, logical lines continued by a trailing
// odd number of backslashes, key/value separated by '=', ':' or whitespace,
// and the escapes \t \n \r \f \uXXXX and \<any> (the character itself). Later
// duplicates of a key override earlier ones in the returned map; the slice
// keeps file order.
func ParseProperties(r io.Reader) ([]Property, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var (
		out     []Property
		lineNo  int
		logical strings.Builder
		start   int
		cont    bool
	)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if lineNo == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		trimmed := strings.TrimLeft(line, " \t\f")
		if !cont {
			if trimmed == "" || trimmed[0] == '#' || trimmed[0] == '!' {
				continue
			}
			start = lineNo
			logical.Reset()
		}
		// A line ending in an odd number of backslashes continues.
		n := 0
		for i := len(trimmed) - 1; i >= 0 && trimmed[i] == '\\'; i-- {
			n++
		}
		if n%2 == 1 {
			logical.WriteString(trimmed[:len(trimmed)-1])
			cont = true
			continue
		}
		logical.WriteString(trimmed)
		cont = false
		p, err := parsePropertyLine(logical.String())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", start, err)
		}
		p.Line = start
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cont {
		p, err := parsePropertyLine(logical.String())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", start, err)
		}
		p.Line = start
		out = append(out, p)
	}
	return out, nil
}

func parsePropertyLine(s string) (Property, error) {
	// The key ends at the first unescaped '=', ':' or whitespace.
	i := 0
	for i < len(s) {
		c := s[i]
		if c == '\\' {
			i += 2
			continue
		}
		if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\f' {
			break
		}
		i++
	}
	if i > len(s) {
		i = len(s) // a trailing lone backslash
	}
	rawKey := s[:i]
	rest := s[i:]
	// Skip whitespace, at most one '=' or ':', then whitespace.
	rest = strings.TrimLeft(rest, " \t\f")
	if rest != "" && (rest[0] == '=' || rest[0] == ':') {
		rest = strings.TrimLeft(rest[1:], " \t\f")
	}
	key, err := unescapeProperty(rawKey)
	if err != nil {
		return Property{}, err
	}
	val, err := unescapeProperty(rest)
	if err != nil {
		return Property{}, fmt.Errorf("key %q: %w", key, err)
	}
	return Property{Key: key, Value: val}, nil
}

func unescapeProperty(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(s) {
			break
		}
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+5 > len(s) {
				return "", fmt.Errorf("malformed \\u escape")
			}
			v, err := strconv.ParseUint(s[i+1:i+5], 16, 16)
			if err != nil {
				return "", fmt.Errorf("malformed \\u escape %q", s[i-1:i+5])
			}
			b.WriteRune(rune(v))
			i += 4
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}
