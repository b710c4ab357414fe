// Package params defines the parameters an app developer may set on an
// instance (cf create-service -c / cf update-service -c): their JSON schema for
// the catalog, their validation, and the redis.conf directives they become.
//
// One table describes each parameter, so the schema the catalog advertises,
// the check the broker applies and the setting the agent writes cannot drift
// apart.
package params

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Parameters are the tenant-settable settings of one instance. The zero value
// is not valid; Defaults returns the settings of a new instance.
type Parameters struct {
	MaxMemoryPolicy      string `json:"maxmemory-policy"`
	NotifyKeyspaceEvents string `json:"notify-keyspace-events"`
	Timeout              int    `json:"timeout"`
	// TLSOnly closes the instance's plaintext port: clients connect with
	// TLS only. It is no redis.conf directive of its own (the agent renders
	// it as "port 0" beside the TLS port), so Directives leaves it out.
	TLSOnly bool `json:"tls_only,omitempty"`
}

// Defaults returns the parameters of an instance created without any.
func Defaults() Parameters {
	return Parameters{MaxMemoryPolicy: "noeviction", NotifyKeyspaceEvents: "", Timeout: 0}
}

// Directive is one redis.conf setting: the same name and value work in the
// file and in CONFIG SET.
type Directive struct {
	Name, Value string
}

// Directives returns the redis.conf settings the parameters stand for, in the
// order of the table.
func (p Parameters) Directives() []Directive {
	return []Directive{
		{"maxmemory-policy", p.MaxMemoryPolicy},
		{"notify-keyspace-events", p.NotifyKeyspaceEvents},
		{"timeout", strconv.Itoa(p.Timeout)},
	}
}

// Validate reports the first parameter whose value is outside its schema.
func (p Parameters) Validate() error {
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = Apply(Parameters{}, raw)
	return err
}

// ErrInvalid marks every error of Apply, so callers can answer 400.
var ErrInvalid = errors.New("invalid parameters")

type field struct {
	name        string
	description string
	schema      map[string]any
	check       func(json.RawMessage, *Parameters) error
}

var policies = []string{
	"noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
	"volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
}

// keyspaceEventFlags are the letters notify-keyspace-events accepts (Redis 7.0).
const keyspaceEventFlags = "KEg$lshzxetdmAn"

const maxTimeout = 31536000 // one year, in seconds

var fields = []field{
	{
		name:        "maxmemory-policy",
		description: "What Redis does when the instance reaches its memory limit. noeviction (the default) refuses writes; the others evict keys.",
		schema:      map[string]any{"type": "string", "enum": policies},
		check: func(raw json.RawMessage, p *Parameters) error {
			var s string
			if json.Unmarshal(raw, &s) != nil || !slices.Contains(policies, s) {
				return fmt.Errorf("must be one of %s", strings.Join(policies, ", "))
			}
			p.MaxMemoryPolicy = s
			return nil
		},
	},
	{
		name:        "notify-keyspace-events",
		description: "Keyspace notifications to publish, as Redis flag letters (for example \"Ex\" for expired keys); empty turns them off.",
		schema:      map[string]any{"type": "string", "pattern": "^[" + regexpEscape(keyspaceEventFlags) + "]*$", "maxLength": 32},
		check: func(raw json.RawMessage, p *Parameters) error {
			var s string
			if json.Unmarshal(raw, &s) != nil || len(s) > 32 || strings.Trim(s, keyspaceEventFlags) != "" {
				return fmt.Errorf("must be a string of the flag letters %s", keyspaceEventFlags)
			}
			p.NotifyKeyspaceEvents = s
			return nil
		},
	},
	{
		name:        "timeout",
		description: "Seconds after which Redis closes an idle client connection; 0 (the default) never closes one.",
		schema:      map[string]any{"type": "integer", "minimum": 0, "maximum": maxTimeout},
		check: func(raw json.RawMessage, p *Parameters) error {
			var n int
			d := json.NewDecoder(bytes.NewReader(raw))
			if d.Decode(&n) != nil || n < 0 || n > maxTimeout {
				return fmt.Errorf("must be a whole number of seconds from 0 to %d", maxTimeout)
			}
			p.Timeout = n
			return nil
		},
	},
	{
		name:        "tls_only",
		description: "true closes the instance's plaintext port: clients connect with TLS only, and new bindings' uri is rediss://. Bindings made before it keep their old uri: bind again. Where the plan allows it.",
		schema:      map[string]any{"type": "boolean"},
		check: func(raw json.RawMessage, p *Parameters) error {
			switch string(bytes.TrimSpace(raw)) {
			case "true":
				p.TLSOnly = true
			case "false":
				p.TLSOnly = false
			default:
				return errors.New("must be true or false")
			}
			return nil
		},
	},
}

// Names lists the parameters in the order of the table.
func Names() []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.name
	}
	return out
}

// Apply returns base with the parameters of raw (a JSON object, possibly empty
// or null) set on it. Parameters raw does not name keep their value from base.
// An unknown name or a value outside its schema gives an error wrapping
// ErrInvalid that names the parameter and says what it accepts.
func Apply(base Parameters, raw json.RawMessage) (Parameters, error) {
	obj, err := Object(raw)
	if err != nil {
		return base, err
	}
	p := base
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		i := slices.IndexFunc(fields, func(f field) bool { return f.name == name })
		if i < 0 {
			return base, fmt.Errorf("%w: unknown parameter %q; this plan accepts %s", ErrInvalid, name, strings.Join(Names(), ", "))
		}
		if err := fields[i].check(obj[name], &p); err != nil {
			return base, fmt.Errorf("%w: parameter %q %v", ErrInvalid, name, err)
		}
	}
	return p, nil
}

// Object decodes raw parameters into their members. Empty input and JSON null
// are an empty object; anything but an object is an error wrapping ErrInvalid.
func Object(raw json.RawMessage) (map[string]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return map[string]json.RawMessage{}, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: parameters must be a JSON object", ErrInvalid)
	}
	return obj, nil
}

// Schema returns the JSON schema (draft-04, as the OSB API asks) of the
// parameters object, for the catalog's create and update schemas.
func Schema() map[string]any {
	props := map[string]any{}
	for _, f := range fields {
		s := maps.Clone(f.schema)
		s["description"] = f.description
		props[f.name] = s
	}
	return map[string]any{
		"$schema":              "http://json-schema.org/draft-04/schema#",
		"type":                 "object",
		"additionalProperties": false,
		"properties":           props,
	}
}

// EmptySchema is the schema of an operation that takes no parameters.
func EmptySchema() map[string]any {
	return map[string]any{
		"$schema":              "http://json-schema.org/draft-04/schema#",
		"type":                 "object",
		"additionalProperties": false,
	}
}

func regexpEscape(s string) string {
	return strings.ReplaceAll(s, "$", `\$`)
}
