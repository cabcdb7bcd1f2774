package memory

import (
	"reflect"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// TestCloneCoversRecordFields fills every field of every record type the
// store keeps, clones it, and checks that the copy shares no memory with the
// original and has its times normalized. A field of a kind clone does not
// deep-copy (a map, a pointer, a nested struct) fails it.
func TestCloneCoversRecordFields(t *testing.T) {
	zone := time.FixedZone("x", 3600)
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, zone)
	for _, v := range []any{
		&store.Client{}, &store.AuthRequest{}, &store.AuthCode{}, &store.Grant{},
		&store.RefreshToken{}, &store.Consent{}, &store.SigningKey{},
	} {
		rv := reflect.ValueOf(v).Elem()
		t.Run(rv.Type().Name(), func(t *testing.T) {
			for i := range rv.NumField() {
				f := rv.Field(i)
				switch p := f.Addr().Interface().(type) {
				case *string:
					*p = "s"
				case *int64:
					*p = 7
				case *bool:
					*p = true
				case *time.Time:
					*p = at
				case *[]string:
					*p = []string{"a"}
				case *[]byte:
					*p = []byte("b")
				default:
					t.Fatalf("field %s is a %s: teach clone to copy it", rv.Type().Field(i).Name, f.Type())
				}
			}
			c := reflect.ValueOf(cloneAny(t, v)).Elem()
			for i := range rv.NumField() {
				name, orig, got := rv.Type().Field(i).Name, rv.Field(i).Interface(), c.Field(i).Interface()
				switch o := orig.(type) {
				case time.Time:
					if want := store.NormTime(o); !got.(time.Time).Equal(want) || got.(time.Time).Location() != time.UTC {
						t.Errorf("%s = %v, want %v", name, got, want)
					}
				case []string:
					if g := got.([]string); !reflect.DeepEqual(g, o) || &g[0] == &o[0] {
						t.Errorf("%s = %v: not an unshared copy of %v", name, g, o)
					}
				case []byte:
					if g := got.([]byte); !reflect.DeepEqual(g, o) || &g[0] == &o[0] {
						t.Errorf("%s = %q: not an unshared copy of %q", name, g, o)
					}
				default:
					if got != orig {
						t.Errorf("%s = %v, want %v", name, got, orig)
					}
				}
			}
		})
	}
}

// TestCloneKeepsNilAndEmpty: a nil slice stays nil and an empty one empty,
// as the SQL backends return them.
func TestCloneKeepsNilAndEmpty(t *testing.T) {
	c := clone(&store.Consent{Scopes: []string{}})
	if c.Scopes == nil || len(c.Scopes) != 0 {
		t.Errorf("empty Scopes cloned to %#v", c.Scopes)
	}
	if c := clone(&store.Consent{}); c.Scopes != nil || !c.CreatedAt.IsZero() {
		t.Errorf("zero Consent cloned to %+v", c)
	}
}

func cloneAny(t *testing.T, v any) any {
	switch r := v.(type) {
	case *store.Client:
		return clone(r)
	case *store.AuthRequest:
		return clone(r)
	case *store.AuthCode:
		return clone(r)
	case *store.Grant:
		return clone(r)
	case *store.RefreshToken:
		return clone(r)
	case *store.Consent:
		return clone(r)
	case *store.SigningKey:
		return clone(r)
	}
	t.Fatalf("no clone for %T", v)
	return nil
}
