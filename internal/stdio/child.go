package stdio

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

const (
	// maxStderrLine bounds one logged stderr line; the rest of a longer line
	// is dropped.
	maxStderrLine = 4096
	// stderrGrace is how long a stopped child's remaining stderr is read
	// before the pipe is closed (a grandchild may keep it open).
	stderrGrace = time.Second
)

var errLineTooLong = errors.New("message exceeds max_message_bytes")

// child is one running stdio MCP server: newline-delimited JSON-RPC on its
// stdin and stdout (MCP spec, transports: stdio).
type child struct {
	cmd        *exec.Cmd
	stdin      *os.File
	stdoutFile *os.File
	stdout     *bufio.Reader
	stderr     *os.File
	maxLine    int
	log        *slog.Logger

	wmu        sync.Mutex // serializes writes to stdin
	exited     chan struct{}
	waitErr    error // set before exited is closed
	stderrDone chan struct{}
	stopOnce   sync.Once
}

// startChild starts the program at path. The pipes are plain os.Pipe files
// (not exec's StdoutPipe), so that cmd.Wait never races our reads.
func startChild(path string, args, env []string, dir string, runAs *RunAs, maxLine int, log *slog.Logger) (*child, error) {
	var files []*os.File // every pipe end, closed on failure
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	setProcAttrs(cmd, runAs)
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, err
	}
	// The child holds its own copies now.
	inR.Close()
	outW.Close()
	errW.Close()
	c := &child{
		cmd:        cmd,
		stdin:      inW,
		stdoutFile: outR,
		stdout:     bufio.NewReaderSize(outR, 64<<10),
		stderr:     errR,
		maxLine:    maxLine,
		log:        log.With("pid", cmd.Process.Pid),
		exited:     make(chan struct{}),
		stderrDone: make(chan struct{}),
	}
	go c.wait()
	go c.logStderr()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) wait() {
	c.waitErr = c.cmd.Wait()
	// Whatever the server left behind in its process group goes with it.
	kill(c.cmd.Process)
	close(c.exited)
}

// stop ends the child: stdin is closed (the stdio transport's shutdown
// signal) and SIGTERM sent to its process group; after killDelay the group
// gets SIGKILL. It returns once the child has been reaped.
func (c *child) stop(killDelay time.Duration) {
	c.stopOnce.Do(func() {
		c.stdin.Close() // not under wmu: Close also unblocks a write stuck on a full pipe
		select {
		case <-c.exited:
		default:
			terminate(c.cmd.Process)
			select {
			case <-c.exited:
			case <-time.After(killDelay):
				kill(c.cmd.Process)
				<-c.exited
			}
		}
		c.stdoutFile.Close()
		select {
		case <-c.stderrDone:
		case <-time.After(stderrGrace):
		}
		c.stderr.Close()
		<-c.stderrDone
	})
}

// write sends msgs to the child, one line each.
func (c *child) write(msgs ...jsonrpc.Message) error {
	var buf bytes.Buffer
	for _, m := range msgs {
		data, err := jsonrpc.EncodeMessage(m)
		if err != nil {
			return err
		}
		buf.Write(data)
		buf.WriteByte('\n')
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.stdin.Write(buf.Bytes())
	return err
}

// read returns the next message(s) the child wrote: one line, which may be a
// batch. Lines that are not JSON-RPC (stray prints) are logged and skipped.
func (c *child) read() ([]jsonrpc.Message, error) {
	for {
		line, err := c.readLine()
		if err != nil {
			return nil, err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		msgs, _, err := decodeMessages(line)
		if err != nil {
			c.log.Warn("stdio: skipping stdout line that is not JSON-RPC", "bytes", len(line), "error", err)
			continue
		}
		return msgs, nil
	}
}

func (c *child) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := c.stdout.ReadSlice('\n')
		if len(line)+len(frag) > c.maxLine+2 { // +2: the "\r\n" terminator
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil, errors.Is(err, io.EOF) && len(line) > 0: // the last line may lack a newline
			// The bound is on the message; the terminator is not part of it.
			if len(bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))) > c.maxLine {
				return nil, errLineTooLong
			}
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// logStderr logs the child's stderr line by line.
func (c *child) logStderr() {
	defer close(c.stderrDone)
	r := bufio.NewReaderSize(c.stderr, maxStderrLine)
	for {
		line, more, err := r.ReadLine()
		if err != nil {
			return
		}
		c.log.Info("stdio: child stderr", "line", string(line), "truncated", more)
		for more && err == nil {
			_, more, err = r.ReadLine()
		}
	}
}

// exitStatus describes how the child ended, for the log.
func (c *child) exitStatus() string {
	if c.waitErr == nil {
		return "exit status 0"
	}
	return c.waitErr.Error()
}

// decodeMessages parses one JSON-RPC message or a batch (an array).
func decodeMessages(data []byte) (msgs []jsonrpc.Message, batch bool, err error) {
	if len(data) > 0 && data[0] == '[' {
		var raws []json.RawMessage
		if err := json.Unmarshal(data, &raws); err != nil {
			return nil, true, err
		}
		if len(raws) == 0 {
			return nil, true, errors.New("empty batch")
		}
		for _, raw := range raws {
			m, err := decodeMessage(raw)
			if err != nil {
				return nil, true, fmt.Errorf("batch element: %w", err)
			}
			msgs = append(msgs, m)
		}
		return msgs, true, nil
	}
	m, err := decodeMessage(data)
	if err != nil {
		return nil, false, err
	}
	return []jsonrpc.Message{m}, false, nil
}

var errNoMethod = errors.New("request without a method")

// decodeMessage is jsonrpc.DecodeMessage refusing what would not survive
// re-encoding: the SDK accepts "method":"" but writes the request without
// a method, which the other side reads as a response or not at all.
func decodeMessage(data []byte) (jsonrpc.Message, error) {
	m, err := jsonrpc.DecodeMessage(data)
	if err != nil {
		return nil, err
	}
	if r, ok := m.(*jsonrpc.Request); ok && r.Method == "" {
		return nil, errNoMethod
	}
	return m, nil
}
