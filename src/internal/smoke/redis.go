package smoke

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/tlsca"
)

// redisOptions reads a binding's uri as an app's Redis library would.
func redisOptions(uri string, red *redactor) (*redis.Options, error) {
	opts, err := redis.ParseURL(uri)
	if err != nil {
		// ParseURL's errors may quote the uri: blanked out by the caller's
		// redactor, which knows it already.
		return nil, fmt.Errorf("the binding's uri is not a Redis URL: %s", red.redact(err.Error()))
	}
	opts.DialTimeout = 10 * time.Second
	opts.ReadTimeout = 10 * time.Second
	opts.WriteTimeout = 10 * time.Second
	opts.PoolSize = 1
	// The steps say themselves what they expect of a failure.
	opts.MaxRetries = -1
	return opts, nil
}

// redisTLSOptions reads a binding's tls_uri (rediss://) as an app's Redis
// library would, trusting only the binding's tls_ca to verify the server.
func redisTLSOptions(uri, caPEM string, red *redactor) (*redis.Options, error) {
	opts, err := redisOptions(uri, red)
	if err != nil {
		return nil, fmt.Errorf("tls_uri: %w", err)
	}
	if opts.TLSConfig == nil {
		return nil, errors.New("the binding's tls_uri does not ask for TLS (it is not rediss://)")
	}
	pool, err := tlsca.Pool(caPEM)
	if err != nil {
		return nil, fmt.Errorf("the binding's tls_ca %w", err)
	}
	opts.TLSConfig.RootCAs = pool
	opts.TLSConfig.MinVersion = tls.VersionTLS12
	return opts, nil
}

// writeRead writes a random value and reads it back, then deletes it.
func writeRead(ctx context.Context, opts *redis.Options, instanceID string) error {
	c := redis.NewClient(opts)
	defer c.Close()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	key, value := "smoke-tests:"+instanceID, hex.EncodeToString(b)
	if err := c.Set(ctx, key, value, 10*time.Minute).Err(); err != nil {
		return fmt.Errorf("SET %s with the binding's credentials: %w", key, err)
	}
	got, err := c.Get(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("GET %s with the binding's credentials: %w", key, err)
	}
	if got != value {
		return fmt.Errorf("GET %s returned %q, not the %q just written", key, got, value)
	}
	if err := c.Del(ctx, key).Err(); err != nil {
		return fmt.Errorf("DEL %s with the binding's credentials: %w", key, err)
	}
	return nil
}

// forbidden checks that CONFIG GET, which the platform keeps for itself, is
// refused with NOPERM.
func forbidden(ctx context.Context, opts *redis.Options) error {
	c := redis.NewClient(opts)
	defer c.Close()
	err := c.ConfigGet(ctx, "maxmemory").Err()
	switch {
	case err == nil:
		return errors.New("CONFIG GET maxmemory succeeded with the binding's credentials: apps can read the platform's settings")
	case !isServerError(err) || !strings.Contains(err.Error(), "NOPERM"):
		return fmt.Errorf("CONFIG GET maxmemory failed, but not with NOPERM: %w", err)
	}
	return nil
}

// revoked checks that the credentials of a deleted binding are refused: a
// new connection's AUTH fails. The broker deletes the user before it
// answers the unbind, so this is expected at once; a few seconds are
// allowed for a broker that does it later.
func revoked(ctx context.Context, opts *redis.Options) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := redis.NewClient(opts)
		err := c.Ping(ctx).Err()
		c.Close()
		switch {
		case err != nil && isServerError(err):
			// WRONGPASS: Redis refused the user, as it should.
			return nil
		case err != nil:
			return fmt.Errorf("connecting with the unbound credentials failed, but not because Redis refused them: %w", err)
		case time.Now().After(deadline):
			return errors.New("the unbound credentials still work 10s after the unbind")
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// isServerError reports whether err is an error reply of Redis (not a
// network failure).
func isServerError(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil)
}
