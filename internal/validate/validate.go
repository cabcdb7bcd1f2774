// Package validate collects configuration problems so that a config check
// reports every problem at once, each with the key path it concerns.
package validate

import (
	"fmt"
	"strings"
)

// Problems accumulates configuration errors.
type Problems struct {
	list []string
}

// Add records a problem at a key path such as "auth.jwt.audience".
func (p *Problems) Add(path, format string, args ...any) {
	p.list = append(p.list, path+": "+fmt.Sprintf(format, args...))
}

// List returns the problems in the order they were added.
func (p *Problems) List() []string { return p.list }

// Err returns nil when there are no problems, else one error listing all.
func (p *Problems) Err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &Error{Problems: p.list}
}

// Error is a configuration error listing every problem found.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return fmt.Sprintf("invalid configuration (%d problem(s)):\n  - %s", len(e.Problems), strings.Join(e.Problems, "\n  - "))
}

// Join builds a key path: Join("auth", "jwt") == "auth.jwt"; Index("backends", 2) == "backends[2]".
func Join(parts ...string) string {
	var b strings.Builder
	for _, s := range parts {
		if s == "" {
			continue
		}
		if b.Len() > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}

// Index builds "path[i]".
func Index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
