package auth

import (
	"testing"

	"github.com/pgcast/pgcast/stream"
)

// An identity reads as the viewer of its claims: admin only for the admin
// role, anonymous without a user.
func TestIdentityViewer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id   Identity
		want stream.Viewer
	}{
		{Identity{}, stream.Viewer{}},
		{Identity{Environment: 1}, stream.Viewer{Environment: 1}},
		{Identity{UserID: "u1", Role: RoleAuthenticated, Environment: 2}, stream.Viewer{UserID: "u1", Environment: 2}},
		{Identity{UserID: "a", Role: RoleAdmin, Environment: 3}, stream.Viewer{UserID: "a", Admin: true, Environment: 3}},
	} {
		if got := tc.id.Viewer(); got != tc.want {
			t.Errorf("%+v.Viewer() = %+v, want %+v", tc.id, got, tc.want)
		}
	}
}
