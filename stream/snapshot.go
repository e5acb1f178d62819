package stream

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// snapshot is a parsed pg_snapshot: transactions below xmin are finished,
// those at or above xmax had not started, and xip lists those in progress.
type snapshot struct {
	xmin, xmax uint64
	xip        []uint64 // sorted
}

// parseSnapshot parses pg_current_snapshot()::text, "xmin:xmax:xip,xip,...".
func parseSnapshot(s string) (snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return snapshot{}, fmt.Errorf("parse snapshot %q: want xmin:xmax:xip", s)
	}
	var sn snapshot
	var err error
	if sn.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("parse snapshot %q: xmin: %w", s, err)
	}
	if sn.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("parse snapshot %q: xmax: %w", s, err)
	}
	if sn.xmin > sn.xmax {
		return snapshot{}, fmt.Errorf("parse snapshot %q: xmin above xmax", s)
	}
	if parts[2] != "" {
		for _, p := range strings.Split(parts[2], ",") {
			x, err := strconv.ParseUint(p, 10, 64)
			if err != nil {
				return snapshot{}, fmt.Errorf("parse snapshot %q: xip: %w", s, err)
			}
			if x < sn.xmin || x >= sn.xmax {
				return snapshot{}, errors.New("parse snapshot: xip outside [xmin, xmax)")
			}
			sn.xip = append(sn.xip, x)
		}
		slices.Sort(sn.xip)
	}
	return sn, nil
}

// sees reports whether a committed transaction xid was already committed when
// the snapshot was taken, i.e. its entries were visible to it.
func (s snapshot) sees(xid uint64) bool {
	if xid >= s.xmax {
		return false
	}
	_, found := slices.BinarySearch(s.xip, xid)
	return !found
}

// running reports whether xid was in progress when the snapshot was taken.
func (s snapshot) running(xid uint64) bool {
	_, found := slices.BinarySearch(s.xip, xid)
	return found
}
