// Package metrics holds the process-wide counters in Prometheus text
// format. No label ever carries a user, a client IP or any other
// per-person value (docs/THREAT-MODEL.md rule 13).
package metrics

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Registry is a set of counters; the zero value is not usable, New is.
type Registry struct {
	mu       sync.Mutex
	counters map[string]*atomic.Int64
}

// New returns an empty registry.
func New() *Registry { return &Registry{counters: map[string]*atomic.Int64{}} }

// Inc adds one to the counter name{labels}.
func (m *Registry) Inc(name, labels string) {
	key := name
	if labels != "" {
		key += "{" + labels + "}"
	}
	m.mu.Lock()
	c, ok := m.counters[key]
	if !ok {
		c = new(atomic.Int64)
		m.counters[key] = c
	}
	m.mu.Unlock()
	c.Add(1)
}

// Attempt counts one authentication attempt of factor with its result.
func (m *Registry) Attempt(factor, result string) {
	m.Inc("idp_auth_attempts_total", fmt.Sprintf("factor=%q,result=%q", factor, result))
}

// WriteText writes every counter, sorted, with one TYPE line per name.
func (m *Registry) WriteText(w io.Writer) {
	var b strings.Builder
	m.mu.Lock()
	keys := make([]string, 0, len(m.counters))
	for k := range m.counters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	seen := map[string]bool{}
	for _, k := range keys {
		name, _, _ := strings.Cut(k, "{")
		if !seen[name] {
			fmt.Fprintf(&b, "# TYPE %s counter\n", name)
			seen[name] = true
		}
		fmt.Fprintf(&b, "%s %d\n", k, m.counters[k].Load())
	}
	m.mu.Unlock()
	_, _ = io.WriteString(w, b.String())
}
