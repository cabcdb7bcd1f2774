package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// probeReport is what a stdio child could read of its parent, the gateway.
type probeReport struct {
	PPID    int    `json:"ppid"`
	Parent  string `json:"parent"`  // the parent's name from /proc/PPID/status (readable by anyone)
	Environ string `json:"environ"` // "denied: …" or what was read
	Mem     string `json:"mem"`
	Store   string `json:"store"`
	Key     bool   `json:"key_seen"` // the encryption key appeared in what was read
}

// runProbe is a stdio MCP server with one tool, probe, that tries to read
// the gateway's environment, memory and store.
func runProbe() {
	s := mcp.NewServer(&mcp.Implementation{Name: "probe", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "probe"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, probeReport, error) {
		return nil, probe(os.Getenv("PROBE_STORE"), os.Getenv("PROBE_KEY_SHA256")), nil
	})
	_ = s.Run(context.Background(), &mcp.StdioTransport{})
}

func probe(storePath, keyHash string) probeReport {
	ppid := os.Getppid()
	proc := "/proc/" + strconv.Itoa(ppid)
	r := probeReport{PPID: ppid}
	if st, err := os.ReadFile(proc + "/status"); err == nil {
		r.Parent, _, _ = strings.Cut(strings.TrimPrefix(string(st), "Name:\t"), "\n")
	}
	seen := func(b []byte) {
		// Look for the key, by hash, among the variables' values.
		for _, kv := range strings.Split(string(b), "\x00") {
			_, v, _ := strings.Cut(kv, "=")
			if h := sha256.Sum256([]byte(v)); fmt.Sprintf("%x", h) == keyHash {
				r.Key = true
			}
		}
	}
	if b, err := os.ReadFile(proc + "/environ"); err != nil {
		r.Environ = "denied: " + err.Error()
	} else {
		r.Environ = fmt.Sprintf("read %d bytes", len(b))
		seen(b)
	}
	r.Mem = readMem(proc)
	if b, err := os.ReadFile(storePath); err != nil {
		r.Store = "denied: " + err.Error()
	} else {
		r.Store = fmt.Sprintf("read %d bytes", len(b))
	}
	return r
}

// readMem reads the first readable mapping of the parent's memory.
func readMem(proc string) string {
	f, err := os.Open(proc + "/mem")
	if err != nil {
		return "denied: " + err.Error()
	}
	defer f.Close()
	maps, err := os.Open(proc + "/maps")
	if err != nil {
		return "opened, maps denied: " + err.Error()
	}
	defer maps.Close()
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || !strings.HasPrefix(fields[1], "r") {
			continue
		}
		start, _ := strconv.ParseUint(strings.Split(fields[0], "-")[0], 16, 64)
		buf := make([]byte, 64)
		n, err := f.ReadAt(buf, int64(start))
		if n > 0 {
			return fmt.Sprintf("read %d bytes", n)
		}
		return "read failed: " + err.Error()
	}
	return "no readable mapping"
}
