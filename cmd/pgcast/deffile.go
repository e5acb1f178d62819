package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// definitionFile is the shape of the files `collections apply` and `watch
// apply` read: JSON when the name ends in .json or the content starts with
// { or [, YAML otherwise (converted to JSON, so both are checked the same
// way); one item, a list of them, or {"<plural>": [...]}.
type definitionFile struct {
	one, plural string // "collection", "collections"
	max         int64  // bytes read at most
}

// read reads path (at most f.max bytes) and returns its items.
func (f definitionFile) read(path string) ([]json.RawMessage, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, f.max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > f.max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, f.max)
	}
	items, err := f.parse(path, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return items, nil
}

// parse decodes the file named name into its items.
func (f definitionFile) parse(name string, data []byte) ([]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("the file is empty")
	}
	if !strings.EqualFold(filepath.Ext(name), ".json") && trimmed[0] != '{' && trimmed[0] != '[' {
		var err error
		if trimmed, err = yamlToJSON(data); err != nil {
			return nil, err
		}
	}
	var items []json.RawMessage
	switch trimmed[0] {
	case '[':
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
	case '{':
		var wrapper map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &wrapper); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		list, ok := wrapper[f.plural]
		if !ok {
			items = []json.RawMessage{trimmed}
			break
		}
		if len(wrapper) != 1 {
			return nil, fmt.Errorf(`a file with %q must have no other top-level key`, f.plural)
		}
		if err := json.Unmarshal(list, &items); err != nil || items == nil {
			return nil, fmt.Errorf(`%q must be a list of %s`, f.plural, f.plural)
		}
	default:
		return nil, fmt.Errorf(`want a %s, a list of %s or {"%s": [...]}`, f.one, f.plural, f.plural)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("no %s in the file", f.plural)
	}
	return items, nil
}

// readDefs reads path's items and turns them into definitions with defs
// (which validates them), naming path in any error.
func readDefs[T any](f definitionFile, path string, defs func([]json.RawMessage) ([]T, error)) ([]T, error) {
	items, err := f.read(path)
	if err != nil {
		return nil, err
	}
	out, err := defs(items)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}
