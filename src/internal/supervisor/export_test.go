package supervisor

import "golang.org/x/sys/unix"

// Backoff exposes backoff to the tests.
var Backoff = backoff

// RefusePidfds makes pidfd_open fail with EPERM, as bpm's seccomp profile
// does, until the returned function restores it.
func RefusePidfds() (restore func()) {
	pidfdOpen = func(int, int) (int, error) { return -1, unix.EPERM }
	return func() { pidfdOpen = unix.PidfdOpen }
}

// ReadyPause exposes readyPause to the tests.
var ReadyPause = readyPause
