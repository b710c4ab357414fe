// Package keylock serialises work on one key (an instance id) while work on
// different keys runs at once.
package keylock

import (
	"context"
	"sync"
)

// Map holds one lock per key in use. The zero value is ready to use; a key's
// lock is freed when nobody holds or waits for it.
type Map struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	ch   chan struct{} // holds a token while the key is locked
	refs int
}

// Lock waits for the key's lock and returns its unlock function.
func (k *Map) Lock(key string) func() {
	unlock, _ := k.LockContext(context.Background(), key)
	return unlock
}

// LockContext is Lock that gives up when ctx ends, returning ctx's error.
func (k *Map) LockContext(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*entry{}
	}
	e := k.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; k.release(key, e) }, nil
	case <-ctx.Done():
		k.release(key, e)
		return nil, ctx.Err()
	}
}

func (k *Map) release(key string, e *entry) {
	k.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(k.m, key)
	}
	k.mu.Unlock()
}
