package tile

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// RefKind says what an Ops Manager expression in a manifest reaches.
type RefKind int

const (
	// PropertyRef is (( .properties.NAME.ACCESSOR )): a property of this tile.
	PropertyRef RefKind = iota + 1
	// ProductRef is (( ..PRODUCT.PATH )): a property of another tile.
	ProductRef
	// ContextRef is (( $CONTEXT.ACCESSOR )): what Ops Manager knows about
	// itself, the director, this tile or the runtime.
	ContextRef
	// VariableRef is ((( NAME.FIELD ))): a CredHub variable, which Ops
	// Manager leaves as ((NAME.FIELD)) for BOSH to fill in at deploy time.
	VariableRef
)

// Ref is one expression found in a manifest value.
type Ref struct {
	Kind RefKind
	// Raw is the expression as written: parentheses included, or, for one
	// operand of a conditional (( A ? B : C )), the operand alone.
	Raw string
	// Name is the property, product, context ($ops_manager...) or variable.
	// A property of a selector's option is SELECTOR.OPTION.PROPERTY.
	Name string
	// Accessor is what is taken from it ("value", "password", "certificate",
	// "selected_option.parsed_manifest", a product's property path...);
	// empty for a whole variable.
	Accessor string
	// Manifest is the named manifest of
	// (( .properties.SELECTOR.selected_option.parsed_manifest(MANIFEST) )).
	Manifest string
}

// ParsedManifestAccessor is the accessor of a selector's chosen option's
// named manifest.
const ParsedManifestAccessor = "selected_option.parsed_manifest"

var (
	tripleRe   = regexp.MustCompile(`\(\(\(\s*([^()]*?)\s*\)\)\)`)
	doubleRe   = regexp.MustCompile(`\(\(\s*((?:[^()]|\([a-z0-9_]*\))*?)\s*\)\)`)
	pathRe     = regexp.MustCompile(`^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$?-]+)*$`)
	manifestRe = regexp.MustCompile(`^\.properties\.([a-z0-9_]+)\.selected_option\.parsed_manifest\(([a-z0-9_]+)\)$`)
	// ternaryRe is Ops Manager's one operator: CONDITION ? THEN : ELSE.
	ternaryRe = regexp.MustCompile(`^(\S+)\s+\?\s+(\S+|'[^']*')\s+:\s+(\S+|'[^']*')$`)
	literalRe = regexp.MustCompile(`^('[^']*'|true|false|-?[0-9]+)$`)
)

// ParseRefs finds every Ops Manager expression in a string value. A string
// with something in double or triple parentheses that is not an expression
// the tile may use is an error: Ops Manager would fail on it at Apply
// Changes, long after the tile was built. Besides references, an expression
// may be a conditional, (( CONDITION ? THEN : ELSE )), each operand a
// reference or a literal ('text', true, false, a number).
func ParseRefs(s string) ([]Ref, error) {
	var refs []Ref
	for _, m := range tripleRe.FindAllStringSubmatch(s, -1) {
		name, field, _ := strings.Cut(m[1], ".")
		if !pathRe.MatchString(m[1]) || strings.Contains(field, ".") {
			return nil, fmt.Errorf("%s is not a CredHub variable reference (((( NAME ))) or ((( NAME.FIELD )))", m[0])
		}
		refs = append(refs, Ref{Kind: VariableRef, Raw: m[0], Name: name, Accessor: field})
	}
	rest := tripleRe.ReplaceAllString(s, "")
	for _, m := range doubleRe.FindAllStringSubmatch(rest, -1) {
		if t := ternaryRe.FindStringSubmatch(m[1]); t != nil {
			for _, operand := range t[1:] {
				if literalRe.MatchString(operand) {
					continue
				}
				r, err := parseRef(operand, operand)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", m[0], err)
				}
				refs = append(refs, r)
			}
			continue
		}
		r, err := parseRef(m[1], m[0])
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	leftover := doubleRe.ReplaceAllString(rest, "")
	if strings.Contains(leftover, "((") || strings.Contains(leftover, "))") {
		return nil, fmt.Errorf("%q has unbalanced (( ))", s)
	}
	return refs, nil
}

// parseRef parses one reference; raw is how errors and the Ref name it.
func parseRef(expr, raw string) (Ref, error) {
	if m := manifestRe.FindStringSubmatch(expr); m != nil {
		return Ref{Kind: PropertyRef, Raw: raw, Name: m[1], Accessor: ParsedManifestAccessor, Manifest: m[2]}, nil
	}
	if !pathRe.MatchString(strings.TrimLeft(expr, ".")) {
		return Ref{}, fmt.Errorf("%s is not an expression the tile supports: a property, product or $context accessor path, or A ? B : C", raw)
	}
	switch {
	case strings.HasPrefix(expr, ".properties."):
		parts := strings.Split(strings.TrimPrefix(expr, ".properties."), ".")
		if len(parts) != 2 && len(parts) != 4 {
			return Ref{}, fmt.Errorf("%s: a property reference is .properties.NAME.ACCESSOR (or .properties.SELECTOR.OPTION.NAME.ACCESSOR)", raw)
		}
		last := len(parts) - 1
		return Ref{Kind: PropertyRef, Raw: raw, Name: strings.Join(parts[:last], "."), Accessor: parts[last]}, nil
	case strings.HasPrefix(expr, ".."):
		product, path, ok := strings.Cut(strings.TrimPrefix(expr, ".."), ".")
		if !ok {
			return Ref{}, fmt.Errorf("%s: a product reference is ..PRODUCT.PATH", raw)
		}
		return Ref{Kind: ProductRef, Raw: raw, Name: product, Accessor: path}, nil
	case strings.HasPrefix(expr, "$"):
		ctx, acc, ok := strings.Cut(expr, ".")
		if !ok {
			return Ref{}, fmt.Errorf("%s: a context reference is $CONTEXT.ACCESSOR", raw)
		}
		return Ref{Kind: ContextRef, Raw: raw, Name: ctx, Accessor: acc}, nil
	}
	return Ref{}, fmt.Errorf("%s: only .properties.NAME.ACCESSOR, ..PRODUCT.PATH and $CONTEXT.ACCESSOR are supported (job-level properties are not)", raw)
}

// Accessors are what each property type gives a manifest; a type not listed
// gives only "value".
var Accessors = map[string][]string{
	"simple_credentials":   {"identity", "password"},
	"rsa_cert_credentials": {"cert_pem", "private_key_pem", "public_key_pem", "cert_and_private_key_pems"},
	"rsa_pkey_credentials": {"private_key_pem", "public_key_pem", "public_key_openssh", "public_key_fingerprint"},
	"salted_credentials":   {"identity", "password", "salt", "sha512_hashed_password"},
	"selector":             {"value", ParsedManifestAccessor},
}

// accessorsOf lists the accessors of a property type.
func accessorsOf(typ string) []string {
	if a, ok := Accessors[typ]; ok {
		return a
	}
	return []string{"value"}
}

// Contexts are the $ contexts and the accessors Ops Manager documents for
// them.
var Contexts = map[string][]string{
	"$ops_manager": {"ca_certificate", "trusted_certificates", "http_proxy", "https_proxy", "no_proxy", "iaas_type"},
	"$director":    {"hostname", "ca_public_key", "deployment_ip", "guid", "tld", "ntp_servers", "dns_release_present"},
	"$self":        {"uaa_client_name", "uaa_client_secret", "service_network", "stemcell_version"},
	"$runtime":     {"system_domain", "apps_domain", "system_api_url", "login_url", "uaa_url"},
}

// VariableFields are the fields of each CredHub variable type; a variable
// of a type without fields is referenced whole.
var VariableFields = map[string][]string{
	"certificate": {"ca", "certificate", "private_key"},
	"password":    nil,
	"user":        {"username", "password"},
	"rsa":         {"private_key", "public_key"},
	"ssh":         {"private_key", "public_key", "public_key_fingerprint"},
}

func sortedKeys[M ~map[K]V, K cmp.Ordered, V any](m M) []K {
	return slices.Sorted(maps.Keys(m))
}
