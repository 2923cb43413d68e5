package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// sealed returns sampleEntry(i) as the ledger would store it.
func sealed(i int) *Entry {
	e := sampleEntry(i)
	if err := prepare(e); err != nil {
		panic(err)
	}
	e.Seq, e.Node, e.PrevHash = uint64(i+1), "n1", bytes.Repeat([]byte{byte(i)}, HashSize)
	e.Hash = ComputeHash(e)
	return e
}

var entryCmp = cmpopts.EquateEmpty()

func TestDecodeEntryJSONRoundTrip(t *testing.T) {
	for i := range 8 {
		e := sealed(i)
		line := AppendEntryJSON(nil, e)
		var got Entry
		if err := DecodeEntryJSON(line, &got); err != nil {
			t.Fatalf("decode %s: %v", line, err)
		}
		if d := cmp.Diff(e, &got, entryCmp); d != "" {
			t.Fatalf("round trip (-want +got):\n%s", d)
		}
		// encoding/json agrees.
		var std Entry
		if err := json.Unmarshal(line, &std); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(&std, &got, entryCmp); d != "" {
			t.Fatalf("differs from encoding/json (-json +ours):\n%s", d)
		}
	}
}

func TestDecodeEntryJSONRejects(t *testing.T) {
	good := string(AppendEntryJSON(nil, sealed(2)))
	cases := []struct {
		name, line, field, reason string
	}{
		{"unknown field", strings.Replace(good, `"seq":`, `"bogus":1,"seq":`, 1), "bogus", "unknown field"},
		{"duplicate", strings.Replace(good, `"seq":3,`, `"seq":3,"seq":5,`, 1), "seq", "duplicate field"},
		{"bad base64", strings.Replace(good, `"hash":"`, `"hash":"!`, 1), "hash", "bad base64"},
		{"wrong type", strings.Replace(good, `"type":"entry"`, `"type":"proof"`, 1), "type", `want "entry"`},
		{"missing hash", good[:strings.Index(good, `,"hash":`)] + "}", "hash", "missing"},
		{"float seq", strings.Replace(good, `"seq":3`, `"seq":3.0`, 1), "seq", "want an integer"},
		{"negative seq", strings.Replace(good, `"seq":3`, `"seq":-3`, 1), "seq", "want an integer"},
		{"seq overflow", strings.Replace(good, `"seq":3`, `"seq":18446744073709551616`, 1), "seq", "out of range"},
		{"leading zero", strings.Replace(good, `"seq":3`, `"seq":03`, 1), "seq", "leading zero"},
		{"null", strings.Replace(good, `"method":"MESSAGE"`, `"method":null`, 1), "method", "null"},
		{"string for int", strings.Replace(good, `"status":200`, `"status":"200"`, 1), "status", "want an integer"},
		{"bad bool", strings.Replace(good, `"body_kept":true`, `"body_kept":1`, 1), "body_kept", "true or false"},
		{"bad escape", strings.Replace(good, `"method":"MESSAGE"`, `"method":"\q"`, 1), "method", "bad escape"},
		{"lone surrogate", strings.Replace(good, `"method":"MESSAGE"`, `"method":"\ud800x"`, 1), "method", "surrogate"},
		{"control char", strings.Replace(good, `"method":"MESSAGE"`, "\"method\":\"A\x01\"", 1), "method", "control"},
		{"invalid utf8", strings.Replace(good, `"method":"MESSAGE"`, "\"method\":\"\xff\"", 1), "method", "UTF-8"},
		{"trailing", good + "x", "", "after the object"},
		{"truncated", good[:len(good)/2], "", ""},
		{"not object", "[]", "", "want '{'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e Entry
			err := DecodeEntryJSON([]byte(c.line), &e)
			var le *EntryLineError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want *EntryLineError", err)
			}
			if le.Field != c.field && c.field != "" || !strings.Contains(le.Reason, c.reason) {
				t.Fatalf("err = %v, want field %q reason containing %q", err, c.field, c.reason)
			}
		})
	}
}

// FuzzDecodeEntryLine: decoding never panics; what the encoder wrote decodes
// back to the same entry; and whatever we accept, encoding/json accepts with
// the same result (we are never laxer).
func FuzzDecodeEntryLine(f *testing.F) {
	for i := range 4 {
		f.Add(AppendEntryJSON(nil, sealed(i)))
	}
	f.Add([]byte(`{"type":"entry","seq":1,"time":-5,"node":"\u00e9\ud83d\ude00","kind":"chat","prev_hash":"","hash":""}`))
	f.Add([]byte(`{"type":"entry"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var got Entry
		err := DecodeEntryJSON(line, &got)
		if err == nil {
			var std Entry
			if jerr := json.Unmarshal(line, &std); jerr != nil {
				t.Fatalf("we accepted what encoding/json rejects (%v): %q", jerr, line)
			}
			if !sameEntry(&std, &got) {
				t.Fatalf("differs from encoding/json on %q:\njson %+v\nours %+v", line, std, got)
			}
			// Re-encoding what we decoded round-trips.
			again := AppendEntryJSON(nil, &got)
			var back Entry
			if err := DecodeEntryJSON(again, &back); err != nil {
				t.Fatalf("re-decode %q: %v", again, err)
			}
			if !sameEntry(&got, &back) {
				t.Fatalf("re-encode round trip:\nfirst  %+v\nsecond %+v", got, back)
			}
		}
		// Treat the input as field material too: an entry built from it
		// must survive encode/decode whenever its strings are valid UTF-8.
		s := string(line)
		if !utf8.ValidString(s) {
			return
		}
		e := &Entry{Seq: uint64(len(line)), Time: -int64(len(line)), Node: s, Kind: Kind(s), CallID: s,
			From: s, Reason: s, Status: -len(line), Body: line, BodyKept: len(line)%2 == 0,
			BodySHA256: line, PrevHash: line, Hash: line}
		enc := AppendEntryJSON(nil, e)
		var dec Entry
		if err := DecodeEntryJSON(enc, &dec); err != nil {
			t.Fatalf("decode(encode(e)) of %q: %v", enc, err)
		}
		if !sameEntry(e, &dec) {
			t.Fatalf("decode(encode(e)):\nwant %+v\ngot  %+v", e, dec)
		}
	})
}

// sameEntry compares all fields, treating nil and empty byte slices alike
// (cheaper than cmp in the fuzz loop).
func sameEntry(a, b *Entry) bool {
	return a.Seq == b.Seq && a.Time == b.Time && a.Node == b.Node && a.Kind == b.Kind &&
		a.Method == b.Method && a.CallID == b.CallID && a.CSeq == b.CSeq && a.From == b.From &&
		a.To == b.To && a.RURI == b.RURI && a.Src == b.Src && a.Transport == b.Transport &&
		a.SrcNet == b.SrcNet && a.DstNet == b.DstNet && a.Status == b.Status && a.Reason == b.Reason &&
		a.BodyType == b.BodyType && a.BodyKept == b.BodyKept &&
		bytes.Equal(a.BodySHA256, b.BodySHA256) && bytes.Equal(a.Body, b.Body) &&
		bytes.Equal(a.PrevHash, b.PrevHash) && bytes.Equal(a.Hash, b.Hash)
}
