package ledger

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// EntryLineError says where and why DecodeEntryJSON rejected a line.
type EntryLineError struct {
	Offset int    // byte offset in the line
	Field  string // JSON key being decoded, if any
	Reason string
}

func (e *EntryLineError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("entry line: offset %d: field %q: %s", e.Offset, e.Field, e.Reason)
	}
	return fmt.Sprintf("entry line: offset %d: %s", e.Offset, e.Reason)
}

// DecodeEntryJSON parses one "entry" line as written by AppendEntryJSON into
// *e (which it zeroes first). It is the strict, allocation-lean counterpart
// of the encoder for VerifyExport: it accepts any key order and JSON
// whitespace, but rejects unknown, duplicate or mistyped fields, a "type"
// other than "entry", null, numbers that are not plain integers in range,
// non-canonical or invalid base64, invalid UTF-8 and anything after the
// object. Fields the encoder always writes (type, seq, time, node, kind,
// prev_hash, hash) are required. On error, e holds what was decoded so far.
func DecodeEntryJSON(line []byte, e *Entry) error {
	prevNode := e.Node // reused when equal: saves an allocation per line
	*e = Entry{}
	d := jdec{b: line, prevNode: prevNode}
	d.ws()
	if !d.lit('{') {
		return d.fail("", "want '{'")
	}
	var seen uint32
	d.ws()
	if d.peek() == '}' {
		d.i++
	} else {
		for {
			d.ws()
			kstart := d.i
			key, ok := d.rawKey()
			if !ok {
				return d.err
			}
			f, ok := entryField(key)
			if !ok {
				d.i = kstart
				return d.fail(string(key), "unknown field")
			}
			if seen&(1<<f) != 0 {
				d.i = kstart
				return d.fail(string(key), "duplicate field")
			}
			seen |= 1 << f
			d.ws()
			if !d.lit(':') {
				return d.fail(string(key), "want ':'")
			}
			d.ws()
			if err := d.field(f, string(key), e); err != nil {
				return err
			}
			d.ws()
			if d.lit(',') {
				continue
			}
			if d.lit('}') {
				break
			}
			return d.fail("", "want ',' or '}'")
		}
	}
	d.ws()
	if d.i != len(d.b) {
		return d.fail("", "data after the object")
	}
	if missing := requiredFields &^ seen; missing != 0 {
		for _, name := range requiredNames {
			if f, _ := entryField([]byte(name)); missing&(1<<f) != 0 {
				return d.fail(name, "missing")
			}
		}
	}
	return nil
}

const (
	fType = iota
	fSeq
	fTime
	fNode
	fKind
	fMethod
	fCallID
	fCSeq
	fFrom
	fTo
	fRURI
	fSrc
	fTransport
	fSrcNet
	fDstNet
	fStatus
	fReason
	fBodyType
	fBodySHA256
	fBodyKept
	fBody
	fPrevHash
	fHash
)

const requiredFields = 1<<fType | 1<<fSeq | 1<<fTime | 1<<fNode | 1<<fKind | 1<<fPrevHash | 1<<fHash

// entryField maps a key to its field number (a switch: cheaper than a map).
func entryField(key []byte) (uint, bool) {
	switch string(key) {
	case "type":
		return fType, true
	case "seq":
		return fSeq, true
	case "time":
		return fTime, true
	case "node":
		return fNode, true
	case "kind":
		return fKind, true
	case "method":
		return fMethod, true
	case "call_id":
		return fCallID, true
	case "cseq":
		return fCSeq, true
	case "from":
		return fFrom, true
	case "to":
		return fTo, true
	case "ruri":
		return fRURI, true
	case "src":
		return fSrc, true
	case "transport":
		return fTransport, true
	case "src_net":
		return fSrcNet, true
	case "dst_net":
		return fDstNet, true
	case "status":
		return fStatus, true
	case "reason":
		return fReason, true
	case "body_type":
		return fBodyType, true
	case "body_sha256":
		return fBodySHA256, true
	case "body_kept":
		return fBodyKept, true
	case "body":
		return fBody, true
	case "prev_hash":
		return fPrevHash, true
	case "hash":
		return fHash, true
	}
	return 0, false
}

var requiredNames = []string{"type", "seq", "time", "node", "kind", "prev_hash", "hash"}

type jdec struct {
	b   []byte
	i   int
	err error
	buf []byte // scratch for unescaping

	prevNode string
}

func (d *jdec) fail(field, reason string) error {
	d.err = &EntryLineError{Offset: d.i, Field: field, Reason: reason}
	return d.err
}

func (d *jdec) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jdec) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *jdec) lit(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// rawKey reads a key; keys are plain ASCII names, so escapes are refused.
func (d *jdec) rawKey() ([]byte, bool) {
	if !d.lit('"') {
		d.fail("", "want a quoted key")
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			k := d.b[start:d.i]
			d.i++
			return k, true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			d.fail("", "unexpected character in key")
			return nil, false
		}
		d.i++
	}
	d.fail("", "unterminated key")
	return nil, false
}

// str reads a JSON string. Without escapes it returns a slice of the line.
func (d *jdec) str(field string) ([]byte, bool) {
	if d.peek() == 'n' {
		d.fail(field, "null is not allowed")
		return nil, false
	}
	if !d.lit('"') {
		d.fail(field, "want a string")
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !utf8.Valid(s) {
				d.i = start
				d.fail(field, "invalid UTF-8")
				return nil, false
			}
			return s, true
		case c == '\\':
			return d.strSlow(field, start)
		case c < 0x20:
			d.fail(field, "control character in string")
			return nil, false
		}
		d.i++
	}
	d.fail(field, "unterminated string")
	return nil, false
}

func (d *jdec) strSlow(field string, start int) ([]byte, bool) {
	out := append(d.buf[:0], d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			d.buf = out
			if !utf8.Valid(out) {
				d.i = start
				d.fail(field, "invalid UTF-8")
				return nil, false
			}
			return out, true
		case c < 0x20:
			d.fail(field, "control character in string")
			return nil, false
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			break
		}
		esc := d.b[d.i+1]
		d.i += 2
		switch esc {
		case '"', '\\', '/':
			out = append(out, esc)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				d.fail(field, "bad \\u escape")
				return nil, false
			}
			if utf16.IsSurrogate(r) {
				// A high surrogate must be followed by a low one
				// (RFC 8259 7); a lone one is invalid UTF-16.
				r2 := rune(-1)
				if d.i+1 < len(d.b) && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
					d.i += 2
					r2, ok = d.hex4()
					if !ok {
						d.fail(field, "bad \\u escape")
						return nil, false
					}
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					d.fail(field, "unpaired surrogate in \\u escape")
					return nil, false
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			d.i -= 2
			d.fail(field, "bad escape")
			return nil, false
		}
	}
	d.fail(field, "unterminated string")
	return nil, false
}

func (d *jdec) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		return 0, false
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	d.i += 4
	return r, true
}

// number reads a JSON integer token (optional '-', digits, no leading zero,
// no fraction or exponent).
func (d *jdec) number(field string, signed bool) ([]byte, bool) {
	start := d.i
	if signed && d.peek() == '-' {
		d.i++
	}
	ds := d.i
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
	}
	switch {
	case d.i == ds:
		d.i = start
		d.fail(field, "want an integer")
		return nil, false
	case d.i-ds > 1 && d.b[ds] == '0':
		d.i = start
		d.fail(field, "leading zero")
		return nil, false
	case d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E'):
		d.i = start
		d.fail(field, "want an integer")
		return nil, false
	}
	return d.b[start:d.i], true
}

func (d *jdec) uint(field string) (uint64, bool) {
	start := d.i
	tok, ok := d.number(field, false)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(string(tok), 10, 64)
	if err != nil {
		d.i = start
		d.fail(field, "integer out of range")
		return 0, false
	}
	return v, true
}

func (d *jdec) int(field string, bits int) (int64, bool) {
	start := d.i
	tok, ok := d.number(field, true)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(tok), 10, bits)
	if err != nil {
		d.i = start
		d.fail(field, "integer out of range")
		return 0, false
	}
	return v, true
}

// bytes reads a base64 (standard, padded) string. Like encoding/json, ""
// decodes to an empty value; unlike it, non-canonical padding bits are
// refused too (base64.StdEncoding.Strict).
func (d *jdec) bytes(field string) ([]byte, bool) {
	start := d.i
	s, ok := d.str(field)
	if !ok {
		return nil, false
	}
	if len(s) == 0 {
		return nil, true
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Strict().Decode(out, s)
	if err != nil {
		d.i = start
		d.fail(field, "bad base64: "+err.Error())
		return nil, false
	}
	return out[:n:n], true
}

// intern returns s as a string, reusing prev when equal (node and kind are
// the same on every line).
func intern(s []byte, prev string) string {
	if string(s) == prev {
		return prev
	}
	return string(s)
}

func (d *jdec) field(f uint, name string, e *Entry) error {
	var ok bool
	strField := func(dst *string) {
		var s []byte
		if s, ok = d.str(name); ok {
			*dst = string(s)
		}
	}
	switch f {
	case fType:
		var s []byte
		if s, ok = d.str(name); ok && string(s) != LineEntry {
			d.i -= len(s) + 2
			return d.fail(name, fmt.Sprintf("want %q", LineEntry))
		}
	case fSeq:
		e.Seq, ok = d.uint(name)
	case fTime:
		e.Time, ok = d.int(name, 64)
	case fNode:
		var s []byte
		if s, ok = d.str(name); ok {
			e.Node = intern(s, d.prevNode)
		}
	case fKind:
		var s []byte
		if s, ok = d.str(name); ok {
			e.Kind = Kind(intern(s, string(kindOf(s))))
		}
	case fMethod:
		strField(&e.Method)
	case fCallID:
		strField(&e.CallID)
	case fCSeq:
		strField(&e.CSeq)
	case fFrom:
		strField(&e.From)
	case fTo:
		strField(&e.To)
	case fRURI:
		strField(&e.RURI)
	case fSrc:
		strField(&e.Src)
	case fTransport:
		strField(&e.Transport)
	case fSrcNet:
		strField(&e.SrcNet)
	case fDstNet:
		strField(&e.DstNet)
	case fStatus:
		var v int64
		v, ok = d.int(name, strconv.IntSize)
		e.Status = int(v)
	case fReason:
		strField(&e.Reason)
	case fBodyType:
		strField(&e.BodyType)
	case fBodySHA256:
		e.BodySHA256, ok = d.bytes(name)
	case fBodyKept:
		switch {
		case d.i+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "true":
			e.BodyKept, ok = true, true
			d.i += 4
		case d.i+5 <= len(d.b) && string(d.b[d.i:d.i+5]) == "false":
			ok = true
			d.i += 5
		default:
			return d.fail(name, "want true or false")
		}
	case fBody:
		e.Body, ok = d.bytes(name)
	case fPrevHash:
		e.PrevHash, ok = d.bytes(name)
	case fHash:
		e.Hash, ok = d.bytes(name)
	}
	if !ok {
		return d.err
	}
	return nil
}

// kindOf returns the constant Kind spelled s, so decoding a kind does not
// allocate.
func kindOf(s []byte) Kind {
	switch Kind(s) {
	case KindRequest:
		return KindRequest
	case KindResponse:
		return KindResponse
	case KindChat:
		return KindChat
	case KindAdmin:
		return KindAdmin
	case KindAnchor:
		return KindAnchor
	case KindMSRP:
		return KindMSRP
	}
	return ""
}
