package lists

import (
	"bytes"
	"compress/flate"
	"errors"
	"strings"
	"testing"
)

func TestParseResourceLists(t *testing.T) {
	for _, tc := range []struct {
		name    string
		doc     string
		max     int
		want    []DocList
		wantErr error
	}{
		{"linphone", `<?xml version="1.0" encoding="UTF-8"?><resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><list><entry uri="sip:bob@b.example"/><entry uri="sip:carol@b.example"/></list></resource-lists>`,
			10, []DocList{{Entries: []Entry{{URI: "sip:bob@b.example"}, {URI: "sip:carol@b.example"}}}}, nil},
		{"names, nesting flattened, duplicates once, refs skipped",
			`<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="friends"><display-name>Friends</display-name>` +
				`<entry uri="sip:bob@b.example"><display-name>Bob &amp; Co</display-name></entry>` +
				`<list name="inner"><display-name>not the outer name</display-name><entry uri="sip:dave@b.example"/><entry uri="sip:bob@b.example"/></list>` +
				`<entry-ref ref="x"/><external anchor="http://x"/><x:ext xmlns:x="urn:other"><entry uri="sip:ignored@x"/></x:ext></list><list name="two"/></resource-lists>`,
			10, []DocList{{Name: "friends", DisplayName: "Friends", Skipped: 2, Entries: []Entry{{URI: "sip:bob@b.example", DisplayName: "Bob & Co"}, {URI: "sip:dave@b.example"}}}, {Name: "two"}}, nil},
		{"no namespace is read leniently", `<resource-lists><list><entry uri="sip:a@b.example"/></list></resource-lists>`, 10,
			[]DocList{{Entries: []Entry{{URI: "sip:a@b.example"}}}}, nil},
		{"wrong root", `<rls-services/>`, 10, nil, ErrMalformed},
		{"unclosed", `<resource-lists><list>`, 10, nil, ErrMalformed},
		{"entry without uri", `<resource-lists><list><entry/></list></resource-lists>`, 10, nil, ErrMalformed},
		{"too many entries", `<resource-lists><list><entry uri="sip:a@b"/><entry uri="sip:c@b"/></list></resource-lists>`, 1, nil, ErrTooLarge},
		{"too deep", `<resource-lists>` + strings.Repeat("<list>", 10) + strings.Repeat("</list>", 10) + `</resource-lists>`, 10, nil, ErrMalformed},
		{"too large", `<resource-lists>` + strings.Repeat(" ", MaxDocument) + `</resource-lists>`, 10, nil, ErrTooLarge},
		{"entity expansion is not followed", `<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><resource-lists><list><entry uri="&e;"/></list></resource-lists>`, 10, nil, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseResourceLists([]byte(tc.doc), tc.max)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && !equalDocs(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func equalDocs(a, b []DocList) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].DisplayName != b[i].DisplayName || a[i].Skipped != b[i].Skipped || len(a[i].Entries) != len(b[i].Entries) {
			return false
		}
		for j := range a[i].Entries {
			if a[i].Entries[j] != b[i].Entries[j] {
				return false
			}
		}
	}
	return true
}

// Export then import gives the same lists.
func TestResourceListsRoundTrip(t *testing.T) {
	in := []DocList{{Name: "a<b", DisplayName: `Quote " & amp`, Entries: []Entry{{URI: "sip:x@y.example", DisplayName: "X <x>"}, {URI: "sip:z@y.example"}}}}
	out, err := ParseResourceLists(MarshalResourceLists(in), 10)
	if err != nil || !equalDocs(in, out) {
		t.Fatalf("round trip: %v %+v", err, out)
	}
}

func TestDecodeBody(t *testing.T) {
	doc := []byte("<resource-lists/>")
	var raw bytes.Buffer
	fw, _ := flate.NewWriter(&raw, flate.BestCompression)
	fw.Write(doc)
	fw.Close()
	bomb := deflate(t, strings.Repeat("a", MaxDocument+1))
	for _, tc := range []struct {
		name, enc string
		body      []byte
		want      []byte
		err       error
	}{
		{"identity", "", doc, doc, nil},
		{"zlib deflate", "deflate", deflate(t, string(doc)), doc, nil},
		{"raw deflate", "Deflate", raw.Bytes(), doc, nil},
		{"bomb", "deflate", bomb, nil, ErrTooLarge},
		{"garbage", "deflate", []byte("not compressed"), nil, ErrMalformed},
		{"unknown", "br", doc, nil, ErrUnsupportedEncoding},
	} {
		got, err := DecodeBody(tc.body, tc.enc, MaxDocument)
		if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %q %v", tc.name, got, err)
		}
	}
}

// What buildRLMI and buildMultipart write parses back with mime/multipart
// and encoding/xml, with the values given.
func TestRLMIRoundTrip(t *testing.T) {
	rs := []rlmiResource{
		{uri: "sip:bob@b.example", name: "Bob & co", id: "i1", state: stateActive, cid: "c1@h", contentType: "application/pidf+xml", body: []byte("<presence/>")},
		{uri: "sip:carol@b.example", id: "i2", state: stateTerminated, reason: "rejected"},
		{uri: "sip:dave@b.example", id: "i3", state: statePending},
	}
	rlmi := buildRLMI("sip:l@lists.example", "My <list>", 7, false, rs)
	ct := notifyContentType("root@h", "0123abcd")
	if ct != `multipart/related;type="application/rlmi+xml";start="<root@h>";boundary=0123abcd` {
		t.Fatalf("content type %s", ct)
	}
	n, err := ParseNotify(ct, buildMultipart("0123abcd", "root@h", rlmi, rs))
	if err != nil {
		t.Fatal(err)
	}
	checkShape(t, ct, n)
	r := n.RLMI
	if r.URI != "sip:l@lists.example" || r.Version != 7 || r.FullState || r.Names[0] != "My <list>" || len(r.Resources) != 3 ||
		r.Resources[0].Names[0] != "Bob & co" || r.Resources[1].Instances[0].Reason != "rejected" || string(n.Parts["c1@h"].Body) != "<presence/>" {
		t.Fatalf("parsed back: %+v %+v", r, n.Parts)
	}
}

func FuzzParseResourceLists(f *testing.F) {
	f.Add([]byte(`<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="a"><display-name>A</display-name><entry uri="sip:b@c"><display-name>B</display-name></entry><list><entry uri="sip:d@e"/></list></list></resource-lists>`))
	f.Add([]byte(`<resource-lists><list><entry-ref ref="x"/></list></resource-lists>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ls, err := ParseResourceLists(data, 50)
		if err != nil {
			return
		}
		n := 0
		for _, l := range ls {
			n += len(l.Entries)
		}
		if n > 50 || len(ls) > MaxDocLists {
			t.Fatalf("limits not kept: %d entries, %d lists", n, len(ls))
		}
		// What was read exports and reads back to the same.
		again, err := ParseResourceLists(MarshalResourceLists(ls), 50)
		if err != nil {
			t.Fatalf("export of a parsed document does not parse: %v", err)
		}
		if len(again) != len(ls) {
			t.Fatalf("round trip changed the list count")
		}
	})
}

func FuzzParseNotify(f *testing.F) {
	rs := []rlmiResource{{uri: "sip:b@c", id: "i", state: stateActive, cid: "x@h", contentType: "application/pidf+xml", body: []byte("<p/>")}}
	f.Add(notifyContentType("r@h", "bnd"), buildMultipart("bnd", "r@h", buildRLMI("sip:l@h", "n", 0, true, rs), rs))
	f.Add(`multipart/related;type="application/rlmi+xml";boundary="q"`, []byte("--q\r\n\r\n<list xmlns=\"urn:ietf:params:xml:ns:rlmi\"/>\r\n--q--"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		_, _ = ParseNotify(ct, body)
	})
}

func FuzzDecodeBody(f *testing.F) {
	f.Add([]byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01}, "deflate")
	f.Add([]byte("plain"), "")
	f.Fuzz(func(t *testing.T, body []byte, enc string) {
		out, err := DecodeBody(body, enc, 4096)
		if err == nil && len(out) > 4096 {
			t.Fatalf("cap exceeded: %d", len(out))
		}
	})
}
