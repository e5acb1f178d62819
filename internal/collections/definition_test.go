package collections

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func TestParseDefinitionDefaults(t *testing.T) {
	t.Parallel()
	def, err := ParseDefinition([]byte(`{"name":"posts","permissions":{"read":"public"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Definition{Name: "posts", Fields: []FieldDef{}, Permissions: Permissions{Create: RuleAuthenticated, Read: RulePublic, Update: RuleOwner, Delete: RuleOwner}}
	if !reflect.DeepEqual(def, want) {
		t.Errorf("got %+v, want %+v", def, want)
	}
}

func TestParseObject(t *testing.T) {
	t.Parallel()
	ms, err := ParseObject([]byte(` {"b":1, "a":{"x":[1,2]}} `))
	if err != nil || len(ms) != 2 || ms[0].Key != "b" || string(ms[1].Value) != `{"x":[1,2]}` {
		t.Fatalf("%v %v", ms, err)
	}
	for _, in := range []string{``, ` `, `[]`, `"x"`, `1`, `null`, `{`, `{"a"}`, `{"a":1,}`, `{"a":1}x`, `{"a":1}{}`, `{1:2}`} {
		if _, err := ParseObject([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", in, err)
		}
	}
	var ps Problems
	if _, err := ParseObject([]byte(`{"a":1,"a":2}`)); !errors.As(err, &ps) || ps[0].Rule != "duplicate" {
		t.Errorf("duplicate key: %v", err)
	}
}

// FuzzParseDefinition: never panics; the error is ErrMalformed or
// Problems; an accepted definition, encoded again, is accepted unchanged.
func FuzzParseDefinition(f *testing.F) {
	for _, s := range []string{
		`{"name":"posts","fields":[{"name":"title","type":"string","required":true}],"permissions":{"read":"public"}}`,
		`{"name":"a","fields":[{"name":"x","type":"json"},{"name":"x","type":"text"}]}`,
		`{"name":"auth"}`, `{"name":"a","name":"b"}`, `{"fields":[[]]}`, `[]`, `{"permissions":{"read":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		def, err := ParseDefinition(data)
		if err != nil {
			var ps Problems
			if !errors.Is(err, ErrMalformed) && (!errors.As(err, &ps) || len(ps) == 0) {
				t.Fatalf("error %v is neither ErrMalformed nor Problems", err)
			}
			return
		}
		again, err := json.Marshal(def)
		if err != nil {
			t.Fatal(err)
		}
		def2, err := ParseDefinition(again)
		if err != nil || !reflect.DeepEqual(def, def2) {
			t.Fatalf("round trip of %s: %+v, %v", again, def2, err)
		}
	})
}
