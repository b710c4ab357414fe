// Package portalloc chooses the TCP port of a new instance on a shared VM.
//
// The agent calls Next while it holds its state lock and stores the port in the
// instance's record in the same transaction, before the process starts. The
// record is the reservation: no port is picked, released and picked again,
// so two instances can never be given one port.
package portalloc

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Range is an inclusive range of TCP ports. The zero value is empty; agents
// default to Default.
type Range struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// Default is the range the product documents open to app networks.
var Default = Range{Min: 32768, Max: 61000}

// Validate reports a range that is empty or outside 1-65535.
func (r Range) Validate() error {
	if r.Min < 1 || r.Max > 65535 || r.Min > r.Max {
		return fmt.Errorf("port range %d-%d must lie within 1-65535 with min <= max", r.Min, r.Max)
	}
	return nil
}

// Size is the number of ports in the range.
func (r Range) Size() int { return r.Max - r.Min + 1 }

// ErrExhausted means every port of the range is reserved or in use.
var ErrExhausted = errors.New("no free port left in the range")

// Next returns the first port of r after the port last (wrapping around to
// r.Min) that used does not hold and available accepts. Starting after the last
// port handed out keeps a port just freed by a deleted instance from going to
// the next tenant at once, while a restarted agent still finds every gap.
// available may be nil.
func Next(r Range, used map[int]bool, last int, available func(port int) bool) (int, error) {
	if err := r.Validate(); err != nil {
		return 0, err
	}
	start := last + 1
	if start < r.Min || start > r.Max {
		start = r.Min
	}
	for i := 0; i < r.Size(); i++ {
		port := r.Min + (start-r.Min+i)%r.Size()
		if used[port] {
			continue
		}
		if available != nil && !available(port) {
			continue
		}
		return port, nil
	}
	return 0, ErrExhausted
}

// Listenable returns a check that a port can be bound on host right now. It
// skips ports that a process outside the agent's records holds; it reserves
// nothing.
func Listenable(host string) func(port int) bool {
	return func(port int) bool {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		_ = l.Close()
		return true
	}
}
