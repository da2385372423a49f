//go:build !windows && !plan9 && !solaris && !aix && !android

package boltstore

import (
	"os"
	"syscall"
)

// unlockFile releases the lock bbolt took on f. bbolt locks with flock here,
// and a flock lock lives as long as the open file, which the memory map
// bbolt made keeps open even after f is closed.
func unlockFile(f *os.File) {
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
