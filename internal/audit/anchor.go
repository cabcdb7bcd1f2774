package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// Head is the chain head as written to the anchor file: the seq and hash
// of the last checkpoint, when and why it was written.
type Head struct {
	Replica string `json:"replica,omitempty"` // audit.replica of the writer
	Seq     uint64 `json:"seq"`
	Hash    string `json:"hash"`
	Time    string `json:"time"`
	Reason  string `json:"reason"` // the checkpoint's: start, interval, rotate, shutdown
}

// anchors keeps the anchor file up to date. Checkpoints hand it the new
// head without waiting; a goroutine writes the latest one, so the chain lock
// is never held across the file's fsync and rename. stop writes the last
// head synchronously (the shutdown checkpoint).
type anchors struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	head    Head
	pending bool

	kick chan struct{}
	quit chan struct{}
	done chan struct{}
}

func startAnchors(path string, log *slog.Logger) *anchors {
	a := &anchors{path: path, log: log, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go a.loop()
	return a
}

// set records a new head; nil-safe.
func (a *anchors) set(h Head) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.head, a.pending = h, true
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *anchors) loop() {
	defer close(a.done)
	for {
		select {
		case <-a.quit:
			return
		case <-a.kick:
			a.flush()
		}
	}
}

// flush writes the pending head, if any.
func (a *anchors) flush() {
	a.mu.Lock()
	h, pending := a.head, a.pending
	a.pending = false
	a.mu.Unlock()
	if !pending {
		return
	}
	if err := writeHead(a.path, h); err != nil {
		a.log.Error("audit: cannot write the anchor file", "path", a.path, "seq", h.Seq, "err", err)
	}
}

// stop ends the goroutine and writes the last head; nil-safe, idempotent.
func (a *anchors) stop() {
	if a == nil {
		return
	}
	select {
	case <-a.quit:
		return
	default:
	}
	close(a.quit)
	<-a.done
	a.flush()
}

// writeHead replaces the file at path with h atomically: a temporary file
// in the same directory, fsynced, renamed over it, and the directory synced.
// A reader sees the old head or the new one, never a mix.
func writeHead(path string, h Head) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	syncDir(dir)
	return nil
}

// maxAnchorFile bounds what ReadAnchorFile reads.
const maxAnchorFile = 4096

// ReadAnchorFile reads an anchor file written with audit.anchor_file.
func ReadAnchorFile(path string) (Anchor, error) {
	f, err := os.Open(path)
	if err != nil {
		return Anchor{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAnchorFile+1))
	if err != nil {
		return Anchor{}, err
	}
	if len(b) > maxAnchorFile {
		return Anchor{}, fmt.Errorf("anchor file %s: larger than %d bytes", path, maxAnchorFile)
	}
	var h Head
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return Anchor{}, fmt.Errorf("anchor file %s: %w", path, err)
	}
	if h.Seq == 0 || len(h.Hash) != hashHexLen || !isLowerHex(h.Hash) || (h.Replica != "" && !validReplica(h.Replica)) {
		return Anchor{}, errors.New("anchor file " + path + `: want {"replica": "…", "seq": N, "hash": "<64 lowercase hex digits>", ...}`)
	}
	return Anchor{Replica: h.Replica, Seq: h.Seq, Hash: h.Hash}, nil
}
