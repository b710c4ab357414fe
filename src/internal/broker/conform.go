package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strings"

	"code.cloudfoundry.org/brokerapi/v13/domain"
)

// The OSB conformance layer: what the specification asks of every request and
// every error answer where brokerapi answers otherwise. It runs in front of
// brokerapi (which is used as it is, not patched):
//
//   - a malformed body, one that is not a JSON object, a field of the wrong
//     type and a Content-Type other than application/json are 400 (brokerapi:
//     422 and, from our old guard, 415);
//   - service_id and plan_id are checked against the catalog on every verb:
//     required on provision, bind, unbind and deprovision, service_id on
//     update, and checked when given on update (plan_id), last_operation,
//     binding last_operation and the GETs; brokerapi checks provision only
//     and leaves the rest to brokers. They are checked before whether the
//     instance or binding exists, so a request with valid ids for an instance
//     that is gone is 410, one with unknown ids 400;
//   - a missing or non-2.x X-Broker-API-Version is 412 with a "description"
//     (brokerapi writes "Description");
//   - every error answer is a JSON object with a non-empty "description":
//     brokerapi's empty 404 and 410 bodies and the router's text/plain 404
//     and 405 are rewritten (see errorWriter).
//
// Basic auth (401 with a WWW-Authenticate challenge) runs before all of it, in
// Handler.

// apiRoute is what an OSB request's path names.
type apiRoute struct {
	kind     routeKind
	instance string
	binding  string
}

type routeKind int

const (
	routeOther routeKind = iota
	routeCatalog
	routeInstance
	routeInstanceLastOp
	routeBinding
	routeBindingLastOp
)

// parseRoute reads the OSB route of u's path, as brokerapi's router matches
// it (segments unescaped one by one).
func parseRoute(u *url.URL) apiRoute {
	raw := strings.Split(strings.TrimPrefix(u.EscapedPath(), "/"), "/")
	seg := make([]string, len(raw))
	for i, s := range raw {
		v, err := url.PathUnescape(s)
		if err != nil || v == "" {
			return apiRoute{}
		}
		seg[i] = v
	}
	switch {
	case len(seg) == 2 && seg[0] == "v2" && seg[1] == "catalog":
		return apiRoute{kind: routeCatalog}
	case len(seg) < 3 || seg[0] != "v2" || seg[1] != "service_instances":
		return apiRoute{}
	}
	r := apiRoute{instance: seg[2]}
	switch rest := seg[3:]; {
	case len(rest) == 0:
		r.kind = routeInstance
	case len(rest) == 1 && rest[0] == "last_operation":
		r.kind = routeInstanceLastOp
	case len(rest) == 2 && rest[0] == "service_bindings":
		r.kind, r.binding = routeBinding, rest[1]
	case len(rest) == 3 && rest[0] == "service_bindings" && rest[2] == "last_operation":
		r.kind, r.binding = routeBindingLastOp, rest[1]
	default:
		return apiRoute{}
	}
	return r
}

// requestError is a request the conformance layer refuses, with its status.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func invalid(format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// conform wraps brokerapi's handler with the conformance layer. The caller
// authenticates first.
func (b *Broker) conform(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := parseRoute(r.URL)
		ew := &errorWriter{ResponseWriter: w, method: r.Method, path: r.URL.Path, route: rt}
		defer ew.finish()
		if err := checkAPIVersion(r.Header.Get("X-Broker-API-Version")); err != nil {
			writeJSONError(ew, http.StatusPreconditionFailed, err.Error())
			return
		}
		if err := b.checkRequest(w, r, rt); err != nil {
			var re *requestError
			if !errors.As(err, &re) {
				re = invalid("%s", err.Error())
			}
			writeJSONError(ew, re.status, re.msg)
			return
		}
		api.ServeHTTP(ew, r)
	})
}

// checkAPIVersion applies brokerapi's rule (a 2.x version) before anything
// else of the request is looked at, so a request without the header is 412
// whatever else is wrong with it.
func checkAPIVersion(v string) error {
	if v == "" {
		return errors.New("the X-Broker-API-Version header is missing: this broker speaks OSB 2.x (2.14 or later)")
	}
	var major, minor int
	if n, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil || n < 2 {
		return fmt.Errorf("X-Broker-API-Version %q is not a version such as 2.14", v)
	}
	if major != 2 {
		return fmt.Errorf("X-Broker-API-Version %q is not supported: this broker speaks OSB 2.x (2.14 or later)", v)
	}
	return nil
}

// checkRequest checks the body (PUT and PATCH) and the service and plan ids
// of a request. It leaves r.Body readable again for brokerapi.
func (b *Broker) checkRequest(w http.ResponseWriter, r *http.Request, rt apiRoute) error {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodPut && rt.kind == routeInstance:
		var d domain.ProvisionDetails
		if err := readBody(w, r, &d); err != nil {
			return err
		}
		return b.checkIDs(d.ServiceID, d.PlanID, true, true)
	case r.Method == http.MethodPatch && rt.kind == routeInstance:
		var d domain.UpdateDetails
		if err := readBody(w, r, &d); err != nil {
			return err
		}
		return b.checkIDs(d.ServiceID, d.PlanID, true, false)
	case r.Method == http.MethodPut && rt.kind == routeBinding:
		var d domain.BindDetails
		if err := readBody(w, r, &d); err != nil {
			return err
		}
		return b.checkIDs(d.ServiceID, d.PlanID, true, true)
	case r.Method == http.MethodDelete && (rt.kind == routeInstance || rt.kind == routeBinding):
		return b.checkIDs(q.Get("service_id"), q.Get("plan_id"), true, true)
	case r.Method == http.MethodGet && rt.kind != routeOther && rt.kind != routeCatalog:
		return b.checkIDs(q.Get("service_id"), q.Get("plan_id"), false, false)
	}
	return nil
}

// checkIDs checks a request's service_id and plan_id against the catalog;
// an empty one is refused when it is required and otherwise not checked.
func (b *Broker) checkIDs(serviceID, planID string, needService, needPlan bool) error {
	switch {
	case serviceID == "" && needService:
		return invalid("service_id is required: the id of this broker's service in the catalog")
	case serviceID != "" && serviceID != b.cfg.Catalog.ServiceID:
		return invalid("service_id %q is not in the catalog: this broker offers service %q", serviceID, b.cfg.Catalog.ServiceID)
	case planID == "" && needPlan:
		return invalid("plan_id is required: the id of one of this service's plans in the catalog")
	case planID != "" && !b.knownPlan(planID):
		return invalid("plan_id %q is not in the catalog: it is not a plan of this service", planID)
	}
	return nil
}

// readBody reads an OSB request body (at most maxBody) into into, after
// checking it is application/json (when a Content-Type is given) and one JSON
// object whose fields have into's types, and puts it back for brokerapi.
func readBody(w http.ResponseWriter, r *http.Request, into any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return invalid("request bodies must be application/json, not %q", ct)
		}
	}
	tooBig := &requestError{status: http.StatusRequestEntityTooLarge, msg: "request body is larger than 1 MiB"}
	if r.ContentLength > maxBody {
		return tooBig
	}
	var data []byte
	if r.Body != nil {
		// Read here, not in brokerapi, so a chunked body over the limit is a
		// 413 too rather than a 400 for bad JSON.
		var err error
		data, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		var maxErr *http.MaxBytesError
		switch {
		case errors.As(err, &maxErr):
			return tooBig
		case err != nil:
			return invalid("the request body could not be read")
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(data))
	return decodeObject(data, into)
}

// decodeObject decodes data, which must be exactly one JSON object, into
// into, and says what is wrong with it otherwise.
func decodeObject(data []byte, into any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return invalid("the request body is empty: it must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var v any
	if err := dec.Decode(&v); err != nil {
		return invalid("the request body is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("the request body is not valid JSON: extra data after the JSON object")
	}
	if _, ok := v.(map[string]any); !ok {
		return invalid("the request body must be a JSON object, not %s", jsonKind(v))
	}
	if err := json.Unmarshal(data, into); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return invalid("field %s must be %s, not %s", te.Field, goKind(te.Type), article(te.Value))
		}
		return invalid("the request body does not fit the OSB request: %v", err)
	}
	return nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "an object"
}

func goKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map, reflect.Pointer:
		return "an object"
	}
	return "a number"
}

// article puts "a" or "an" before a JSON type name from encoding/json.
func article(kind string) string {
	if kind == "" {
		return "a value of another type"
	}
	if strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

// errorWriter makes every error answer (4xx, 5xx) a JSON object with a
// non-empty "description", as the OSB specification describes error bodies:
// it holds back the body of an error answer and, when finish is called,
// writes it with "Description" renamed "description", or with a description
// made from the request when it had none (brokerapi's {} for 404 and 410, the
// router's text for 404 and 405). Other answers pass through untouched.
type errorWriter struct {
	http.ResponseWriter
	method, path string
	route        apiRoute
	status       int
	body         bytes.Buffer
}

func (e *errorWriter) WriteHeader(status int) {
	if e.status != 0 {
		return
	}
	e.status = status
	if status < http.StatusBadRequest {
		e.ResponseWriter.WriteHeader(status)
	}
}

func (e *errorWriter) Write(p []byte) (int, error) {
	if e.status == 0 {
		e.WriteHeader(http.StatusOK)
	}
	if e.status >= http.StatusBadRequest {
		return e.body.Write(p)
	}
	return e.ResponseWriter.Write(p)
}

// finish writes the error answer held back, if any.
func (e *errorWriter) finish() {
	if e.status < http.StatusBadRequest {
		return
	}
	out := e.body.Bytes()
	obj := map[string]any{}
	if err := json.Unmarshal(out, &obj); err != nil || obj == nil {
		obj = map[string]any{}
	}
	_, upper := obj["Description"]
	if s, _ := obj["description"].(string); s == "" || upper {
		if _, has := obj["description"]; !has && upper {
			obj["description"] = obj["Description"]
		}
		delete(obj, "Description")
		if s, _ := obj["description"].(string); s == "" {
			obj["description"] = e.describe()
		}
		var err error
		if out, err = json.Marshal(obj); err != nil {
			out = []byte(`{"description":"the broker could not answer"}`)
		}
		out = append(out, '\n')
	}
	h := e.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	h.Del("X-Content-Type-Options")
	e.ResponseWriter.WriteHeader(e.status)
	_, _ = e.ResponseWriter.Write(out)
}

// describe says what an error answer without a description means, from the
// request it answers.
func (e *errorWriter) describe() string {
	rt := e.route
	switch {
	case e.status == http.StatusMethodNotAllowed:
		return fmt.Sprintf("%s is not allowed on %s", e.method, e.path)
	case rt.kind == routeOther && e.status == http.StatusNotFound:
		return fmt.Sprintf("%s is not an endpoint of this broker", e.path)
	case (rt.kind == routeBinding || rt.kind == routeBindingLastOp) && e.status == http.StatusGone:
		return fmt.Sprintf("binding %s of instance %s does not exist", rt.binding, rt.instance)
	case (rt.kind == routeBinding || rt.kind == routeBindingLastOp) && e.status == http.StatusNotFound:
		return fmt.Sprintf("binding %s of instance %s does not exist or is not ready", rt.binding, rt.instance)
	case rt.kind != routeOther && rt.kind != routeCatalog && e.status == http.StatusGone:
		return fmt.Sprintf("instance %s does not exist", rt.instance)
	case rt.kind != routeOther && rt.kind != routeCatalog && e.status == http.StatusNotFound:
		return fmt.Sprintf("instance %s does not exist or is not ready", rt.instance)
	}
	if t := http.StatusText(e.status); t != "" {
		return t
	}
	return fmt.Sprintf("the request failed with status %d", e.status)
}
