package sharedagent_test

import "syscall"

func processAlive(pid int) error { return syscall.Kill(pid, 0) }
