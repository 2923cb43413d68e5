package hub

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the hub, its sipgo stack and the test members start must
// be gone when the tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
