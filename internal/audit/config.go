package audit

import (
	"cmp"
	"os"
	"path/filepath"
	"time"

	"github.com/mcpgate/mcpgate/internal/validate"
)

// Sinks.
const (
	SinkStdout = "stdout"
	SinkFile   = "file"
	SinkNone   = "none"
)

// Fsync policies for the file sink.
const (
	FsyncAlways   = "always"
	FsyncInterval = "interval"
	FsyncNever    = "never"
)

// Write-failure policies.
const (
	OnErrorFail     = "fail"
	OnErrorContinue = "continue"
)

// MinHMACKeyBytes is the shortest accepted chain key (RFC 2104 §3: at least
// the hash output length).
const MinHMACKeyBytes = 32

// Config is the `audit:` section.
//
// Durability (fsync) trade-off for the file sink. Every record is written to
// the file before Log returns, so a crash of the gateway process never loses
// a record; concurrent requests share the write(2) (group commit: the
// records that arrive while one write runs go out together with the next). fsync only matters when the machine itself
// fails (power loss, kernel panic):
//   - always: Log returns only after an fsync covering its record; nothing
//     acknowledged is lost, but every request waits for the disk (about a
//     millisecond or more). Concurrent requests share one fsync (group
//     commit), so throughput scales with concurrency, not with the disk alone;
//   - interval (default, every fsync_interval = 1s): at most the last
//     interval's records are lost on power loss;
//   - never: the kernel decides (typically up to 30s on Linux).
//
// Write failures are never silent: on_error: fail (default) makes Log return
// an error so the caller refuses the request (no un-audited action);
// on_error: continue lets the request proceed, and counts the failure in
// mcpgate_audit_write_failures_total, logs it, and writes a RECORDS_LOST
// record with the count once writing works again.
type Config struct {
	Sink       string `yaml:"sink"`        // stdout (default) | file | none; file is implied when only path is set
	Path       string `yaml:"path"`        // file sink: the log file (MCPGATE_AUDIT_PATH)
	MaxSizeMB  int    `yaml:"max_size_mb"` // rotate when the file would grow past this; default 100
	MaxBackups int    `yaml:"max_backups"` // rotated files to keep; 0 (default) keeps all

	Fsync         string        `yaml:"fsync"`          // always | interval (default) | never
	FsyncInterval time.Duration `yaml:"fsync_interval"` // default 1s

	// RedactKeys are argument keys masked at any depth, added to the
	// defaults (password, secret, token, …).
	RedactKeys []string `yaml:"redact_keys"`
	// MaxArgsBytes bounds a record's arguments (default 4096, 64 to
	// 262144): the largest arguments are replaced, one by one, by
	// {"_truncated":true,"_size":N} until the rest fits; if that is not
	// enough, all of them.
	MaxArgsBytes int `yaml:"max_args_bytes"`
	// OnError is fail (default) | continue: what requests do while the
	// audit log cannot be written. fail: a request whose FORWARD record
	// cannot be written is not forwarded (503), and the gateway refuses
	// every request, on every path, with 503 until a write succeeds again
	// (with fsync: always, a write and its fsync); continue: requests
	// proceed.
	// Either way failures are counted (mcpgate_audit_write_failures_total),
	// logged, and the records that could not be written are counted in a
	// RECORDS_LOST record as soon as the log is writable again.
	OnError string `yaml:"on_error"`

	// HMACKeyEnv names an environment variable holding a key of at least
	// 32 bytes; the chain then uses HMAC-SHA256 instead of SHA-256, so
	// rewriting the log requires the key.
	HMACKeyEnv string `yaml:"hmac_key_env"`

	CheckpointEvery    int           `yaml:"checkpoint_every"`    // records between CHECKPOINT records; default 1000
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"` // also checkpoint when this long has passed; 0 (default) = off

	// Replica names this gateway process in every record ("replica"), so
	// that records of several replicas collected into one store (a log
	// shipper reading their stdout) can be told apart: each replica keeps
	// its own hash chain, and `mcpgate audit verify` checks each chain on
	// its own. Default: MCPGATE_AUDIT_REPLICA, else the host name (the pod
	// name on Kubernetes). Names must be unique among the replicas that
	// write into one store; letters, digits and . _ : - only, at most 253
	// bytes.
	Replica string `yaml:"replica"`

	// AnchorFile, when set, is rewritten atomically (temporary file, fsync,
	// rename) with the chain head {"seq":N,"hash":"…","time":"…","reason":"…"}
	// at every checkpoint, start and shutdown included. Kept
	// on another path (ideally another disk or mount that the log's writer
	// cannot rewrite), it is what `audit verify --anchor FILE` checks the log
	// against: a log cut back to an earlier record fails.
	AnchorFile string `yaml:"anchor_file"`
}

// Defaults.
const (
	DefaultMaxSizeMB       = 100
	DefaultFsyncInterval   = time.Second
	DefaultMaxArgsBytes    = 4096
	DefaultCheckpointEvery = 1000
)

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Sink == "" {
		c.Sink = SinkStdout
		if c.Path != "" {
			c.Sink = SinkFile
		}
	}
	c.MaxSizeMB = cmp.Or(c.MaxSizeMB, DefaultMaxSizeMB)
	c.Fsync = cmp.Or(c.Fsync, FsyncInterval)
	c.FsyncInterval = cmp.Or(c.FsyncInterval, DefaultFsyncInterval)
	c.MaxArgsBytes = cmp.Or(c.MaxArgsBytes, DefaultMaxArgsBytes)
	c.OnError = cmp.Or(c.OnError, OnErrorFail)
	c.CheckpointEvery = cmp.Or(c.CheckpointEvery, DefaultCheckpointEvery)
}

// Validate reports every problem under path (e.g. "audit").
func (c *Config) Validate(path string, p *validate.Problems) {
	at := func(k string) string { return validate.Join(path, k) }
	switch c.Sink {
	case SinkStdout, SinkNone:
		if c.Path != "" {
			p.Add(at("path"), "is only used with sink: file (sink is %q)", c.Sink)
		}
	case SinkFile:
		if c.Path == "" {
			p.Add(at("path"), "is required with sink: file")
		}
	default:
		p.Add(at("sink"), "must be one of stdout, file, none (got %q)", c.Sink)
	}
	if c.MaxSizeMB < 1 {
		p.Add(at("max_size_mb"), "must be at least 1 (got %d)", c.MaxSizeMB)
	}
	if c.MaxBackups < 0 {
		p.Add(at("max_backups"), "must be 0 (keep all) or more (got %d)", c.MaxBackups)
	}
	switch c.Fsync {
	case FsyncAlways, FsyncNever:
	case FsyncInterval:
		if c.FsyncInterval <= 0 {
			p.Add(at("fsync_interval"), "must be positive (got %s)", c.FsyncInterval)
		}
	default:
		p.Add(at("fsync"), "must be one of always, interval, never (got %q)", c.Fsync)
	}
	for i, k := range c.RedactKeys {
		if normalizeKey(k) == "" {
			p.Add(validate.Index(at("redact_keys"), i), "must not be empty")
		}
	}
	if c.MaxArgsBytes < 64 || c.MaxArgsBytes > MaxArgsBytesLimit {
		p.Add(at("max_args_bytes"), "must be between 64 and %d (got %d)", MaxArgsBytesLimit, c.MaxArgsBytes)
	}
	switch c.OnError {
	case OnErrorFail, OnErrorContinue:
	default:
		p.Add(at("on_error"), "must be fail or continue (got %q)", c.OnError)
	}
	if c.HMACKeyEnv != "" {
		if n := len(os.Getenv(c.HMACKeyEnv)); n < MinHMACKeyBytes {
			p.Add(at("hmac_key_env"), "environment variable %s must hold at least %d bytes (has %d)", c.HMACKeyEnv, MinHMACKeyBytes, n)
		}
	}
	if c.CheckpointEvery < 1 {
		p.Add(at("checkpoint_every"), "must be at least 1 (got %d)", c.CheckpointEvery)
	}
	if c.CheckpointInterval < 0 {
		p.Add(at("checkpoint_interval"), "must not be negative (got %s)", c.CheckpointInterval)
	}
	if c.Replica != "" && !validReplica(c.Replica) {
		p.Add(at("replica"), "must be 1 to %d letters, digits, '.', '_', ':' or '-' (got %q)", maxReplicaBytes, c.Replica)
	}
	if c.AnchorFile != "" && c.Path != "" {
		if filepath.Clean(c.AnchorFile) == filepath.Clean(c.Path) {
			p.Add(at("anchor_file"), "must be another path than the audit log (got %q)", c.AnchorFile)
		}
	}
}

// maxReplicaBytes bounds audit.replica (a DNS name's length).
const maxReplicaBytes = 253

// validReplica allows host and pod names: nothing that needs escaping in
// JSON or in a terminal.
func validReplica(s string) bool {
	if s == "" || len(s) > maxReplicaBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
