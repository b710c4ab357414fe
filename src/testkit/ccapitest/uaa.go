package ccapitest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// token is UAA's POST /oauth/token: the client authenticates with HTTP
// basic auth (URL-encoded id and secret) or form fields; the grant is
// client_credentials, or password through the "cf" client.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/oauth/token" {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		uaaError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		if want, known := s.opts.Clients[id]; !known || want != secret || id == "" {
			uaaError(w, http.StatusUnauthorized, "unauthorized", "Bad credentials")
			return
		}
	case "password":
		if id != "cf" || secret != "" {
			if want, known := s.opts.Clients[id]; !known || want != secret {
				uaaError(w, http.StatusUnauthorized, "unauthorized", "Bad credentials")
				return
			}
		}
		user := r.PostForm.Get("username")
		if want, known := s.opts.Users[user]; !known || want != r.PostForm.Get("password") || user == "" {
			uaaError(w, http.StatusUnauthorized, "unauthorized", "Bad credentials")
			return
		}
	default:
		uaaError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+r.PostForm.Get("grant_type"))
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	s.mu.Lock()
	s.tokens[tok] = time.Now().Add(s.opts.TokenTTL)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": tok, "token_type": "bearer", "expires_in": int(s.opts.TokenTTL / time.Second),
		"scope": "cloud_controller.admin", "jti": tok[:16],
	})
}

func uaaError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

// authorized checks Cloud Controller's bearer token.
func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, known := s.tokens[tok]
	return known && time.Now().Before(exp)
}
