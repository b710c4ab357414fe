package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/redis/go-redis/v9"
)

// maxBody bounds a PUT's form body; a larger one gets 413.
const maxBody = 1 << 20

// app serves the example's HTTP API over one Redis client.
type app struct {
	redis *redis.Client
	log   *slog.Logger
}

// handler routes the API that Pivotal's cf-redis-example-app documents:
// PUT, GET and DELETE /{key}, and GET /config/{item}.
func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.usage)
	mux.HandleFunc("PUT /{key}", a.put)
	mux.HandleFunc("GET /{key}", a.get)
	mux.HandleFunc("DELETE /{key}", a.delete)
	mux.HandleFunc("GET /config/{item}", a.config)
	return mux
}

const usageText = `Redis example app: stores values in the bound Redis service instance.

  curl -X PUT  APP/foo -d data=bar    stores bar at key foo       201 success
  curl         APP/foo                 answers the value           200 bar, or 404 key not present
  curl -X DELETE APP/foo               deletes the key             200 success, or 404 key not present
  curl         APP/config/maxmemory    a Redis configuration value (the service may not allow it: 403)
`

func (a *app) usage(w http.ResponseWriter, r *http.Request) {
	reply(w, http.StatusOK, usageText)
}

func (a *app) put(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			reply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes", maxBody))
			return
		}
		reply(w, http.StatusBadRequest, "the request body is not a form (application/x-www-form-urlencoded): "+err.Error())
		return
	}
	if _, ok := r.Form["data"]; !ok {
		reply(w, http.StatusBadRequest, "data field missing: send the value as the form field data, e.g. curl -X PUT APP/"+
			r.PathValue("key")+" -d data=VALUE")
		return
	}
	if err := a.redis.Set(r.Context(), r.PathValue("key"), r.Form.Get("data"), 0).Err(); err != nil {
		a.fail(w, r, err)
		return
	}
	reply(w, http.StatusCreated, "success")
}

func (a *app) get(w http.ResponseWriter, r *http.Request) {
	value, err := a.redis.Get(r.Context(), r.PathValue("key")).Result()
	switch {
	case errors.Is(err, redis.Nil):
		reply(w, http.StatusNotFound, "key not present")
	case err != nil:
		a.fail(w, r, err)
	default:
		reply(w, http.StatusOK, value)
	}
}

func (a *app) delete(w http.ResponseWriter, r *http.Request) {
	n, err := a.redis.Del(r.Context(), r.PathValue("key")).Result()
	switch {
	case err != nil:
		a.fail(w, r, err)
	case n == 0:
		reply(w, http.StatusNotFound, "key not present")
	default:
		reply(w, http.StatusOK, "success")
	}
}

func (a *app) config(w http.ResponseWriter, r *http.Request) {
	item := r.PathValue("item")
	values, err := a.redis.ConfigGet(r.Context(), item).Result()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// CONFIG GET takes a glob and any case; answer only the one item named.
	for name, value := range values {
		if strings.EqualFold(name, item) {
			reply(w, http.StatusOK, value)
			return
		}
	}
	reply(w, http.StatusNotFound, fmt.Sprintf("config item %s not found", item))
}

// fail answers a Redis error. What the service refuses to this binding
// (NOPERM: Redis for Cloud Foundry keeps CONFIG for the platform) is 403;
// a full instance is 507; anything else means the app could not use its
// Redis (unreachable, credentials refused) and is 502, logged for the
// operator. Redis's messages name no password.
func (a *app) fail(w http.ResponseWriter, r *http.Request, err error) {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "NOPERM"):
		reply(w, http.StatusForbidden, "the Redis service does not allow this binding that command: "+msg)
	case strings.HasPrefix(msg, "OOM"):
		reply(w, http.StatusInsufficientStorage, "the Redis service instance is full (maxmemory): delete keys or use a larger plan: "+msg)
	default:
		a.log.Error("redis command failed", "method", r.Method, "path", r.URL.Path, "error", msg)
		var netErr net.Error
		if errors.As(err, &netErr) || errors.Is(err, io.EOF) {
			msg = "cannot reach the Redis service instance: " + msg
		} else {
			msg = "the Redis service instance answered an error: " + msg
		}
		reply(w, http.StatusBadGateway, msg)
	}
}

// reply writes a plain-text answer, as cf-redis-example-app does; values
// are sent as stored, so nothing may sniff them into HTML.
func reply(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, body)
}
