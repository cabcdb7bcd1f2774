package config

import (
	"strings"
	"testing"
	"time"
)

// TestSecurityLimitDefaults: every read of client input has a bound by
// default.
func TestSecurityLimitDefaults(t *testing.T) {
	cfg, err := Parse([]byte(validJWT), env(nil), Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Security
	if s.ReadHeaderTimeout != 10*time.Second || s.ReadTimeout != 60*time.Second || s.MinBodyRate != 1024 ||
		s.MinBodyRateGrace != 5*time.Second || s.WriteTimeout != 60*time.Second || s.MaxInFlightPerIP != 256 || s.MaxInFlightPerUser != 64 {
		t.Errorf("defaults = %+v", s)
	}
}

func TestSecurityLimitProblems(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"negative values", "security: { read_header_timeout: -1s, read_timeout: -2s, min_body_rate: -5, min_body_rate_grace: -1s, write_timeout: -1s, max_in_flight_per_ip: -1, max_in_flight_per_user: -3 }\n",
			[]string{"security.read_header_timeout: must be positive", "security.read_timeout: must be positive", "security.min_body_rate:",
				"security.min_body_rate_grace: must be positive", "security.write_timeout: must be positive", "security.max_in_flight_per_ip:", "security.max_in_flight_per_user:"}},
		{"grace not shorter than the read timeout", "security: { read_timeout: 5s, min_body_rate_grace: 5s }\n",
			[]string{"security.min_body_rate_grace: must be shorter than security.read_timeout"}},
		{"unknown key", "security: { read_timout: 5s }\n", []string{"security.read_timout: unknown key"}},
		{"valid", "security: { read_header_timeout: 2s, read_timeout: 30s, min_body_rate: 4096, min_body_rate_grace: 2s, max_in_flight_per_ip: 10, max_in_flight_per_user: 5 }\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(validJWT+tc.yaml), env(nil), Overrides{})
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
