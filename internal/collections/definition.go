package collections

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Limits of a definition. The name length is Postgres's identifier limit,
// which the schema's CHECK constraints also enforce; the field count bounds
// the work of one record validation and the size of every record event.
const (
	MaxNameLen = 63
	MaxFields  = 100
)

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// reservedNames collide with routes under /api/ or with event namespaces
// (a collection named "auth" would make "auth.login" ambiguous).
var reservedNames = []string{"collections", "events", "realtime", "users", "watches", "auth", "storage", "function", "job", "system"}

// reservedFieldNames are keys every record has: a field of that name would
// be shadowed by the server-managed value in every record and event.
// ("createdAt" and "updatedAt" cannot match the name pattern.)
var reservedFieldNames = []string{"id"}

// IsReserved reports whether name may not be a collection name.
func IsReserved(name string) bool { return slices.Contains(reservedNames, name) }

// ReservedNames returns the reserved collection names.
func ReservedNames() []string { return slices.Clone(reservedNames) }

// Rule is who may perform an operation on a collection's records.
type Rule string

// The rules. For create, RuleOwner means any authenticated caller (who
// becomes the new record's owner); for read, update and delete it means the
// record's owners and assignees. Admins pass every rule.
const (
	RulePublic        Rule = "public"
	RuleAuthenticated Rule = "authenticated"
	RuleOwner         Rule = "owner"
	RuleAdmin         Rule = "admin"
)

// Valid reports whether r is one of the four rules.
func (r Rule) Valid() bool {
	switch r {
	case RulePublic, RuleAuthenticated, RuleOwner, RuleAdmin:
		return true
	}
	return false
}

// FieldType is the type of a field's values.
type FieldType string

// The field types, with the JSON values each accepts (see package server
// for the record validation): string (a JSON string of at most
// MaxStringLen characters), text (any JSON string), integer (an integral
// JSON number within ±2^53, the range JSON clients represent exactly), float
// (a JSON number within float64 range), boolean, datetime (an RFC 3339
// string, stored in UTC) and json (any JSON value).
const (
	TypeString   FieldType = "string"
	TypeText     FieldType = "text"
	TypeInteger  FieldType = "integer"
	TypeFloat    FieldType = "float"
	TypeBoolean  FieldType = "boolean"
	TypeDatetime FieldType = "datetime"
	TypeJSON     FieldType = "json"
)

// MaxStringLen is the most characters (Unicode code points) a value of a
// "string" field may have; "text" fields are bounded only by the request
// size.
const MaxStringLen = 255

var fieldTypes = []FieldType{TypeString, TypeText, TypeInteger, TypeFloat, TypeBoolean, TypeDatetime, TypeJSON}

// Valid reports whether t is a known field type.
func (t FieldType) Valid() bool { return slices.Contains(fieldTypes, t) }

// Permissions are a collection's rules, one per operation.
type Permissions struct {
	Create Rule `json:"create"`
	Read   Rule `json:"read"`
	Update Rule `json:"update"`
	Delete Rule `json:"delete"`
}

// DefaultPermissions are the rules of the operations a definition leaves
// out; they are the schema's column defaults: create and read
// authenticated, update and delete owner.
func DefaultPermissions() Permissions {
	return Permissions{Create: RuleAuthenticated, Read: RuleAuthenticated, Update: RuleOwner, Delete: RuleOwner}
}

// FieldDef is one field of a definition.
type FieldDef struct {
	Name     string    `json:"name"`
	Type     FieldType `json:"type"`
	Required bool      `json:"required"`
}

// Definition is a collection as an admin defines it. ParseDefinition fills
// every permission (defaults included).
type Definition struct {
	Name        string      `json:"name"`
	Fields      []FieldDef  `json:"fields"`
	Permissions Permissions `json:"permissions"`
}

// Field is a stored field, with the id Catalyst clients use in field_ids
// and that keys the record's cells.
type Field struct {
	ID       int64     `json:"id"`
	Name     string    `json:"name"`
	Type     FieldType `json:"type"`
	Required bool      `json:"required"`
}

// Collection is a stored collection: its id is the object class id.
type Collection struct {
	ID          int64       `json:"id"`
	Name        string      `json:"name"`
	Fields      []Field     `json:"fields"`
	Permissions Permissions `json:"permissions"`
	// Table is set when the collection is a watch (pgcast watch): the
	// application's table it streams, whose rows are its records.
	Table string `json:"table,omitempty"`
}

// Field returns the field called name.
func (c Collection) Field(name string) (Field, bool) {
	for _, f := range c.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Problem is one reason a definition or a record is invalid. Field is a
// path into the input ("name", "fields[1].type", "permissions.read"); Rule
// is a stable machine-readable word: required, type, pattern, max_length,
// max_items, reserved, unique, enum, unknown, duplicate, read_only, range.
type Problem struct {
	Field   string `json:"field"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// Problems is a validation failure: every problem found, in input order.
type Problems []Problem

func (p Problems) Error() string {
	msgs := make([]string, len(p))
	for i, x := range p {
		msgs[i] = x.Message
	}
	return strings.Join(msgs, "; ")
}

// ParseDefinition decodes and validates one definition, a JSON object
// {"name", "fields", "permissions"}. A body that is not one JSON object
// gives an error wrapping ErrMalformed; anything else wrong gives Problems,
// listing every problem found (unknown keys included).
func ParseDefinition(data []byte) (Definition, error) {
	members, err := ParseObject(data)
	if err != nil {
		return Definition{}, err
	}
	var (
		def     Definition
		ps      Problems
		hasName bool
	)
	def.Permissions = DefaultPermissions()
	for _, m := range members {
		switch m.Key {
		case "name":
			hasName = true
			var ok bool
			if def.Name, ok = decodeString(m.Value); !ok {
				ps = append(ps, Problem{"name", "type", "name must be a string"})
				continue
			}
			ps = checkName(ps, "name", "collection name", def.Name)
			if IsReserved(def.Name) {
				ps = append(ps, Problem{"name", "reserved", fmt.Sprintf("collection name %q is reserved (reserved: %s)", def.Name, strings.Join(reservedNames, ", "))})
			}
		case "fields":
			def.Fields, ps = parseFields(m.Value, ps)
		case "permissions":
			def.Permissions, ps = parsePermissions(m.Value, ps)
		default:
			ps = append(ps, unknownKey("", m.Key, "name, fields, permissions"))
		}
	}
	if !hasName {
		ps = append(ps, Problem{"name", "required", "name is required"})
	}
	if len(ps) > 0 {
		return Definition{}, ps
	}
	if def.Fields == nil {
		def.Fields = []FieldDef{}
	}
	return def, nil
}

func parseFields(raw json.RawMessage, ps Problems) ([]FieldDef, Problems) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return nil, append(ps, Problem{"fields", "type", "fields must be an array of objects"})
	}
	if len(items) > MaxFields {
		return nil, append(ps, Problem{"fields", "max_items", fmt.Sprintf("a collection has at most %d fields, got %d", MaxFields, len(items))})
	}
	fields := make([]FieldDef, 0, len(items))
	names := map[string]int{}
	for i, item := range items {
		path := "fields[" + strconv.Itoa(i) + "]"
		members, err := ParseObject(item)
		if err != nil {
			var dup Problems
			if errors.As(err, &dup) {
				ps = append(ps, prefix(dup, path+".")...)
			} else {
				ps = append(ps, Problem{path, "type", path + " must be an object"})
			}
			continue
		}
		var (
			f                    FieldDef
			hasName, hasType, ok bool
		)
		for _, m := range members {
			switch m.Key {
			case "name":
				hasName = true
				if f.Name, ok = decodeString(m.Value); !ok {
					ps = append(ps, Problem{path + ".name", "type", path + ".name must be a string"})
					continue
				}
				ps = checkName(ps, path+".name", "field name", f.Name)
				if slices.Contains(reservedFieldNames, f.Name) {
					ps = append(ps, Problem{path + ".name", "reserved", fmt.Sprintf("field name %q is reserved: every record has a server-managed %q", f.Name, f.Name)})
				}
				if j, dup := names[f.Name]; dup {
					ps = append(ps, Problem{path + ".name", "unique", fmt.Sprintf("field name %q is used twice (fields[%d] and fields[%d])", f.Name, j, i)})
				} else {
					names[f.Name] = i
				}
			case "type":
				hasType = true
				var s string
				if s, ok = decodeString(m.Value); !ok {
					ps = append(ps, Problem{path + ".type", "type", path + ".type must be a string"})
					continue
				}
				f.Type = FieldType(s)
				if !f.Type.Valid() {
					ps = append(ps, Problem{path + ".type", "enum", fmt.Sprintf("%s.type %q is not a field type (want %s)", path, s, joinTypes())})
				}
			case "required":
				if err := json.Unmarshal(m.Value, &f.Required); err != nil || string(m.Value) == "null" {
					ps = append(ps, Problem{path + ".required", "type", path + ".required must be true or false"})
				}
			default:
				ps = append(ps, unknownKey(path+".", m.Key, "name, type, required"))
			}
		}
		if !hasName {
			ps = append(ps, Problem{path + ".name", "required", path + ".name is required"})
		}
		if !hasType {
			ps = append(ps, Problem{path + ".type", "required", path + ".type is required"})
		}
		fields = append(fields, f)
	}
	return fields, ps
}

func parsePermissions(raw json.RawMessage, ps Problems) (Permissions, Problems) {
	p := DefaultPermissions()
	members, err := ParseObject(raw)
	if err != nil {
		var dup Problems
		if errors.As(err, &dup) {
			return p, append(ps, prefix(dup, "permissions.")...)
		}
		return p, append(ps, Problem{"permissions", "type", "permissions must be an object"})
	}
	for _, m := range members {
		var dst *Rule
		switch m.Key {
		case "create":
			dst = &p.Create
		case "read":
			dst = &p.Read
		case "update":
			dst = &p.Update
		case "delete":
			dst = &p.Delete
		default:
			ps = append(ps, unknownKey("permissions.", m.Key, "create, read, update, delete"))
			continue
		}
		path := "permissions." + m.Key
		s, ok := decodeString(m.Value)
		if !ok || !Rule(s).Valid() {
			ps = append(ps, Problem{path, "enum", path + " must be one of public, authenticated, owner, admin"})
			continue
		}
		*dst = Rule(s)
	}
	return p, ps
}

// checkName checks a collection or field name against the name pattern and
// length limit.
func checkName(ps Problems, path, what, name string) Problems {
	switch {
	case name == "":
		return append(ps, Problem{path, "required", what + " must not be empty"})
	case len(name) > MaxNameLen:
		return append(ps, Problem{path, "max_length", fmt.Sprintf("%s is %d characters, at most %d allowed", what, len(name), MaxNameLen)})
	case !namePattern.MatchString(name):
		return append(ps, Problem{path, "pattern", fmt.Sprintf("%s %q must start with a lower-case letter and contain only a-z, 0-9 and _", what, name)})
	}
	return ps
}

func unknownKey(path, key, known string) Problem {
	return Problem{path + key, "unknown", fmt.Sprintf("unknown key %q (known: %s)", path+key, known)}
}

func prefix(ps Problems, p string) Problems {
	out := make(Problems, len(ps))
	for i, x := range ps {
		x.Field = p + x.Field
		out[i] = x
	}
	return out
}

func decodeString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func joinTypes() string {
	s := make([]string, len(fieldTypes))
	for i, t := range fieldTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}
