package config

import (
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/aggregate"
	"github.com/mcpgate/mcpgate/internal/validate"
)

// Topology is what a config file says about where requests go: the backend
// names and the aggregated endpoints. `mcpgate policy explain` reads it to
// decide a request as the gateway would, without the secrets and
// environment a full Load needs.
type Topology struct {
	// Backends are the names of backends[]; empty for a file that is only
	// a policy.
	Backends []string
	// Endpoints are the aggregated endpoints, defaults applied.
	Endpoints []aggregate.Config
}

// ReadTopology reads the backends' names and the endpoints of the config
// file at path. A file without backends (a policy file) has an empty
// Topology. The endpoints are validated against the backends.
func ReadTopology(path string) (*Topology, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, readError(path, err)
	}
	var doc struct {
		Backends []struct {
			Name string `yaml:"name"`
		} `yaml:"backends"`
		Endpoints []aggregate.Config `yaml:"endpoints"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, validate.YAMLError(err))
	}
	t := &Topology{Endpoints: doc.Endpoints}
	names := map[string]bool{}
	for _, b := range doc.Backends {
		t.Backends = append(t.Backends, b.Name)
		names[b.Name] = true
	}
	var p validate.Problems
	for i := range t.Endpoints {
		t.Endpoints[i].SetDefaults()
		t.Endpoints[i].Validate(validate.Index("endpoints", i), names, &p)
	}
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Known is the set of names a policy request can carry as its backend:
// the backends and the aggregated endpoints.
func (t *Topology) Known() map[string]bool {
	out := make(map[string]bool, len(t.Backends)+len(t.Endpoints))
	for _, b := range t.Backends {
		out[b] = true
	}
	for _, e := range t.Endpoints {
		out[e.Name] = true
	}
	return out
}

// Endpoint returns the endpoint with this name or path.
func (t *Topology) Endpoint(nameOrPath string) (*aggregate.Config, bool) {
	for i := range t.Endpoints {
		if e := &t.Endpoints[i]; e.Name == nameOrPath || e.Path == nameOrPath {
			return e, true
		}
	}
	return nil, false
}
