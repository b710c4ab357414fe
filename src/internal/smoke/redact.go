package smoke

import (
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// redactor writes to out with every secret it was given blanked out, in the
// forms a secret takes in messages: as is, and escaped as in a URL.
type redactor struct {
	out     io.Writer
	mu      sync.Mutex
	secrets []string
}

func (r *redactor) add(secret string) {
	if secret == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret), url.UserPassword("x", secret).String()[2:]} {
		if s != "" && !strings.Contains(s, "\x00") {
			r.secrets = append(r.secrets, s)
		}
	}
	// A URI's password is a secret of its own, beside the whole URI.
	if u, err := url.Parse(secret); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			r.secrets = append(r.secrets, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
}

func (r *redactor) redact(s string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Longest first: a URI is blanked out whole before its password.
	for _, secret := range longestFirst(r.secrets) {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return s
}

func longestFirst(s []string) []string {
	out := slices.Clone(s)
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// Write writes p, redacted; each call must hold whole lines.
func (r *redactor) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.out, r.redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
