package statefile

import (
	"reflect"
	"sync"
)

// deepCopy returns a copy of v that shares no map, slice or pointer target
// with it, so a change made through one is never seen through the other.
//
// It walks the value with reflection instead of encoding and decoding it as
// JSON: every Update copies the whole state, and a JSON round trip of a
// state with a thousand records (checked, decoded, with each record's own
// UnmarshalJSON) cost more than the rest of a provision's work in the agent
// and the broker. Structs are copied whole first, so unexported fields keep
// their values (a time.Time's location stays shared: it is never changed);
// exported fields holding maps, slices, pointers or interfaces are then
// replaced with copies. State types hold only exported data, as their JSON
// encoding needs.
func deepCopy[T any](v T) T {
	var out T
	src := reflect.ValueOf(&v).Elem()
	copyInto(reflect.ValueOf(&out).Elem(), src)
	return out
}

// copyInto sets dst, which is settable and of src's type, to a deep copy of
// src.
func copyInto(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		p := reflect.New(src.Type().Elem())
		copyInto(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		et := src.Type().Elem()
		for it := src.MapRange(); it.Next(); {
			e := reflect.New(et).Elem()
			copyInto(e, it.Value())
			m.SetMapIndex(it.Key(), e)
		}
		dst.Set(m)
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			copyInto(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Array:
		for i := range src.Len() {
			copyInto(dst.Index(i), src.Index(i))
		}
	case reflect.Struct:
		if src.Type().Implements(recordSetType) && src.CanInterface() {
			// A Records: a new map of the same, never changed, records.
			dst.Set(reflect.ValueOf(src.Interface().(recordSet).clone()))
			return
		}
		dst.Set(src)
		t := src.Type()
		for i := range src.NumField() {
			if t.Field(i).IsExported() && needsCopy(t.Field(i).Type) {
				f := dst.Field(i)
				f.SetZero()
				copyInto(f, src.Field(i))
			}
		}
	case reflect.Interface:
		if src.IsNil() {
			return
		}
		e := reflect.New(src.Elem().Type()).Elem()
		copyInto(e, src.Elem())
		dst.Set(e)
	default:
		dst.Set(src)
	}
}

// needsCopy reports whether a value of type t may refer to memory that a
// plain assignment would share; the answers are kept by type.
func needsCopy(t reflect.Type) bool {
	if v, ok := needsCopyOf.Load(t); ok {
		return v.(bool)
	}
	v := typeNeedsCopy(t)
	needsCopyOf.Store(t, v)
	return v
}

var needsCopyOf sync.Map // reflect.Type -> bool

func typeNeedsCopy(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
		return true
	case reflect.Array:
		return needsCopy(t.Elem())
	case reflect.Struct:
		if t.Implements(recordSetType) {
			return true
		}
		for i := range t.NumField() {
			if t.Field(i).IsExported() && needsCopy(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}
