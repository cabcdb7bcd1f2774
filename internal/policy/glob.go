package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// glob is a compiled pattern: `*` matches any run of characters (including
// `/`), `?` exactly one character, `\` makes the next character literal.
// Matching is case-sensitive and works on runes.
type glob struct {
	src     string
	literal string // set when the pattern has no wildcards
	isLit   bool
	toks    []globTok
}

type globTok struct {
	kind byte // 'l' literal run, '*' star, '?' any one rune
	lit  string
}

func compileGlob(p string) (glob, error) {
	if p == "" {
		return glob{}, fmt.Errorf("empty pattern")
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return glob{}, fmt.Errorf("pattern %q contains control characters", p)
		}
	}
	g := glob{src: p}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			g.toks = append(g.toks, globTok{kind: 'l', lit: lit.String()})
			lit.Reset()
		}
	}
	wild := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\':
			if i+1 >= len(p) {
				return glob{}, fmt.Errorf("pattern %q ends with a lone backslash", p)
			}
			i++
			lit.WriteByte(p[i])
		case '*':
			flush()
			wild = true
			if n := len(g.toks); n == 0 || g.toks[n-1].kind != '*' {
				g.toks = append(g.toks, globTok{kind: '*'})
			}
		case '?':
			flush()
			wild = true
			g.toks = append(g.toks, globTok{kind: '?'})
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	if !wild {
		g.isLit = true
		if len(g.toks) == 1 {
			g.literal = g.toks[0].lit
		}
		g.toks = nil
	}
	return g, nil
}

func (g *glob) match(s string) bool {
	if g.isLit {
		return s == g.literal
	}
	return matchToks(g.toks, s)
}

// matchToks matches with backtracking to the most recent star only, which
// is linear in len(s) per star and never exponential.
func matchToks(toks []globTok, s string) bool {
	starTok, starPos := -1, 0
	ti, si := 0, 0
	for {
		if ti < len(toks) {
			switch t := toks[ti]; t.kind {
			case '*':
				starTok, starPos = ti, si
				ti++
				continue
			case '?':
				if si < len(s) {
					_, size := decodeRune(s[si:])
					si += size
					ti++
					continue
				}
			case 'l':
				if strings.HasPrefix(s[si:], t.lit) {
					si += len(t.lit)
					ti++
					continue
				}
			}
		} else if si == len(s) {
			return true
		}
		if starTok < 0 || starPos >= len(s) {
			return false
		}
		// Let the last star absorb one more rune and retry from there.
		_, size := decodeRune(s[starPos:])
		starPos += size
		ti, si = starTok+1, starPos
	}
}

func decodeRune(s string) (rune, int) { return utf8.DecodeRuneInString(s) }

// Glob is a compiled tool-name pattern with the policy's syntax (`*`, `?`,
// `\` escapes), for other parts of the gateway that select tools the same
// way roles do (rate_limit.per_tool).
type Glob struct{ g glob }

// CompileGlob compiles p; it fails on an empty pattern, control characters
// or a trailing backslash.
func CompileGlob(p string) (Glob, error) {
	g, err := compileGlob(p)
	return Glob{g}, err
}

// Match reports whether s matches the pattern.
func (g *Glob) Match(s string) bool { return g.g.match(s) }

// splitBackend splits a tool or prompt pattern written `<backend>/<name
// glob>` (e.g. "vsphere/*", "k8s/get_pods") at its first unescaped `/`.
// The backend part is a backend name, not a glob; `\/` is a literal slash
// in a name. A pattern without an unescaped `/` applies on every backend
// (backend ""). The backend is returned unescaped; the name glob as written.
func splitBackend(p string) (backend, name string, err error) {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++ // the escaped character; a lone trailing `\` is compileGlob's error
		case '/':
			raw, rest := p[:i], p[i+1:]
			var b strings.Builder
			for j := 0; j < len(raw); j++ {
				switch c := raw[j]; c {
				case '\\':
					j++
					if j < len(raw) {
						b.WriteByte(raw[j])
					}
				case '*', '?':
					return "", "", fmt.Errorf("pattern %q: the part before '/' names a backend and cannot be a glob (write one pattern per backend, or the tool pattern alone for every backend)", p)
				default:
					b.WriteByte(c)
				}
			}
			if b.Len() == 0 {
				return "", "", fmt.Errorf("pattern %q: no backend name before '/' (write `\\/` for a literal slash)", p)
			}
			if rest == "" {
				return "", "", fmt.Errorf("pattern %q: no name after %q", p, raw+"/")
			}
			return b.String(), rest, nil
		}
	}
	return "", p, nil
}

// escapeGlob quotes s so that it matches itself only, also as either part
// of a `<backend>/<name>` pattern.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?\/`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?\/`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
