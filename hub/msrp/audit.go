package msrp

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"clearhub/ledger"
)

// Audit entries (through the hub's Auditor, so they land in the same
// ledger as the SIP dialog that set the session up, with its Call-ID):
//
//   - one per MSRP message: Kind msrp, Method "MSRP", From/To the CPIM
//     addresses when the message is message/cpim, else the dialog's
//     parties (sender first), RURI the sender leg's hub URI, Src the
//     sender's address, BodyType the Content-Type, BodySHA256 over the
//     reassembled bytes (when they arrived in order), Status the result
//     (200 delivered, 0 sent unconfirmed with Failure-Report: no or not
//     finished, else the failure code), Reason "message-id=… bytes=…
//     chunks=… first=… last=… …";
//   - one per RFC 5547 file transfer, in addition: Method "MSRP-FILE",
//     Reason with the file-selector name/type/size/hash, the
//     file-transfer-id, the hub's own SHA-1 and the verdict
//     sha1=verified|mismatch|no-hash|unverifiable.
//
// Both have ledger.KindMSRP, so `hubctl audit export --kind msrp` selects them.

const (
	MethodMessage = "MSRP"
	MethodFile    = "MSRP-FILE"
)

// finishMessage writes m's audit entries once. code/why override the
// result (an abandoned message).
func (s *session) finishMessage(m *message, code int, why string, abandoned bool) {
	s.mu.Lock()
	if m.audited {
		s.mu.Unlock()
		return
	}
	m.audited = true
	status, reason := 200, ""
	switch {
	case m.failCode != 0:
		status, reason = m.failCode, m.failPhrase+": "+m.detail
	case abandoned:
		status, reason = code, why
	case m.aborted:
		status, reason = 0, "aborted by the sender (#)"
	case m.fr == "no":
		status, reason = 0, "relayed, unconfirmed (Failure-Report: no)"
	}
	from, to := m.from, m.from.other()
	e := &ledger.Entry{
		Time:      m.last.UnixNano(),
		Kind:      ledger.KindMSRP,
		Method:    MethodMessage,
		CallID:    s.callID,
		From:      from.user,
		To:        to.user,
		RURI:      from.hubURI.String(),
		Src:       from.remoteAddr(),
		Transport: map[bool]string{false: "tcp", true: "tls"}[from.secure],
		SrcNet:    from.net,
		DstNet:    to.net,
		Status:    status,
		BodyType:  m.ctype,
	}
	if m.cpimFrom != "" {
		e.From, e.To = m.cpimFrom, m.cpimTo
	}
	if m.order && m.final && !m.aborted {
		e.BodySHA256 = m.sum.Sum(nil)
		if m.keep {
			e.Body, e.BodyKept = m.body, true
		}
	}
	var b strings.Builder
	b.WriteString("message-id=" + m.id + " bytes=" + itoa(m.bytes) + " chunks=" + strconv.Itoa(m.chunks))
	b.WriteString(" first=" + m.first.UTC().Format(time.RFC3339Nano) + " last=" + m.last.UTC().Format(time.RFC3339Nano))
	if m.sr == "yes" {
		b.WriteString(" success-report=yes")
	}
	if m.fr != "" {
		b.WriteString(" failure-report=" + m.fr)
	}
	if !m.order {
		b.WriteString(" out-of-order")
	}
	if m.paced > 0 {
		b.WriteString(" rate-paced=" + m.paced.Round(time.Millisecond).String())
	}
	if reason != "" {
		b.WriteString(" result=" + strconv.Quote(reason))
	}
	e.Reason = b.String()
	var fe *ledger.Entry
	if m.file {
		fe = s.fileEntry(m, e)
	}
	s.mu.Unlock()
	s.r.append(e)
	if fe != nil {
		s.r.append(fe)
	}
}

// fileEntry compares the hub's SHA-1 of the file with the offer's
// file-selector hash (RFC 5547 section 5). Called with s.mu held.
func (s *session) fileEntry(m *message, me *ledger.Entry) *ledger.Entry {
	fs := ParseFileSelector(s.media.FileSelector)
	fe := *me
	fe.Method = MethodFile
	fe.Body, fe.BodyKept = nil, false
	var hubSHA1 string
	verdict := "unverifiable" // out of order, aborted or failed
	if m.order && m.final && !m.aborted && m.failCode == 0 {
		hubSHA1 = hex.EncodeToString(m.sha1.Sum(nil))
		switch {
		case fs.SHA1 == "":
			verdict = "no-hash"
		case strings.EqualFold(fs.SHA1, hubSHA1):
			verdict = "verified"
		default:
			verdict = "mismatch"
		}
	}
	if fs.Size >= 0 && m.final && m.bytes != fs.Size && verdict == "verified" {
		verdict = "mismatch" // cannot happen with a matching SHA-1, but say so if it did
	}
	s.r.prom.files.WithLabelValues(verdict).Inc()
	var b strings.Builder
	b.WriteString("file-transfer-id=" + s.media.FileTransferID)
	b.WriteString(" name=" + strconv.Quote(fs.Name) + " type=" + fs.Type + " size=" + itoa(fs.Size))
	b.WriteString(" offered-sha1=" + fs.SHA1 + " hub-sha1=" + hubSHA1 + " sha1=" + verdict)
	b.WriteString(" received=" + itoa(m.bytes) + " " + me.Reason)
	fe.Reason = b.String()
	if verdict == "mismatch" && fe.Status == 200 {
		// Delivered, but not the file that was offered.
		fe.Status = 0
	}
	return &fe
}

func (l *leg) remoteAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.remote
}

func (r *Relay) append(e *ledger.Entry) {
	if r.cfg.Audit == nil {
		return
	}
	if _, err := r.cfg.Audit.Append(r.ctx, e); err != nil {
		r.log.Error("MSRP audit append failed", "err", err, "call_id", e.CallID)
	}
}

// FileSelector is the parsed a=file-selector (RFC 5547 section 5).
type FileSelector struct {
	Name, Type string
	Size       int64  // -1 when absent
	SHA1       string // lower-case hex without colons, "" when absent
}

// ParseFileSelector parses `name:"x y.jpg" type:image/jpeg size:123
// hash:sha-1:AB:CD:...`.
func ParseFileSelector(v string) FileSelector {
	fs := FileSelector{Size: -1}
	for v = strings.TrimSpace(v); v != ""; v = strings.TrimSpace(v) {
		key, rest, ok := strings.Cut(v, ":")
		if !ok {
			break
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				val, v = rest[1:], ""
			} else {
				val, v = rest[1:end+1], rest[end+2:]
			}
		} else {
			val, v, _ = strings.Cut(rest, " ")
		}
		switch strings.ToLower(key) {
		case "name":
			fs.Name = val
		case "type":
			fs.Type = val
		case "size":
			if n, err := strconv.ParseInt(val, 10, 64); err == nil && n >= 0 {
				fs.Size = n
			}
		case "hash":
			alg, h, _ := strings.Cut(val, ":")
			if strings.EqualFold(alg, "sha-1") {
				fs.SHA1 = strings.ToLower(strings.ReplaceAll(h, ":", ""))
			}
		}
	}
	return fs
}

func isCPIM(ct string) bool {
	t, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(t), "message/cpim")
}

// cpimAddresses reads From and To from the CPIM message headers (RFC 3862
// section 3: header lines up to the first blank line) at the start of the
// first chunk; only the first 4 KiB are looked at.
func cpimAddresses(body []byte) (from, to string) {
	if len(body) > 4096 {
		body = body[:4096]
	}
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(body[:i]), "\r")
		body = body[i+1:]
		if line == "" {
			break
		}
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		if lt := strings.IndexByte(val, '<'); lt >= 0 {
			if gt := strings.IndexByte(val[lt:], '>'); gt > 0 {
				val = val[lt+1 : lt+gt]
			}
		}
		switch name {
		case "From":
			from = val
		case "To":
			if to == "" {
				to = val
			}
		}
	}
	return from, to
}
