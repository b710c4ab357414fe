// Package secret makes the random passwords that the platform hands out.
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// alphabet holds only characters that need no escaping in a redis:// URI, a
// shell, JSON or a Redis ACL rule.
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// Length is the number of characters of a password from New: 48 characters of
// a 62-letter alphabet carry about 285 bits.
const Length = 48

// New returns a password of Length characters drawn with crypto/rand.
func New() string {
	out := make([]byte, 0, Length)
	buf := make([]byte, 2*Length)
	for len(out) < Length {
		// Since Go 1.24 rand.Read never returns an error: it crashes the
		// program rather than hand out predictable bytes.
		_, _ = rand.Read(buf)
		for _, b := range buf {
			// 248 is the largest multiple of 62 below 256: rejecting bytes
			// above it keeps every character equally likely.
			if b < 248 && len(out) < Length {
				out = append(out, alphabet[b%62])
			}
		}
	}
	return string(out)
}

// Hash returns the hex SHA-256 of a password, the form Redis ACL rules accept
// after '#', so a password need not be stored where only its check is needed.
func Hash(password string) string {
	sum := sha256.Sum256([]byte(password))
	return hex.EncodeToString(sum[:])
}
