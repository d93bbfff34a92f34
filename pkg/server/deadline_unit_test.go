package server

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestAPIDeadline(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name         string
		conversation time.Time
		want         time.Time
	}{
		{"no conversation deadline: commitTimeout", time.Time{}, now.Add(commitTimeout)},
		{"far conversation deadline: commitTimeout", now.Add(11 * time.Second), now.Add(commitTimeout)},
		{"near conversation deadline: the reply margin is kept", now.Add(4 * time.Second), now.Add(4*time.Second - replyMargin)},
		{"spent: already past", now.Add(time.Second), now.Add(time.Second - replyMargin)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, apiDeadline(now, tc.conversation))
		})
	}
}
