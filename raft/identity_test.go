package raft

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"clearhub/proto/hubv1"
)

func identityCmd(t int64, actor string, op any) *hubv1.Command {
	c := &hubv1.Command{Version: 1, TimeUnixNano: t, Actor: actor}
	switch op := op.(type) {
	case *hubv1.RevokeCertificate:
		c.Op = &hubv1.Command_RevokeCertificate{RevokeCertificate: op}
	case *hubv1.RecordJoinToken:
		c.Op = &hubv1.Command_RecordJoinToken{RecordJoinToken: op}
	case *hubv1.RevokeJoinToken:
		c.Op = &hubv1.Command_RevokeJoinToken{RevokeJoinToken: op}
	default:
		panic("identityCmd: unknown op")
	}
	return c
}

func certWith(serial int64, cn string, notBefore time.Time) *x509.Certificate {
	return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore}
}

func TestParseSerial(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"0A:1B:ff", "a1bff", true},
		{"  00ff ", "ff", true},
		{"1", "1", true},
		{strings.Repeat("ff", 20), strings.Repeat("ff", 20), true},
		{strings.Repeat("ff", 21), "", false}, // RFC 5280: at most 20 octets
		{"0", "", false},
		{"00:00", "", false},
		{"", "", false},
		{"alice", "", false},
		{"-1", "", false},
		{"0x10", "", false},
	}
	for _, tt := range tests {
		got, ok := ParseSerial(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseSerial(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"0a:1b", "ff", "", "00", strings.Repeat("f", 41), "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := ParseSerial(s)
		if !ok {
			return
		}
		// The canonical form is a fixed point and round-trips through big.Int.
		if again, ok2 := ParseSerial(c); !ok2 || again != c {
			t.Fatalf("ParseSerial(%q) = %q, not canonical (%q, %v)", s, c, again, ok2)
		}
		n, _ := new(big.Int).SetString(c, 16)
		if SerialString(n) != c {
			t.Fatalf("SerialString round trip: %q", c)
		}
	})
}

// Identity commands are validated deterministically and refused with a
// message naming the field.
func TestCheckIdentityCommands(t *testing.T) {
	f := NewFSM(discardLogger(), nil)
	const tok = "0123456789abcdef"
	applyLog(t, f, 1, identityCmd(clock, "alice", &hubv1.RevokeCertificate{Serial: "abc"}))
	applyLog(t, f, 2, identityCmd(clock, "alice", &hubv1.RecordJoinToken{Id: tok, ExpiresUnix: clock / 1e9}))
	s := f.State()
	tests := []struct {
		name  string
		op    any
		want  error
		field string
	}{
		{"revoke nothing", &hubv1.RevokeCertificate{}, ErrInvalid, "revoke_certificate"},
		{"revoke both", &hubv1.RevokeCertificate{Serial: "ab", Name: "bob"}, ErrInvalid, "exclude"},
		{"serial not canonical", &hubv1.RevokeCertificate{Serial: "0A:BC"}, ErrInvalid, "revoke_certificate.serial"},
		{"serial not hex", &hubv1.RevokeCertificate{Serial: "xyz"}, ErrInvalid, "revoke_certificate.serial"},
		{"serial twice", &hubv1.RevokeCertificate{Serial: "abc"}, ErrAlreadyExists, "abc"},
		{"name control chars", &hubv1.RevokeCertificate{Name: "bob\n"}, ErrInvalid, "revoke_certificate.name"},
		{"name padded", &hubv1.RevokeCertificate{Name: " bob"}, ErrInvalid, "revoke_certificate.name"},
		{"name too long", &hubv1.RevokeCertificate{Name: strings.Repeat("b", MaxActorLen+1)}, ErrInvalid, "revoke_certificate.name"},
		{"reason too long", &hubv1.RevokeCertificate{Name: "bob", Reason: strings.Repeat("r", MaxReasonLen+1)}, ErrInvalid, "revoke_certificate.reason"},
		{"reason control", &hubv1.RevokeCertificate{Name: "bob", Reason: "a\x00b"}, ErrInvalid, "revoke_certificate.reason"},
		{"token id short", &hubv1.RecordJoinToken{Id: "abc", ExpiresUnix: 1}, ErrInvalid, "record_join_token.id"},
		{"token id upper", &hubv1.RecordJoinToken{Id: strings.ToUpper(tok), ExpiresUnix: 1}, ErrInvalid, "record_join_token.id"},
		{"token no expiry", &hubv1.RecordJoinToken{Id: "1123456789abcdef"}, ErrInvalid, "record_join_token.expires_unix"},
		{"token twice", &hubv1.RecordJoinToken{Id: tok, ExpiresUnix: 1}, ErrAlreadyExists, tok},
		{"revoke unknown token", &hubv1.RevokeJoinToken{Id: "1123456789abcdef"}, ErrNotFound, "1123456789abcdef"},
		{"revoke token bad id", &hubv1.RevokeJoinToken{Id: "nope"}, ErrInvalid, "revoke_join_token.id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCommand(s, identityCmd(clock, "alice", tt.op))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("got %v, want %v naming %q", err, tt.want, tt.field)
			}
			// The FSM refuses it with the same error and no change.
			before := f.State().Proto()
			idx := f.State().Index + 1
			res := applyLog(t, f, idx, identityCmd(clock, "alice", tt.op))
			if res.Err == nil || res.Err.Error() != err.Error() {
				t.Fatalf("FSM error %v, CheckCommand %v", res.Err, err)
			}
			if !proto.Equal(before, f.State().Proto()) {
				t.Fatal("refused command changed the state")
			}
		})
	}
	for _, ok := range []any{
		&hubv1.RevokeCertificate{Serial: "abd", Reason: "laptop stolen"},
		&hubv1.RevokeCertificate{Name: "bob"},
		&hubv1.RevokeJoinToken{Id: tok, Reason: "posted in chat"},
	} {
		if err := CheckCommand(s, identityCmd(clock, "alice", ok)); err != nil {
			t.Errorf("CheckCommand(%v) = %v", ok, err)
		}
	}
}

// Revocations and token records apply with command times and actors, are
// found by Revoked and JoinToken, and survive a snapshot round trip.
func TestIdentityApplySnapshotRestore(t *testing.T) {
	f := NewFSM(discardLogger(), nil)
	t0 := clock
	at := func(d time.Duration) int64 { return t0 + int64(d) }
	const tokA, tokB = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
	steps := []*hubv1.Command{
		identityCmd(at(0), "alice;role=admin", &hubv1.RevokeCertificate{Serial: "1f", Reason: "lost"}),
		identityCmd(at(time.Second), "alice", &hubv1.RevokeCertificate{Name: "bob", Reason: "left"}),
		identityCmd(at(2*time.Second), "alice", &hubv1.RecordJoinToken{Id: tokB, ExpiresUnix: time.Unix(0, at(time.Hour)).Unix()}),
		identityCmd(at(3*time.Second), "carol", &hubv1.RecordJoinToken{Id: tokA, ExpiresUnix: time.Unix(0, at(time.Hour)).Unix()}),
		identityCmd(at(4*time.Second), "dave", &hubv1.RevokeJoinToken{Id: tokA, Reason: "leaked"}),
	}
	for i, c := range steps {
		if res := applyLog(t, f, uint64(i+1), c); res.Err != nil {
			t.Fatalf("step %d: %v", i, res.Err)
		}
	}
	s := f.State()
	before := time.Unix(0, at(0))
	after := time.Unix(0, at(2*time.Second))
	revoked := []struct {
		name string
		cert *x509.Certificate
		want string // revocation reason, "" for not revoked
	}{
		{"serial", certWith(0x1f, "erin", after), "lost"},
		{"other serial", certWith(0x20, "erin", before), ""},
		{"name, minted before", certWith(0x21, "bob", before), "left"},
		{"name, minted after", certWith(0x22, "bob", after), ""},
		{"name is case-sensitive", certWith(0x23, "Bob", before), ""},
		{"nil", nil, ""},
	}
	for _, tt := range revoked {
		r := s.Revoked(tt.cert)
		if got := r.GetReason(); got != tt.want || (tt.want != "" && r == nil) {
			t.Errorf("%s: Revoked = %v, want reason %q", tt.name, r, tt.want)
		}
	}
	if r := s.Revoked(certWith(0x1f, "x", after)); r.GetRevokedBy() != "alice;role=admin" || r.GetRevokedUnixNano() != at(0) {
		t.Errorf("revocation record = %v", r)
	}
	if got := s.Revocations(); len(got) != 2 || got[0].GetName() != "bob" || got[1].GetSerial() != "1f" {
		t.Errorf("Revocations() = %v (want sorted by serial, then name)", got)
	}
	// Revoking a name again moves its time forward: a certificate minted
	// in between is covered now.
	applyLog(t, f, 6, identityCmd(at(10*time.Second), "alice", &hubv1.RevokeCertificate{Name: "bob", Reason: "again"}))
	if r := f.State().Revoked(certWith(0x22, "bob", after)); r.GetReason() != "again" {
		t.Errorf("second name revocation: %v", r)
	}
	if n := len(f.State().Revocations()); n != 2 {
		t.Errorf("second name revocation added a record: %d", n)
	}

	toks := f.State().JoinTokens()
	if len(toks) != 2 || toks[0].GetId() != tokA || !toks[0].GetRevoked() || toks[0].GetRevokedBy() != "dave" || toks[0].GetReason() != "leaked" ||
		toks[1].GetRevoked() || toks[1].GetCreatedBy() != "alice" || toks[1].GetCreatedUnixNano() != at(2*time.Second) {
		t.Errorf("join tokens = %v", toks)
	}

	data := snapshotBytes(t, f)
	g := NewFSM(discardLogger(), nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(g.State().Proto(), f.State().Proto()) {
		t.Fatalf("restored state differs:\n got %v\nwant %v", g.State().Proto(), f.State().Proto())
	}
	if g.State().Revoked(certWith(0x1f, "x", after)) == nil || g.State().JoinToken(tokA) == nil {
		t.Error("restored state lost its identity indexes")
	}
	if again := snapshotBytes(t, g); !bytes.Equal(again, data) {
		t.Error("snapshot of the restored state differs")
	}

	// A day after expiry, the next token command prunes both records.
	late := at(time.Hour + joinTokenRetention + time.Minute)
	applyLog(t, f, 7, identityCmd(late, "alice", &hubv1.RecordJoinToken{Id: "cccccccccccccccc", ExpiresUnix: time.Unix(0, late).Add(time.Hour).Unix()}))
	if toks := f.State().JoinTokens(); len(toks) != 1 || toks[0].GetId() != "cccccccccccccccc" {
		t.Errorf("after pruning: %v", toks)
	}
}
