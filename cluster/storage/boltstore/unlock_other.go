//go:build windows || plan9 || solaris || aix || android

package boltstore

import "os"

// unlockFile does nothing: on these systems bbolt's lock goes with the file
// handle (Windows) or the process's descriptors of the file (fcntl locks),
// so closing f releases it.
func unlockFile(*os.File) {}
