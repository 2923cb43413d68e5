package hub

import (
	"context"
	"time"
)

func contextWithTimeout(h *Hub, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(h.ctx, d)
}
