//go:build !linux

package procsec

// Harden does nothing outside Linux.
func Harden() error { return ErrUnsupported }

// Dumpable cannot be read outside Linux.
func Dumpable() (bool, error) { return true, ErrUnsupported }
