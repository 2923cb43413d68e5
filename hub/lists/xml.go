package lists

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"
)

// The documents of RFC 4826 (resource-lists) and RFC 4662 (RLMI), and the
// multipart/related NOTIFY body. Everything here reads attacker input:
// sizes are capped before decoding, depth and counts while decoding, and
// encoding/xml fetches no external entities.

const (
	nsResourceLists = "urn:ietf:params:xml:ns:resource-lists"
	nsRLMI          = "urn:ietf:params:xml:ns:rlmi"

	// MaxDocument bounds a resource-lists document after decompression.
	MaxDocument = 64 << 10
	// MaxDepth bounds element nesting in a resource-lists document.
	MaxDepth = 8
	// MaxDocLists bounds the top-level lists of an imported document.
	MaxDocLists = 100
)

// Entry is one resource of a list: an RFC 4826 <entry>.
type Entry struct {
	URI         string
	DisplayName string
}

// DocList is one top-level <list> of a resource-lists document; nested
// lists are flattened into it in document order, each URI once.
type DocList struct {
	Name        string
	DisplayName string
	Entries     []Entry
	// Skipped counts <entry-ref> and <external> elements, which name XCAP
	// documents the hub does not fetch.
	Skipped int
}

// Errors of the parsers, matched with errors.Is.
var (
	ErrTooLarge            = errors.New("document too large")
	ErrMalformed           = errors.New("malformed document")
	ErrUnsupportedEncoding = errors.New("unsupported content encoding")
)

// DecodeBody undoes a Content-Encoding (RFC 3261 20.12). liblinphone's
// "deflate" is a zlib stream (RFC 1950, first bytes 78 9c); raw deflate
// (RFC 1951) is accepted too since the name is used for both in the wild.
// The result is capped at max bytes, so a compression bomb costs nothing.
func DecodeBody(body []byte, encoding string, max int) ([]byte, error) {
	var r io.Reader
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
		if len(body) > max {
			return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(body), max)
		}
		return body, nil
	case "deflate":
		if zr, err := zlib.NewReader(bytes.NewReader(body)); err == nil {
			r = zr
		} else {
			r = flate.NewReader(bytes.NewReader(body))
		}
	case "gzip":
		gr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
		}
		r = gr
	default:
		return nil, fmt.Errorf("%w %q", ErrUnsupportedEncoding, encoding)
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, encoding, err)
	}
	if len(out) > max {
		return nil, fmt.Errorf("%w: more than %d bytes decompressed", ErrTooLarge, max)
	}
	return out, nil
}

// ParseResourceLists reads an RFC 4826 resource-lists document into its
// top-level lists. Elements of other namespaces are ignored (RFC 4826 3.1
// allows extensions); elements without a namespace are read as
// resource-lists ones, because some clients omit the xmlns. At most
// maxEntries entries in the whole document.
func ParseResourceLists(data []byte, maxEntries int) ([]DocList, error) {
	if len(data) > MaxDocument {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), MaxDocument)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	var (
		out     []DocList
		depth   int
		total   int
		root    bool
		cur     = -1    // index of the top-level list being read
		inEntry = false // inside an <entry> that was kept
		entry   Entry
		text    *string // where the current <display-name> goes
		buf     strings.Builder
		listLvl []int // depths of open <list> elements
		seen    map[string]bool
	)
	ours := func(n xml.Name) bool { return n.Space == nsResourceLists || n.Space == "" }
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth > MaxDepth {
				return nil, fmt.Errorf("%w: nested deeper than %d elements", ErrMalformed, MaxDepth)
			}
			if depth == 1 {
				if t.Name.Local != "resource-lists" || !ours(t.Name) {
					return nil, fmt.Errorf("%w: root element is <%s>, not <resource-lists>", ErrMalformed, t.Name.Local)
				}
				root = true
				continue
			}
			if !ours(t.Name) {
				// An extension element (RFC 4826 3.1): its content is not
				// ours to read, even entries in it.
				if err := d.Skip(); err != nil {
					return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
				}
				depth--
				continue
			}
			switch t.Name.Local {
			case "list":
				if len(listLvl) == 0 {
					if len(out) >= MaxDocLists {
						return nil, fmt.Errorf("%w: more than %d lists", ErrTooLarge, MaxDocLists)
					}
					out = append(out, DocList{Name: attr(t, "name")})
					cur, seen = len(out)-1, map[string]bool{}
				}
				listLvl = append(listLvl, depth)
			case "entry":
				if cur < 0 || inEntry {
					continue
				}
				u := strings.TrimSpace(attr(t, "uri"))
				if u == "" {
					return nil, fmt.Errorf("%w: <entry> without uri", ErrMalformed)
				}
				total++
				if total > maxEntries {
					return nil, fmt.Errorf("%w: more than %d entries", ErrTooLarge, maxEntries)
				}
				inEntry, entry = true, Entry{URI: u}
			case "entry-ref", "external":
				if cur >= 0 {
					out[cur].Skipped++
				}
			case "display-name":
				buf.Reset()
				switch {
				case inEntry:
					text = &entry.DisplayName
				case cur >= 0 && len(listLvl) == 1 && listLvl[0] == depth-1:
					text = &out[cur].DisplayName
				}
			}
		case xml.CharData:
			if text != nil {
				buf.Write(t)
			}
		case xml.EndElement:
			if depth == 1 {
				depth--
				continue
			}
			if ours(t.Name) {
				switch t.Name.Local {
				case "display-name":
					if text != nil {
						*text = strings.TrimSpace(buf.String())
						text = nil
					}
				case "entry":
					if inEntry {
						inEntry = false
						if !seen[entry.URI] {
							seen[entry.URI] = true
							out[cur].Entries = append(out[cur].Entries, entry)
						}
					}
				case "list":
					if n := len(listLvl); n > 0 && listLvl[n-1] == depth {
						listLvl = listLvl[:n-1]
					}
				}
			}
			depth--
		}
	}
	if !root {
		return nil, fmt.Errorf("%w: no <resource-lists> element", ErrMalformed)
	}
	return out, nil
}

func attr(t xml.StartElement, name string) string {
	for _, a := range t.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// MarshalResourceLists writes lists as one RFC 4826 document (export).
func MarshalResourceLists(lists []DocList) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<resource-lists xmlns="` + nsResourceLists + `">` + "\n")
	for _, l := range lists {
		fmt.Fprintf(&b, "  <list name=\"%s\">\n", esc(l.Name))
		if l.DisplayName != "" {
			fmt.Fprintf(&b, "    <display-name>%s</display-name>\n", esc(l.DisplayName))
		}
		for _, e := range l.Entries {
			if e.DisplayName == "" {
				fmt.Fprintf(&b, "    <entry uri=\"%s\"/>\n", esc(e.URI))
				continue
			}
			fmt.Fprintf(&b, "    <entry uri=\"%s\"><display-name>%s</display-name></entry>\n", esc(e.URI), esc(e.DisplayName))
		}
		b.WriteString("  </list>\n")
	}
	b.WriteString("</resource-lists>\n")
	return b.Bytes()
}

// RLMI is an RFC 4662 5.2 resource list meta-information document.
type RLMI struct {
	XMLName   xml.Name       `xml:"urn:ietf:params:xml:ns:rlmi list"`
	URI       string         `xml:"uri,attr"`
	Version   uint32         `xml:"version,attr"`
	FullState bool           `xml:"fullState,attr"`
	Names     []string       `xml:"urn:ietf:params:xml:ns:rlmi name"`
	Resources []RLMIResource `xml:"urn:ietf:params:xml:ns:rlmi resource"`
}

// RLMIResource is one <resource> of an RLMI document.
type RLMIResource struct {
	URI       string         `xml:"uri,attr"`
	Names     []string       `xml:"urn:ietf:params:xml:ns:rlmi name"`
	Instances []RLMIInstance `xml:"urn:ietf:params:xml:ns:rlmi instance"`
}

// RLMIInstance is one <instance> of a resource.
type RLMIInstance struct {
	ID     string `xml:"id,attr"`
	State  string `xml:"state,attr"`
	Reason string `xml:"reason,attr,omitempty"`
	CID    string `xml:"cid,attr,omitempty"`
}

// MaxRLMI bounds an RLMI document read by ParseRLMI.
const MaxRLMI = 1 << 20

// ParseRLMI reads an RLMI document (tests, interop checks, and a list
// served by another RLS).
func ParseRLMI(data []byte) (*RLMI, error) {
	if len(data) > MaxRLMI {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), MaxRLMI)
	}
	var r RLMI
	if err := xml.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: rlmi: %v", ErrMalformed, err)
	}
	return &r, nil
}

// rlmiResource is what buildRLMI writes for one resource (one instance).
type rlmiResource struct {
	uri, name         string
	id, state, reason string
	cid               string
	contentType       string
	body              []byte
}

// buildRLMI writes the RLMI document by hand so attribute order and
// namespaces are exactly RFC 4662's example (a strict client parses it
// with XPath over the rlmi namespace).
func buildRLMI(listURI, listName string, version uint32, full bool, rs []rlmiResource) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\r\n")
	fmt.Fprintf(&b, `<list xmlns="%s" uri="%s" version="%d" fullState="%t">`, nsRLMI, esc(listURI), version, full)
	b.WriteString("\r\n")
	if listName != "" {
		fmt.Fprintf(&b, "  <name>%s</name>\r\n", esc(listName))
	}
	for _, r := range rs {
		fmt.Fprintf(&b, `  <resource uri="%s">`, esc(r.uri))
		if r.name != "" {
			fmt.Fprintf(&b, "<name>%s</name>", esc(r.name))
		}
		fmt.Fprintf(&b, `<instance id="%s" state="%s"`, esc(r.id), r.state)
		if r.reason != "" {
			fmt.Fprintf(&b, ` reason="%s"`, esc(r.reason))
		}
		if r.cid != "" {
			fmt.Fprintf(&b, ` cid="%s"`, esc(r.cid))
		}
		b.WriteString("/></resource>\r\n")
	}
	b.WriteString("</list>\r\n")
	return b.Bytes()
}

// notifyContentType is the NOTIFY Content-Type, built by hand: belle-sip
// 5.1.64 takes everything after ";boundary=" as the boundary and crashed on
// a quoted one, and mime.FormatMediaType sorts boundary first and quotes.
// Boundary last, unquoted (it is a token of hex digits).
func notifyContentType(startCID, boundary string) string {
	return `multipart/related;type="application/rlmi+xml";start="<` + startCID + `>";boundary=` + boundary
}

// buildMultipart writes the RFC 2387 body: the RLMI root first, then one
// part per active instance, with CRLF line ends.
func buildMultipart(boundary, rlmiCID string, rlmi []byte, rs []rlmiResource) []byte {
	var b bytes.Buffer
	part := func(ct, cid string, body []byte) {
		b.WriteString("--" + boundary + "\r\n")
		b.WriteString("Content-Transfer-Encoding: binary\r\n")
		b.WriteString("Content-ID: <" + cid + ">\r\n")
		b.WriteString("Content-Type: " + ct + "\r\n\r\n")
		b.Write(body)
		b.WriteString("\r\n")
	}
	part(`application/rlmi+xml;charset="UTF-8"`, rlmiCID, rlmi)
	for _, r := range rs {
		if r.cid != "" {
			part(r.contentType, r.cid, r.body)
		}
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes()
}

// Notify is a list NOTIFY body read back: its RLMI root and the other parts
// by Content-ID (without angle brackets).
type Notify struct {
	RLMI  *RLMI
	Start string
	Parts map[string]Part
}

// Part is one body part besides the root.
type Part struct {
	ContentType string
	Body        []byte
}

// maxParts bounds the parts ParseNotify reads.
const maxParts = 2 * 200

// ParseNotify reads a multipart/related RLMI NOTIFY body (tests, interop
// checks, fuzzing). The root is the part named by start, or the first.
func ParseNotify(contentType string, body []byte) (*Notify, error) {
	if len(body) > MaxRLMI*4 {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(body))
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, fmt.Errorf("%w: content type: %v", ErrMalformed, err)
	}
	if mt != "multipart/related" || params["type"] != "application/rlmi+xml" || params["boundary"] == "" {
		return nil, fmt.Errorf("%w: content type %q is not multipart/related of application/rlmi+xml", ErrMalformed, contentType)
	}
	n := &Notify{Start: strings.Trim(params["start"], "<>"), Parts: map[string]Part{}}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var rootBody []byte
	for i := 0; ; i++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: part %d: %v", ErrMalformed, i, err)
		}
		if i >= maxParts {
			return nil, fmt.Errorf("%w: more than %d parts", ErrTooLarge, maxParts)
		}
		data, err := io.ReadAll(io.LimitReader(p, MaxRLMI+1))
		if err != nil {
			return nil, fmt.Errorf("%w: part %d: %v", ErrMalformed, i, err)
		}
		cid := strings.Trim(textproto.MIMEHeader(p.Header).Get("Content-Id"), "<> ")
		ct := p.Header.Get("Content-Type")
		if (n.Start != "" && cid == n.Start) || (n.Start == "" && i == 0) {
			rootBody = data
			continue
		}
		if _, dup := n.Parts[cid]; dup {
			return nil, fmt.Errorf("%w: Content-ID %q twice", ErrMalformed, cid)
		}
		n.Parts[cid] = Part{ContentType: ct, Body: data}
	}
	if rootBody == nil {
		return nil, fmt.Errorf("%w: no root part %q", ErrMalformed, n.Start)
	}
	if n.RLMI, err = ParseRLMI(rootBody); err != nil {
		return nil, err
	}
	return n, nil
}
