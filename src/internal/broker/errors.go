package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"code.cloudfoundry.org/brokerapi/v13/domain/apiresponses"
	"code.cloudfoundry.org/brokerapi/v13/middlewares"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
)

// Domain errors. Their messages are written for the app developer who will
// read them in `cf service`; anything else stays in the broker's log.
var (
	// ErrPlanFull means the plan has no room for another instance.
	ErrPlanFull = errors.New("plan full")
	// errNoAgent means no VM that could hold a new instance could be
	// reached.
	errNoAgent = errors.New("no agent reachable")
)

// userError is an error whose message is safe and useful to show a user,
// with the HTTP status and OSB error code it answers with.
type userError struct {
	status int
	code   string // OSB "error" field; empty for none
	msg    string
	cause  error
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.cause }

func badRequest(format string, args ...any) error {
	return &userError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func unprocessable(code, format string, args ...any) error {
	return &userError{status: http.StatusUnprocessableEntity, code: code, msg: fmt.Sprintf(format, args...)}
}

// respond turns any error of a broker method into the response Cloud
// Controller gets. It is the only place where errors meet HTTP statuses: the
// user sees a message saying what to do and a request id, the operator finds
// the cause in the log under that request id.
func (b *Broker) respond(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var fr *apiresponses.FailureResponse
	if errors.As(err, &fr) {
		return fr
	}
	rid := requestID(ctx)
	var ue *userError
	switch {
	case errors.As(err, &ue):
		b.logger.Info(op+" refused", "request_id", rid, "reason", err.Error())
		return build(ue.status, ue.code, ue.msg, op)
	case errors.Is(err, params.ErrInvalid):
		b.logger.Info(op+" refused", "request_id", rid, "reason", err.Error())
		return build(http.StatusBadRequest, "", err.Error(), op)
	case errors.Is(err, errNoAgent):
		// Checked first: it wraps the unreachable VMs' own errors, and no
		// VM holds the instance yet.
		b.logger.Error(op+" failed", "request_id", rid, "error", err)
		return build(http.StatusServiceUnavailable, "",
			fmt.Sprintf("The Redis service could not reach any VM that could hold a new instance. Try again in a few minutes; if it persists, give your operator request id %s.", rid), op)
	case errors.Is(err, agentapi.ErrUnavailable):
		b.logger.Error(op+" failed", "request_id", rid, "error", err)
		return build(http.StatusServiceUnavailable, "",
			fmt.Sprintf("The Redis service could not reach the VM holding the instance. Try again in a few minutes; if it persists, give your operator request id %s.", rid), op)
	default:
		b.logger.Error(op+" failed", "request_id", rid, "error", err)
		return build(http.StatusInternalServerError, "",
			fmt.Sprintf("The Redis service failed. Give your operator request id %s: the cause is in the broker's log.", rid), op)
	}
}

func build(status int, code, msg, op string) error {
	b := apiresponses.NewFailureResponseBuilder(errors.New(msg), status, op)
	if code != "" {
		b = b.WithErrorKey(code)
	}
	return b.Build()
}

// requestID returns the id brokerapi gave the request (from X-Request-ID or
// Cloud Controller's X-Vcap-Request-Id when present).
func requestID(ctx context.Context) string {
	if v, ok := ctx.Value(middlewares.CorrelationIDKey).(string); ok && v != "" {
		return v
	}
	return "unknown"
}
