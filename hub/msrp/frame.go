package msrp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Continuation flags of the end-line (RFC 4975 section 7.1).
const (
	FlagEnd      = '$' // last chunk of the message
	FlagMore     = '+' // more chunks follow
	FlagAborted  = '#' // the sender abandoned the message
	endLineDash  = "-------"
	maxTIDLength = 32 // RFC 4975 section 9: transact-id = ident = 4*32(alphanum / ...)
	minTIDLength = 4
)

// Errors the reader returns. A frame error (ErrMalformed, ErrTooLarge)
// leaves the stream out of sync: the caller closes the connection.
var (
	ErrMalformed = errors.New("msrp: malformed frame")
	ErrTooLarge  = errors.New("msrp: frame over the size limit")
)

// ByteRange is the Byte-Range header (RFC 4975 section 7.1.1):
// start-end/total, 1-based and inclusive; End or Total -1 stand for "*".
type ByteRange struct {
	Start, End, Total int64
}

func (b ByteRange) String() string {
	end, total := "*", "*"
	if b.End >= 0 {
		end = strconv.FormatInt(b.End, 10)
	}
	if b.Total >= 0 {
		total = strconv.FormatInt(b.Total, 10)
	}
	return strconv.FormatInt(b.Start, 10) + "-" + end + "/" + total
}

// ParseByteRange parses "1-25/25", "1-*/*", "26-50/*".
func ParseByteRange(s string) (ByteRange, error) {
	var br ByteRange
	dash := strings.IndexByte(s, '-')
	slash := strings.IndexByte(s, '/')
	if dash <= 0 || slash < dash+2 || slash == len(s)-1 {
		return br, fmt.Errorf("%w: Byte-Range %q", ErrMalformed, s)
	}
	num := func(v string) (int64, error) {
		if v == "*" {
			return -1, nil
		}
		if len(v) > 18 || v == "" {
			return 0, fmt.Errorf("%w: Byte-Range %q", ErrMalformed, s)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || v[0] == '+' {
			return 0, fmt.Errorf("%w: Byte-Range %q", ErrMalformed, s)
		}
		return n, nil
	}
	var err error
	if br.Start, err = num(s[:dash]); err != nil || br.Start < 1 {
		return br, fmt.Errorf("%w: Byte-Range %q start", ErrMalformed, s)
	}
	if br.End, err = num(s[dash+1 : slash]); err != nil {
		return br, err
	}
	if br.Total, err = num(s[slash+1:]); err != nil {
		return br, err
	}
	// An empty chunk is start-(start-1), e.g. 1-0/0 for an empty message.
	if br.End >= 0 && br.End < br.Start-1 {
		return br, fmt.Errorf("%w: Byte-Range %q ends before it starts", ErrMalformed, s)
	}
	if br.Total >= 0 && br.End > br.Total {
		return br, fmt.Errorf("%w: Byte-Range %q beyond its total", ErrMalformed, s)
	}
	return br, nil
}

// Header is a header the parser does not interpret, kept in order.
type Header struct{ Name, Value string }

// Frame is one MSRP request or response (RFC 4975 section 7 and 9).
type Frame struct {
	TID    string
	Method string // SEND, REPORT, AUTH, NICKNAME, ...; "" for a response
	Code   int    // response status code
	Phrase string // response comment

	ToPath, FromPath []string // URIs, in order
	MessageID        string
	ByteRange        ByteRange
	HasByteRange     bool
	SuccessReport    string // "yes" / "no" / "" (absent: no)
	FailureReport    string // "yes" / "no" / "partial" / "" (absent: yes)
	Status           string // REPORT Status header, "000 200 OK"
	ContentType      string // "" when the frame has no body
	Other            []Header
	Body             []byte
	Flag             byte // FlagEnd, FlagMore, FlagAborted
	// Raw is set only by a Reader that keeps raw bytes (the relay's, when
	// a ContentTap is configured): see AppendRaw.
	Raw RawBytes
}

// RawBytes are the bytes of a received frame around its Body, as they
// arrived: Head from the start line through the blank line (or through
// the end-line of a frame without body), Tail the CRLF ending the data, if
// any, and the end-line. They alias the Reader's buffer: valid until its
// next ReadFrame.
type RawBytes struct{ Head, Tail []byte }

// AppendRaw appends the frame exactly as received (Head, Body, Tail) to b;
// it appends nothing when the Reader kept no raw bytes.
func (f *Frame) AppendRaw(b []byte) []byte {
	if len(f.Raw.Head) == 0 {
		return b
	}
	b = append(b, f.Raw.Head...)
	b = append(b, f.Body...)
	return append(b, f.Raw.Tail...)
}

// IsRequest reports whether f is a request.
func (f *Frame) IsRequest() bool { return f.Method != "" }

// Limits bound what a Reader accepts.
type Limits struct {
	MaxLine    int // one start line or header line, CRLF included (default 4096)
	MaxHeaders int // header bytes of one frame (default 16384)
	MaxBody    int // body bytes of one chunk (default 256 KiB)
}

func (l Limits) withDefaults() Limits {
	if l.MaxLine <= 0 {
		l.MaxLine = 4096
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = 16384
	}
	if l.MaxBody <= 0 {
		l.MaxBody = 256 << 10
	}
	return l
}

// Reader reads frames from a stream.
type Reader struct {
	br  *bufio.Reader
	lim Limits
	// body is reused between frames only when the caller says so (Release).
	pool []byte
	// keepRaw: record each frame's header section and end-line in raw
	// (reused, bounded by MaxHeaders plus one line) for Frame.Raw.
	keepRaw bool
	raw     []byte
}

// NewReader wraps r. The buffer holds one whole header line.
func NewReader(r io.Reader, lim Limits) *Reader {
	lim = lim.withDefaults()
	// Small: an idle leg holds this buffer; bodies are appended from it
	// in pieces.
	size := max(8<<10, lim.MaxLine)
	return &Reader{br: bufio.NewReaderSize(r, size), lim: lim}
}

// readLine returns one line with its CRLF (the slice is valid until the
// next read).
func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > r.lim.MaxLine {
		return nil, fmt.Errorf("%w: line over %d bytes", ErrTooLarge, r.lim.MaxLine)
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: line not ended by CRLF", ErrMalformed)
	}
	return line, nil
}

func validTID(s string) bool {
	if len(s) < minTIDLength || len(s) > maxTIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-+%=", c) >= 0) {
			return false
		}
	}
	return true
}

func validMethod(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// validValue refuses control characters in a header value (they would let
// a peer smuggle lines into what the hub writes on the other leg).
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// ReadFrame reads the next frame. Errors wrap ErrMalformed or ErrTooLarge
// for a bad frame, or the stream's error (io.EOF between frames).
func (r *Reader) ReadFrame() (*Frame, error) {
	line, err := r.readLine()
	if err != nil {
		return nil, err
	}
	r.keepLine(line, true)
	f := &Frame{}
	if err := parseStart(f, string(line[:len(line)-2])); err != nil {
		return nil, err
	}
	end := endLineDash + f.TID
	hdrBytes := len(line)
	for {
		line, err = r.readLine()
		if err != nil {
			return nil, eofInFrame(err)
		}
		hdrBytes += len(line)
		if hdrBytes > r.lim.MaxHeaders {
			return nil, fmt.Errorf("%w: headers over %d bytes", ErrTooLarge, r.lim.MaxHeaders)
		}
		r.keepLine(line, false)
		s := line[:len(line)-2]
		if len(s) == len(end)+1 && string(s[:len(end)]) == end {
			// End-line right after the headers: no body.
			if err := f.needPaths(); err != nil {
				return nil, err
			}
			if r.keepRaw {
				f.Raw = RawBytes{Head: r.raw}
			}
			return f, f.setFlag(s[len(end)])
		}
		if len(s) == 0 {
			break // blank line: the body follows
		}
		if err := f.parseHeader(string(s)); err != nil {
			return nil, err
		}
	}
	if f.ContentType == "" {
		return nil, fmt.Errorf("%w: body without Content-Type", ErrMalformed)
	}
	if err := f.needPaths(); err != nil {
		return nil, err
	}
	head := len(r.raw)
	if err := r.readBody(f, end); err != nil {
		return f, err
	}
	if r.keepRaw {
		f.Raw = RawBytes{Head: r.raw[:head:head], Tail: r.raw[head:]}
	}
	return f, nil
}

// keepLine records a line of the frame's header section for Frame.Raw
// (first: the start line, which begins a new frame).
func (r *Reader) keepLine(line []byte, first bool) {
	if !r.keepRaw {
		return
	}
	if first {
		r.raw = r.raw[:0]
	}
	r.raw = append(r.raw, line...)
}

// needPaths: every request and response carries To-Path and From-Path
// (RFC 4975 section 7.1).
func (f *Frame) needPaths() error {
	if len(f.ToPath) == 0 || len(f.FromPath) == 0 {
		return fmt.Errorf("%w: To-Path or From-Path missing", ErrMalformed)
	}
	return nil
}

func eofInFrame(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (f *Frame) setFlag(c byte) error {
	switch c {
	case FlagEnd, FlagMore, FlagAborted:
		f.Flag = c
		return nil
	}
	return fmt.Errorf("%w: continuation flag %q", ErrMalformed, c)
}

// readBody reads data up to CRLF end-line (RFC 4975 section 9:
// content-stuff ends with data CRLF, then the end-line). The end-line is
// recognised only at the start of a line.
func (r *Reader) readBody(f *Frame, end string) error {
	buf := r.pool[:0]
	r.pool = nil
	atLineStart := true
	max := r.lim.MaxBody + len(end) + 5
	for {
		seg, err := r.br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return eofInFrame(err)
		}
		// The end-line follows the CRLF that ends the data, or opens an
		// empty body.
		if atLineStart && err == nil && len(seg) == len(end)+3 && string(seg[:len(end)]) == end && seg[len(seg)-2] == '\r' &&
			(len(buf) == 0 || len(buf) >= 2 && buf[len(buf)-2] == '\r') {
			if len(buf) > 0 {
				buf = buf[:len(buf)-2]
				if r.keepRaw {
					r.raw = append(r.raw, '\r', '\n')
				}
			}
			if r.keepRaw {
				r.raw = append(r.raw, seg...)
			}
			if len(buf) == 0 {
				r.pool = buf // an empty body is nil, however it was framed
			} else {
				f.Body = buf
			}
			return f.setFlag(seg[len(end)])
		}
		buf = append(buf, seg...)
		if len(buf) > max {
			return fmt.Errorf("%w: body over %d bytes", ErrTooLarge, r.lim.MaxBody)
		}
		atLineStart = err == nil
	}
}

// Release hands f's body buffer back for the next frame; f must not be used
// afterwards.
func (r *Reader) Release(f *Frame) {
	if cap(f.Body) <= r.lim.MaxBody+64 {
		r.pool = f.Body[:0]
	}
	f.Body = nil
}

func parseStart(f *Frame, s string) error {
	rest, ok := strings.CutPrefix(s, "MSRP ")
	if !ok {
		return fmt.Errorf("%w: start line %.40q", ErrMalformed, s)
	}
	tid, rest, ok := strings.Cut(rest, " ")
	if !ok || !validTID(tid) {
		return fmt.Errorf("%w: transaction id %.40q", ErrMalformed, tid)
	}
	f.TID = tid
	word, comment, hasComment := strings.Cut(rest, " ")
	if len(word) == 3 && word[0] >= '0' && word[0] <= '9' {
		code, err := strconv.Atoi(word)
		if err != nil || code < 100 || code > 999 {
			return fmt.Errorf("%w: status %.10q", ErrMalformed, word)
		}
		if !validValue(comment) {
			return fmt.Errorf("%w: status comment", ErrMalformed)
		}
		f.Code, f.Phrase = code, comment
		return nil
	}
	if hasComment || !validMethod(word) {
		return fmt.Errorf("%w: method %.40q", ErrMalformed, word)
	}
	f.Method = word
	return nil
}

func (f *Frame) parseHeader(s string) error {
	name, value, ok := strings.Cut(s, ":")
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return fmt.Errorf("%w: header line %.40q", ErrMalformed, s)
	}
	value = strings.TrimSpace(value)
	if !validValue(value) {
		return fmt.Errorf("%w: control character in %s", ErrMalformed, name)
	}
	switch strings.ToLower(name) {
	case "to-path":
		f.ToPath = strings.Fields(value)
		if len(f.ToPath) == 0 {
			return fmt.Errorf("%w: empty To-Path", ErrMalformed)
		}
	case "from-path":
		f.FromPath = strings.Fields(value)
		if len(f.FromPath) == 0 {
			return fmt.Errorf("%w: empty From-Path", ErrMalformed)
		}
	case "message-id":
		// ident is 4-32 characters; shorter and longer ones are seen in the
		// wild, so accept 1-64.
		if value == "" || len(value) > 64 || !validIdent(value) {
			return fmt.Errorf("%w: Message-ID %.40q", ErrMalformed, value)
		}
		f.MessageID = value
	case "byte-range":
		br, err := ParseByteRange(value)
		if err != nil {
			return err
		}
		f.ByteRange, f.HasByteRange = br, true
	case "success-report":
		v := strings.ToLower(value)
		if v != "yes" && v != "no" {
			return fmt.Errorf("%w: Success-Report %.10q", ErrMalformed, value)
		}
		f.SuccessReport = v
	case "failure-report":
		v := strings.ToLower(value)
		if v != "yes" && v != "no" && v != "partial" {
			return fmt.Errorf("%w: Failure-Report %.10q", ErrMalformed, value)
		}
		f.FailureReport = v
	case "status":
		f.Status = value
	case "content-type":
		if value == "" {
			return fmt.Errorf("%w: empty Content-Type", ErrMalformed)
		}
		f.ContentType = value
	default:
		if len(f.Other) >= 32 {
			return fmt.Errorf("%w: too many headers", ErrTooLarge)
		}
		f.Other = append(f.Other, Header{Name: name, Value: value})
	}
	return nil
}

// validIdent accepts the ident characters (RFC 4975 section 9).
func validIdent(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-+%=", c) >= 0) {
			return false
		}
	}
	return true
}

// EndLine is the end-line string for tid without its flag.
func EndLine(tid string) string { return endLineDash + tid }

// Append writes f in wire form to b. Header order follows RFC 4975
// section 7.1: To-Path and From-Path first, Content-Type last before the
// body. The caller guarantees the body does not contain the end-line
// (Valid checks it).
func (f *Frame) Append(b []byte) []byte {
	b = append(b, "MSRP "...)
	b = append(b, f.TID...)
	b = append(b, ' ')
	if f.Method != "" {
		b = append(b, f.Method...)
	} else {
		b = strconv.AppendInt(b, int64(f.Code), 10)
		if f.Phrase != "" {
			b = append(b, ' ')
			b = append(b, f.Phrase...)
		}
	}
	b = append(b, "\r\nTo-Path: "...)
	b = appendPath(b, f.ToPath)
	b = append(b, "\r\nFrom-Path: "...)
	b = appendPath(b, f.FromPath)
	b = append(b, "\r\n"...)
	hdr := func(name, v string) {
		if v != "" {
			b = append(b, name...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	hdr("Message-ID", f.MessageID)
	hdr("Success-Report", f.SuccessReport)
	hdr("Failure-Report", f.FailureReport)
	if f.HasByteRange {
		b = append(b, "Byte-Range: "...)
		b = append(b, f.ByteRange.String()...)
		b = append(b, "\r\n"...)
	}
	hdr("Status", f.Status)
	for _, h := range f.Other {
		hdr(h.Name, h.Value)
	}
	if f.ContentType != "" {
		hdr("Content-Type", f.ContentType)
		b = append(b, "\r\n"...)
		b = append(b, f.Body...)
		b = append(b, "\r\n"...)
	}
	b = append(b, endLineDash...)
	b = append(b, f.TID...)
	flag := f.Flag
	if flag == 0 {
		flag = FlagEnd
	}
	return append(b, flag, '\r', '\n')
}

func appendPath(b []byte, p []string) []byte {
	for i, u := range p {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, u...)
	}
	return b
}

// BodyHasEndLine reports whether body contains the end-line of tid at the
// start of a line, which would end the frame early on the wire.
func BodyHasEndLine(body []byte, tid string) bool {
	needle := []byte("\r\n" + endLineDash + tid)
	if bytes.HasPrefix(body, needle[2:]) {
		return true
	}
	return bytes.Contains(body, needle)
}
