package stream

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// oldByName turns a record_updated entry's old_cells (the changed cells'
// old values keyed by field id) into the shape of a watched update's old
// values, {field name: old value}, compact, keys in jsonb's order, leaving
// out cells of unknown field ids and names the record's own keys shadow
// (id, createdAt, updatedAt), as the record itself does (buildRecord). A
// subscription filter overlays them on the new record to get the old one.
func oldByName(oldCells json.RawMessage, fields map[string]string) (json.RawMessage, error) {
	var cells map[string]json.RawMessage
	if err := json.Unmarshal(oldCells, &cells); err != nil {
		return nil, fmt.Errorf("old cells: %w", err)
	}
	names := make([]string, 0, len(cells))
	byName := make(map[string]json.RawMessage, len(cells))
	for id, v := range cells {
		name, ok := fields[id]
		if !ok || name == "id" || name == "createdAt" || name == "updatedAt" {
			continue
		}
		names = append(names, name)
		byName[name] = v
	}
	slices.SortFunc(names, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	out := []byte{'{'}
	for i, name := range names {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendPGString(out, name, true)
		out = append(out, ':')
		out = appendCompact(out, byName[name])
	}
	return append(out, '}'), nil
}
