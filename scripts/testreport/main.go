// Command testreport reads `go test -json` on stdin, prints one line per
// package, the output of every failed test, and a closing
// "N passed, N failed, N skipped" line. It exits 1 if anything failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	var passed, failed, skipped int
	output := map[string]*strings.Builder{} // package/test → output
	var failures []string
	pkgFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			fmt.Println(string(line)) // build errors arrive as plain text
			if strings.Contains(string(line), "build failed") || strings.HasPrefix(string(line), "#") {
				pkgFailed = true
			}
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			b := output[key]
			if b == nil {
				b = &strings.Builder{}
				output[key] = b
			}
			b.WriteString(e.Output)
		case "pass":
			if e.Test != "" {
				passed++
			} else {
				fmt.Printf("ok   %-60s %.1fs\n", e.Package, e.Elapsed)
			}
			delete(output, key)
		case "skip":
			if e.Test != "" {
				skipped++
			}
			delete(output, key)
		case "fail":
			if e.Test != "" {
				failed++
				failures = append(failures, key)
			} else {
				pkgFailed = true // also catches a package that fails outside any test (panic, TestMain)
				fmt.Printf("FAIL %-60s %.1fs\n", e.Package, e.Elapsed)
				if b := output[key]; b != nil {
					fmt.Print(b.String())
				}
			}
		}
	}
	sort.Strings(failures)
	for _, k := range failures {
		fmt.Printf("\n--- FAIL: %s\n", k)
		if b := output[k]; b != nil {
			fmt.Print(b.String())
		}
	}
	fmt.Printf("go: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || pkgFailed {
		os.Exit(1)
	}
}
