package auth

import (
	"testing"

	"github.com/pgcast/pgcast/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
