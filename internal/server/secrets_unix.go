//go:build unix

package server

import (
	"io/fs"
	"syscall"
)

// readableBy reports whether uid (with primary group gid and no other
// groups, as stdio children run) may read the file by its permission bits.
func readableBy(fi fs.FileInfo, uid, gid int) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true // unknown: assume the worst
	}
	perm := fi.Mode().Perm()
	switch {
	case int(st.Uid) == uid:
		return perm&0o400 != 0
	case int(st.Gid) == gid:
		return perm&0o040 != 0
	}
	return perm&0o004 != 0
}
