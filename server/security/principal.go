package security

import (
	"crypto/x509"
	"fmt"
	"regexp"
	"strings"
)

// Principal types and the principal of a connection nobody authenticated.
const (
	UserType  = "User"
	Anonymous = "User:ANONYMOUS"
)

// PrincipalRules maps a certificate's subject distinguished name to a user
// name (ssl.principal.mapping.rules): a comma-separated list of
// RULE:pattern/replacement/[LU] and DEFAULT, tried in order; the first
// rule whose pattern matches the whole name gives the result (the
// replacement applied to every match, then lower- or upper-cased with L or
// U); DEFAULT gives the name unchanged. No rule applying is an error.
type PrincipalRules struct {
	rules []principalRule
	text  string
}

type principalRule struct {
	isDefault   bool
	full        *regexp.Regexp // anchored
	re          *regexp.Regexp
	replacement string
	lower       bool
	upper       bool
}

// ruleSplit finds one rule at the start of the text: DEFAULT, or
// RULE:pattern/replacement/ with an optional L or U (slashes and other
// characters may be escaped with a backslash), up to the next comma.
var ruleSplit = regexp.MustCompile(`^\s*(DEFAULT|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?)[^,]*?|[^,]*?)\s*(?:,\s*|$)`)

// ParsePrincipalRules parses ssl.principal.mapping.rules.
func ParsePrincipalRules(text string) (*PrincipalRules, error) {
	pr := &PrincipalRules{text: text}
	rest := strings.TrimSpace(text)
	for rest != "" {
		m := ruleSplit.FindStringSubmatchIndex(rest)
		if m == nil || m[1] == 0 {
			return nil, fmt.Errorf("ssl.principal.mapping.rules: invalid rule at %q", rest)
		}
		rule := rest[m[2]:m[3]]
		switch {
		case rule == "DEFAULT":
			pr.rules = append(pr.rules, principalRule{isDefault: true})
		case strings.HasPrefix(rule, "RULE:") && m[4] >= 0:
			pat := rest[m[4]:m[5]]
			repl := rest[m[6]:m[7]]
			flag := rest[m[8]:m[9]]
			if tail := rest[m[9]:m[3]]; strings.TrimSpace(tail) != "" {
				return nil, fmt.Errorf("ssl.principal.mapping.rules: invalid rule %q: unmatched %q", rule, tail)
			}
			re, err := regexp.Compile(pat)
			if err != nil {
				return nil, fmt.Errorf("ssl.principal.mapping.rules: rule %q: %w", rule, err)
			}
			full, err := regexp.Compile(`^(?:` + pat + `)$`)
			if err != nil {
				return nil, fmt.Errorf("ssl.principal.mapping.rules: rule %q: %w", rule, err)
			}
			pr.rules = append(pr.rules, principalRule{re: re, full: full, replacement: javaReplacement(repl),
				lower: flag == "L", upper: flag == "U"})
		case strings.TrimSpace(rule) == "":
			// Empty rules are ignored.
		default:
			return nil, fmt.Errorf("ssl.principal.mapping.rules: invalid rule %q", rule)
		}
		rest = rest[m[1]:]
	}
	if len(pr.rules) == 0 {
		pr.rules = []principalRule{{isDefault: true}}
	}
	return pr, nil
}

var backRef = regexp.MustCompile(`\$(\d+)`)

// javaReplacement turns Java's $1 group references into Go's ${1} and
// unescapes \x.
func javaReplacement(r string) string {
	r = backRef.ReplaceAllString(r, "$${$1}")
	var b strings.Builder
	for i := 0; i < len(r); i++ {
		if r[i] == '\\' && i+1 < len(r) {
			i++
			if r[i] == '$' {
				b.WriteString("$$")
				continue
			}
		}
		b.WriteByte(r[i])
	}
	return b.String()
}

// Name maps a distinguished name.
func (pr *PrincipalRules) Name(dn string) (string, error) {
	for _, r := range pr.rules {
		if r.isDefault {
			return dn, nil
		}
		if !r.full.MatchString(dn) {
			continue
		}
		out := r.re.ReplaceAllString(dn, r.replacement)
		switch {
		case r.lower:
			out = strings.ToLower(out)
		case r.upper:
			out = strings.ToUpper(out)
		}
		return out, nil
	}
	return "", fmt.Errorf("no ssl.principal.mapping.rules rule applies to %q (rules %s)", dn, pr.text)
}

// SubjectDN is a certificate subject as Kafka's principal builder sees it:
// the RFC 2253 string (most specific attribute first, e.g.
// "CN=alice,OU=eng,O=acme,C=US").
func SubjectDN(c *x509.Certificate) string { return c.Subject.String() }
