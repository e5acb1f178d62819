package bench

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
)

// lineTail keeps the last lines a child process wrote and logs each as a
// warning (the server runs at --log-level warn, so every line matters).
type lineTail struct {
	logger *slog.Logger
	max    int

	mu      sync.Mutex
	partial []byte
	lines   []string
}

func (t *lineTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		line := string(t.partial[:i])
		t.partial = t.partial[i+1:]
		t.logger.Warn("server: " + line)
		t.lines = append(t.lines, line)
		if len(t.lines) > t.max {
			t.lines = t.lines[len(t.lines)-t.max:]
		}
	}
	return len(p), nil
}

// suffix is ": <last lines>" for an error message, or "".
func (t *lineTail) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.partial) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(t.partial))
	}
	if len(lines) == 0 {
		return ""
	}
	return "; server output:\n" + strings.Join(lines, "\n")
}
