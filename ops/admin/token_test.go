package admin

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

func protoMarshal(m proto.Message) ([]byte, error) { return proto.Marshal(m) }

func TestJoinTokenVerify(t *testing.T) {
	k, err := newTokenKey(sharedCA(t))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	tok, info, err := k.create(now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.verify(tok, now.Add(59*time.Minute)); err != nil || got != info {
		t.Fatalf("verify = %v, %v; want %v", got, err, info)
	}
	if pi, err := ParseJoinToken(tok); err != nil || pi != info {
		t.Fatalf("ParseJoinToken = %v, %v", pi, err)
	}
	parts := strings.Split(tok, ".")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, ".")
	}
	tests := []struct {
		name  string
		token string
		at    time.Time
		want  error
		sub   string
	}{
		{"expired", tok, now.Add(time.Hour), ErrTokenExpired, "expired at"},
		{"empty", "", now, ErrTokenMalformed, "token"},
		{"four parts", strings.Join(parts[:4], "."), now, ErrTokenMalformed, "5 dot-separated"},
		{"version", with(0, "chj2"), now, ErrTokenMalformed, "version"},
		{"expiry", with(1, "-5"), now, ErrTokenMalformed, "expiry"},
		{"id", with(2, "xyz"), now, ErrTokenMalformed, "id"},
		{"mac encoding", with(3, "***"), now, ErrTokenMalformed, "mac"},
		{"fingerprint", with(4, "ABC"), now, ErrTokenMalformed, "ca fingerprint"},
		{"extended expiry", with(1, "zzzzzz"), now, ErrTokenInvalid, "invalid"},
		{"other id", with(2, "0123456789abcdef"), now, ErrTokenInvalid, "invalid"},
		{"other mac", with(3, strings.Repeat("A", 43)), now, ErrTokenInvalid, "invalid"},
		{"other fingerprint", with(4, strings.Repeat("0", 64)), now, ErrTokenInvalid, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := k.verify(tt.token, tt.at)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.sub) {
				t.Fatalf("verify = %v, want %v containing %q", err, tt.want, tt.sub)
			}
		})
	}
}

func FuzzParseJoinToken(f *testing.F) {
	f.Add("chj1.abc.0123456789abcdef.AAAA.00")
	f.Add("....")
	f.Fuzz(func(t *testing.T, s string) {
		info, err := ParseJoinToken(s)
		if err == nil && (info.ID == "" || len(info.CAFingerprint) != 64) {
			t.Fatalf("accepted %q as %+v", s, info)
		}
	})
}
