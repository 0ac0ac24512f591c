package security

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Login module classes Kafka's JAAS configurations name.
const (
	PlainLoginModule = "org.apache.kafka.common.security.plain.PlainLoginModule"
	ScramLoginModule = "org.apache.kafka.common.security.scram.ScramLoginModule"
)

// LoginModule is one entry of a JAAS configuration: the class, its control
// flag (required, requisite, sufficient, optional) and its options.
type LoginModule struct {
	Class   string
	Flag    string
	Options map[string]string
}

// ParseJAASEntry parses the value of sasl.jaas.config: one or more login
// modules, each `class flag key=value ...;` with quoted or bare values.
func ParseJAASEntry(text string) ([]LoginModule, error) {
	p := &jaasParser{toks: nil}
	if err := p.lex(text); err != nil {
		return nil, err
	}
	mods, err := p.modules()
	if err != nil {
		return nil, err
	}
	if p.i != len(p.toks) {
		return nil, fmt.Errorf("jaas: unexpected %q", p.toks[p.i].s)
	}
	if len(mods) == 0 {
		return nil, errors.New("jaas: no login module")
	}
	return mods, nil
}

// ParseJAASFile parses a JAAS file (the -Djava.security.auth.login.config
// file of a Kafka broker): sections `Name { modules };`. Section names are
// kept as written.
func ParseJAASFile(text string) (map[string][]LoginModule, error) {
	p := &jaasParser{}
	if err := p.lex(text); err != nil {
		return nil, err
	}
	out := map[string][]LoginModule{}
	for p.i < len(p.toks) {
		name := p.next()
		if name.kind != tokWord {
			return nil, fmt.Errorf("jaas: expected a section name, got %q", name.s)
		}
		if t := p.next(); t.kind != '{' {
			return nil, fmt.Errorf("jaas: expected { after %s", name.s)
		}
		mods, err := p.modules()
		if err != nil {
			return nil, fmt.Errorf("jaas: section %s: %w", name.s, err)
		}
		if t := p.next(); t.kind != '}' {
			return nil, fmt.Errorf("jaas: section %s: expected }", name.s)
		}
		if p.peek().kind == ';' {
			p.i++
		}
		out[name.s] = append(out[name.s], mods...)
	}
	return out, nil
}

// ReadJAASFile reads and parses a JAAS file.
func ReadJAASFile(path string) (map[string][]LoginModule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := ParseJAASFile(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

const (
	tokWord  = 'w'
	tokQuote = 'q'
	tokEOF   = 0
)

type jaasTok struct {
	kind byte
	s    string
}

type jaasParser struct {
	toks []jaasTok
	i    int
}

func (p *jaasParser) next() jaasTok {
	if p.i >= len(p.toks) {
		return jaasTok{kind: tokEOF}
	}
	t := p.toks[p.i]
	p.i++
	return t
}

func (p *jaasParser) peek() jaasTok {
	if p.i >= len(p.toks) {
		return jaasTok{kind: tokEOF}
	}
	return p.toks[p.i]
}

func (p *jaasParser) lex(s string) error {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case strings.HasPrefix(s[i:], "//"):
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case strings.HasPrefix(s[i:], "/*"):
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return errors.New("jaas: unterminated comment")
			}
			i += end + 4
		case c == '{' || c == '}' || c == ';' || c == '=':
			p.toks = append(p.toks, jaasTok{kind: c, s: string(c)})
			i++
		case c == '"' || c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return errors.New("jaas: unterminated quoted value")
			}
			p.toks = append(p.toks, jaasTok{kind: tokQuote, s: b.String()})
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n{};=\"'", rune(s[j])) {
				j++
			}
			p.toks = append(p.toks, jaasTok{kind: tokWord, s: s[i:j]})
			i = j
		}
	}
	return nil
}

// modules parses login modules until } or the end.
func (p *jaasParser) modules() ([]LoginModule, error) {
	var out []LoginModule
	for {
		t := p.peek()
		if t.kind == tokEOF || t.kind == '}' {
			return out, nil
		}
		p.i++
		if t.kind != tokWord {
			return nil, fmt.Errorf("jaas: expected a login module class, got %q", t.s)
		}
		flag := p.next()
		if flag.kind != tokWord {
			return nil, fmt.Errorf("jaas: %s: expected a control flag", t.s)
		}
		switch strings.ToLower(flag.s) {
		case "required", "requisite", "sufficient", "optional":
		default:
			return nil, fmt.Errorf("jaas: %s: invalid control flag %q", t.s, flag.s)
		}
		m := LoginModule{Class: t.s, Flag: strings.ToLower(flag.s), Options: map[string]string{}}
		for {
			k := p.next()
			if k.kind == ';' {
				break
			}
			if k.kind != tokWord {
				return nil, fmt.Errorf("jaas: %s: expected an option name or ;, got %q", t.s, k.s)
			}
			if eq := p.next(); eq.kind != '=' {
				return nil, fmt.Errorf("jaas: %s: expected = after %s", t.s, k.s)
			}
			v := p.next()
			if v.kind != tokWord && v.kind != tokQuote {
				return nil, fmt.Errorf("jaas: %s: expected a value for %s", t.s, k.s)
			}
			m.Options[k.s] = v.s
		}
		out = append(out, m)
	}
}

// PlainUsers returns the user_<name>=<password> options of the PLAIN login
// modules among mods.
func PlainUsers(mods []LoginModule) map[string]string {
	users := map[string]string{}
	for _, m := range mods {
		if m.Class != PlainLoginModule {
			continue
		}
		for k, v := range m.Options {
			if name, ok := strings.CutPrefix(k, "user_"); ok && name != "" {
				users[name] = v
			}
		}
	}
	return users
}

// ClientCredentials returns the username and password a broker presents
// to other brokers with the mechanism's login module among mods.
func ClientCredentials(mods []LoginModule, mechanism string) (user, password string, ok bool) {
	class := PlainLoginModule
	if strings.HasPrefix(mechanism, "SCRAM-") {
		class = ScramLoginModule
	}
	for _, m := range mods {
		if m.Class == class {
			u, uok := m.Options["username"]
			pw, pok := m.Options["password"]
			if uok && pok {
				return u, pw, true
			}
		}
	}
	return "", "", false
}
