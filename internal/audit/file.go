package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// backupLayout names rotated files path.<UTC time>; names sort in the order
// they were rotated, so `mcpgate audit verify audit.log.* audit.log` checks
// the whole chain.
const backupLayout = "20060102T150405.000000Z"

// maxTail bounds how far back New looks for the last record.
const maxTail = 1 << 20

// rotatingFile is the file sink. Not safe for concurrent use: the Logger's
// lock guards it.
type rotatingFile struct {
	path    string
	f       *os.File
	size    int64
	max     int64
	backups int
	gen     uint64 // incremented by rotate
	fault   *Fault // nil: none (see WithFault)
}

type tail struct {
	name string
	line []byte // last complete line, nil if none
	torn bool   // the file ended with an incomplete line
}

func openRotating(path string, maxSize int64, backups int) (*rotatingFile, tail, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, tail{}, fmt.Errorf("audit: %w", err)
	}
	r := &rotatingFile{path: path, max: maxSize, backups: backups}
	if err := r.open(); err != nil {
		return nil, tail{}, err
	}
	t, err := readTail(path)
	if err == nil && t.line == nil {
		// Empty current file: the chain continues from the newest backup.
		var files []string
		if files, err = Files(path); err == nil && len(files) > 1 {
			t.name = files[len(files)-2]
			bt, berr := readTail(t.name)
			t.line, err = bt.line, berr
		}
	}
	if err == nil && t.torn {
		// Start the next record on a fresh line; verify still reports the fragment.
		_, err = r.Write([]byte{'\n'})
	}
	if err != nil {
		r.close()
		return nil, tail{}, fmt.Errorf("audit: read end of log: %w", err)
	}
	return r, t, nil
}

func (r *rotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Mode().Perm()&0o077 != 0 {
		err = f.Chmod(0o600) // an audit log is not for other users
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Write appends p. A partial write (the disk filled mid-record) is taken
// back, so the file stays a sequence of whole records and the chain goes on
// after the gap; if that fails too, the logger starts the next record on a
// fresh line and verify reports the fragment.
func (r *rotatingFile) Write(p []byte) (int, error) {
	n, err := r.fault.write(r.f, p)
	if err != nil && n > 0 && n < len(p) && r.f.Truncate(r.size) == nil {
		n = 0
	}
	r.size += int64(n)
	return n, err
}

// full reports whether writing n more bytes would exceed the size limit. A
// record larger than the limit still goes into a fresh file.
func (r *rotatingFile) full(n int) bool { return r.size > 0 && r.size+int64(n) > r.max }

func (r *rotatingFile) current() (*os.File, uint64) { return r.f, r.gen }

// sync fsyncs the current file.
func (r *rotatingFile) sync() error {
	if err := r.fault.sync(); err != nil {
		return err
	}
	return r.f.Sync()
}

func (r *rotatingFile) close() error {
	return errors.Join(r.sync(), r.f.Close())
}

// rotate renames the current file to a timestamped backup, opens a new one
// and deletes the oldest backups beyond the limit.
func (r *rotatingFile) rotate(now time.Time) error {
	if err := r.sync(); err != nil {
		return err
	}
	if err := r.f.Close(); err != nil {
		return err
	}
	r.gen++
	base := r.path + "." + now.UTC().Format(backupLayout)
	name := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			break
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
	renameErr := os.Rename(r.path, name)
	// Reopen even if the rename failed, so the logger keeps a usable file.
	if err := r.open(); err != nil {
		return errors.Join(renameErr, err)
	}
	if renameErr != nil {
		return renameErr
	}
	syncDir(filepath.Dir(r.path))
	if r.backups > 0 {
		files, err := Files(r.path)
		if err != nil {
			return err
		}
		old := files[:len(files)-1]
		for len(old) > r.backups {
			if err := os.Remove(old[0]); err != nil {
				return err
			}
			old = old[1:]
		}
	}
	return nil
}

// syncDir makes a rename durable; best effort (not every platform supports it).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Files lists the log at path in chain order: its rotated backups, oldest
// first, then path itself if it exists.
func Files(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		suffix, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok || e.IsDir() || len(suffix) < len(backupLayout) {
			continue
		}
		if _, err := time.Parse(backupLayout, suffix[:len(backupLayout)]); err != nil {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	slices.Sort(out)
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out, nil
}

// readTail returns the last complete line of the file name.
func readTail(name string) (tail, error) {
	t := tail{name: name}
	f, err := os.Open(name)
	if err != nil {
		return t, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return t, err
	}
	n := min(st.Size(), maxTail)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, st.Size()-n); err != nil && err != io.EOF {
		return t, err
	}
	if buf[len(buf)-1] != '\n' {
		t.torn = true
		i := bytes.LastIndexByte(buf, '\n')
		if i < 0 {
			if n < st.Size() {
				return t, fmt.Errorf("%s: last line longer than %d bytes", name, maxTail)
			}
			return t, nil // only a fragment: no complete line
		}
		buf = buf[:i+1]
	}
	buf = buf[:len(buf)-1]
	start := bytes.LastIndexByte(buf, '\n') + 1
	if start == 0 && n < st.Size() {
		return t, fmt.Errorf("%s: last line longer than %d bytes", name, maxTail)
	}
	t.line = buf[start:]
	return t, nil
}
