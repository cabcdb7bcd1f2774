//go:build !unix

package server

import "io/fs"

// readableBy is unused without Unix users (run_as needs Unix).
func readableBy(fs.FileInfo, int, int) bool { return false }
