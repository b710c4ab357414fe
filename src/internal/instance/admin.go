package instance

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// AdminClientName is the name the agent's admin connection gives itself
// (CLIENT SETNAME), so CLIENT LIST tells it from tenants' connections.
const AdminClientName = "platform-admin"

// adminBufferSize is the read and write buffer of an admin connection:
// its requests and replies are small, and a larger reply (CLIENT LIST)
// only grows a slice while it is read. go-redis's default of 32 KiB each
// would cost 64 KiB per instance.
const adminBufferSize = 1 << 10

// newAdminClient is the one admin connection the agent keeps to a running
// server: opened as soon as the server answers, kept open (no idle
// timeout), and redialled on its next use when it broke. Every dial logs
// in with the admin password of the record as stored then, exempts the
// connection from the eviction of clients by maxmemory-clients (CLIENT
// NO-EVICT) and names it, so that it keeps its slot while tenants' or
// strangers' connections fill maxclients. Pool size one serialises the
// agent's commands; go-redis starts no goroutine for an idle connection.
func (s *Server) newAdminClient() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: s.addr(s.current()),
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			// The record's port, as stored at every dial; with TLS to
			// a TLS-only instance.
			r := s.current()
			var d net.Dialer
			c, err := d.DialContext(ctx, network, s.addr(r))
			if err == nil {
				if conf := s.clientTLS(r); conf != nil {
					tc := tls.Client(c, conf)
					if err = tc.HandshakeContext(ctx); err != nil {
						c.Close()
					}
					c = tc
				}
			}
			if err != nil {
				// go-redis's pool, once as many dials as its size
				// failed, answers every later command with that error
				// for as long as its own redial, once a second, fails:
				// a server the supervisor restarted would stay
				// unreachable for up to a second after it serves again.
				// A failed dial is handed over as a connection that
				// fails its first use instead, so each command dials.
				return failedConn{err: err}, nil
			}
			return c, nil
		},
		CredentialsProvider: func() (string, string) { return AdminUser, s.current().AdminPassword },
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			for _, args := range [][]any{{"CLIENT", "SETNAME", AdminClientName}, {"CLIENT", "NO-EVICT", "on"}} {
				// A server busy in a script answers BUSY: the
				// connection still serves SCRIPT KILL and SHUTDOWN,
				// and is marked the next time it is dialled.
				if err := cn.Do(ctx, args...).Err(); err != nil && !isBusy(err) {
					return err
				}
			}
			return nil
		},
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		// One retry, on a new connection, when the old one broke: the
		// server restarted, or was restarted, since the last command.
		MaxRetries:      1,
		MinRetryBackoff: 10 * time.Millisecond,
		MaxRetryBackoff: 100 * time.Millisecond,
		DialerRetries:   1,
		PoolSize:        1,
		// Pipelines and transactions on the one connection too: a pool of
		// their own would open a second connection, with 128 KiB buffers.
		PipelinePoolSize: -1,
		MaxIdleConns:     1,
		ConnMaxIdleTime:  -1,
		PoolTimeout:      adminTimeout,
		DialTimeout:      2 * time.Second,
		ReadTimeout:      adminTimeout,
		WriteTimeout:     adminTimeout,
		// A guard's check gives up at its context's deadline, sooner than
		// a verb's command.
		ContextTimeoutEnabled: true,
		ReadBufferSize:        adminBufferSize,
		WriteBufferSize:       adminBufferSize,
	})
}

// failedConn is a dial that failed, as a connection whose every use
// returns the dial's error (see newAdminClient).
type failedConn struct {
	net.Conn
	err error
}

func (c failedConn) Read([]byte) (int, error)         { return 0, c.err }
func (c failedConn) Write([]byte) (int, error)        { return 0, c.err }
func (c failedConn) Close() error                     { return nil }
func (c failedConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c failedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c failedConn) SetDeadline(time.Time) error      { return nil }
func (c failedConn) SetReadDeadline(time.Time) error  { return nil }
func (c failedConn) SetWriteDeadline(time.Time) error { return nil }

// Admin returns the agent's admin connection to the running server (see
// newAdminClient). It is shared: the caller must not close it.
func (s *Server) Admin() *redis.Client { return s.admin.Load() }

// adminDo runs one command on the admin connection.
func (s *Server) adminDo(ctx context.Context, args ...any) error {
	return s.Admin().Do(ctx, args...).Err()
}

// renewAdmin closes the admin connection of a server that stopped and
// makes a new one, dialled at its first use.
func (s *Server) renewAdmin() {
	if old := s.admin.Swap(s.newAdminClient()); old != nil {
		old.Close()
	}
}

// redisError reports whether err is a reply of Redis with the error code
// code ("BUSY", "UNKILLABLE", "WRONGPASS", ...).
func redisError(err error, code string) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), code+" ")
}

func isBusy(err error) bool { return redisError(err, "BUSY") }

// isTimeout reports whether err is a command the server did not answer
// in time.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// lostAdmin reports whether err says the admin user's password is no
// longer the one the agent knows, or the user is gone: on a follower, only
// a leader's replication stream can do that.
func lostAdmin(err error) bool {
	return redisError(err, "WRONGPASS") || redisError(err, "NOAUTH")
}
