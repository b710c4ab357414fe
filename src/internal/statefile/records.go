package statefile

import (
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// Records holds a state's records by key so that an Update costs what the
// records it changes cost, not what the whole state costs. A state of
// thousands of records keeps them in a Records field instead of a map of
// pointers: with a map, every Update deep-copied and re-encoded every
// record, and at 2,000 instances that took most of a provision's time.
//
// Each stored record is kept with its JSON encoding and is never changed
// again. An Update's copy of the state gets a copy of the map only (the
// records' pointers); Edit copies the one record it is asked for, Put and
// Delete change the copy's map; the write encodes only the records the
// transaction made and splices in the others' kept encodings. On disk
// Records is a JSON object of the records by key, as a map is, so a state
// file written with a map loads into Records and the other way round.
//
// A Records must be a field of the state's top-level struct (that is where
// an Update finds the records to encode). Its zero value is empty and
// ready to use.
type Records[V any] struct {
	m map[string]*record[V]
}

// record is one record and its encoding; enc is nil while the record
// belongs to an open transaction (made by Edit or Put), and set once and
// for all before the record is stored.
type record[V any] struct {
	v   *V
	enc []byte
}

// Len is the number of records.
func (r Records[V]) Len() int { return len(r.m) }

// Get returns a copy of the record under key, which the caller may keep
// and change; nil when there is none. It copies that one record only.
func (r Records[V]) Get(key string) *V {
	rec, ok := r.m[key]
	if !ok {
		return nil
	}
	v := deepCopy(*rec.v)
	return &v
}

// At returns the record under key itself, or nil: for reading only. The
// caller must not change it, nor keep it past the View, Peek or Update
// that gave it (copy what it keeps).
func (r Records[V]) At(key string) *V {
	if rec, ok := r.m[key]; ok {
		return rec.v
	}
	return nil
}

// All yields every record itself, in no order, for reading only as At's
// are.
func (r Records[V]) All() iter.Seq2[string, *V] {
	return func(yield func(string, *V) bool) {
		for k, rec := range r.m {
			if !yield(k, rec.v) {
				return
			}
		}
	}
}

// Keys are the records' keys, sorted.
func (r Records[V]) Keys() []string { return slices.Sorted(maps.Keys(r.m)) }

// Edit returns the record under key for changing within an Update, or nil
// when there is none: a copy of the stored one, made once per transaction,
// which the write stores in its place.
func (r *Records[V]) Edit(key string) *V {
	rec, ok := r.m[key]
	if !ok {
		return nil
	}
	if rec.enc == nil {
		return rec.v // already this transaction's
	}
	v := deepCopy(*rec.v)
	r.m[key] = &record[V]{v: &v}
	return &v
}

// Put stores v under key within an Update; v becomes the state's, and the
// caller must not change it once the Update returned.
func (r *Records[V]) Put(key string, v *V) {
	if r.m == nil {
		r.m = map[string]*record[V]{}
	}
	r.m[key] = &record[V]{v: v}
}

// Delete removes the record under key, if there is one.
func (r *Records[V]) Delete(key string) { delete(r.m, key) }

// MarshalJSON encodes the records as a JSON object by key, sorted.
func (r Records[V]) MarshalJSON() ([]byte, error) {
	return r.appendJSON(nil)
}

func (r Records[V]) appendJSON(buf []byte) ([]byte, error) {
	buf = append(buf, '{')
	for i, k := range r.Keys() {
		if i > 0 {
			buf = append(buf, ',')
		}
		key, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		buf = append(append(buf, key...), ':')
		rec := r.m[k]
		enc := rec.enc
		if enc == nil {
			if enc, err = json.Marshal(rec.v); err != nil {
				return nil, fmt.Errorf("encoding record %s: %w", k, err)
			}
		}
		buf = append(buf, enc...)
	}
	return append(buf, '}'), nil
}

// UnmarshalJSON reads a JSON object of records by key; null is empty.
func (r *Records[V]) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	m := make(map[string]*record[V], len(raw))
	for k, msg := range raw {
		v := new(V)
		if err := json.Unmarshal(msg, v); err != nil {
			return fmt.Errorf("record %s: %w", k, err)
		}
		m[k] = &record[V]{v: v}
	}
	r.m = m
	return nil
}

// seal encodes the records an open transaction made, so that they are
// stored as they are now and a later Edit copies them.
func (r *Records[V]) seal() error {
	for k, rec := range r.m {
		if rec.enc != nil {
			continue
		}
		enc, err := json.Marshal(rec.v)
		if err != nil {
			return fmt.Errorf("encoding record %s: %w", k, err)
		}
		rec.enc = enc
	}
	return nil
}

// clone is the copy an Update or View works on: a new map of the same
// records.
func (r Records[V]) clone() any { return Records[V]{m: maps.Clone(r.m)} }

// recordSet is what deepCopy, seal and encode see of a Records of any type.
type recordSet interface {
	clone() any
	appendJSON([]byte) ([]byte, error)
}

type sealer interface{ seal() error }

var recordSetType = reflect.TypeFor[recordSet]()

// topFields are the settable fields of the struct *v, when T is a struct.
func topFields[T any](v *T) (reflect.Value, bool) {
	rv := reflect.ValueOf(v).Elem()
	return rv, rv.Kind() == reflect.Struct
}

// seal seals every Records field of the struct *v.
func seal[T any](v *T) error {
	rv, ok := topFields(v)
	if !ok {
		return nil
	}
	for i := range rv.NumField() {
		f := rv.Field(i)
		if !f.CanAddr() || !rv.Type().Field(i).IsExported() {
			continue
		}
		if s, ok := f.Addr().Interface().(sealer); ok {
			if err := s.seal(); err != nil {
				return err
			}
		}
	}
	return nil
}

// encode is json.Marshal(v) for a sealed state, except that the records
// of a Records field are copied from their kept encodings instead of
// encoded again (json.Marshal would also scan again what a MarshalJSON
// returned). size, the last encoding's length, sizes the buffer. A state
// whose top level it cannot encode field by field (an embedded struct, a
// ",string" option) goes to json.Marshal.
func encode[T any](v *T, size int) ([]byte, error) {
	rv, ok := topFields(v)
	if !ok || !hasRecords(rv.Type()) {
		return json.Marshal(v)
	}
	t := rv.Type()
	out := append(make([]byte, 0, size+size/8+512), '{')
	n := 0
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if sf.Anonymous || strings.Contains(","+opts+",", ",string,") {
			return json.Marshal(v)
		}
		if !sf.IsExported() || name == "-" && opts == "" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		f := rv.Field(i)
		if strings.Contains(","+opts+",", ",omitempty,") && emptyJSON(f) {
			continue
		}
		if n > 0 {
			out = append(out, ',')
		}
		n++
		key, err := json.Marshal(name)
		if err != nil {
			return nil, err
		}
		out = append(append(out, key...), ':')
		if rs, ok := f.Interface().(recordSet); ok {
			if out, err = rs.appendJSON(out); err != nil {
				return nil, err
			}
			continue
		}
		b, err := json.Marshal(f.Interface())
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return append(out, '}'), nil
}

// hasRecords reports whether the struct type t has a Records field.
func hasRecords(t reflect.Type) bool {
	for i := range t.NumField() {
		if t.Field(i).Type.Implements(recordSetType) {
			return true
		}
	}
	return false
}

// emptyJSON is encoding/json's test for omitempty (a struct, Records too,
// is never empty).
func emptyJSON(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}
