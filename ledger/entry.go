package ledger

// Kind says what an entry records.
type Kind string

const (
	KindRequest  Kind = "request"  // a SIP request the hub accepted or refused
	KindResponse Kind = "response" // a final SIP response the hub relayed or generated
	KindChat     Kind = "chat"     // a chat-room message
	KindAdmin    Kind = "admin"    // an operator change (who did what)
	KindAnchor   Kind = "anchor"   // retention cut: the signed anchor left behind
	KindMSRP     Kind = "msrp"     // an MSRP message or file transfer anchored at the hub (hub/msrp)
)

// Valid reports whether k is one of the kinds above.
func (k Kind) Valid() bool {
	switch k {
	case KindRequest, KindResponse, KindChat, KindAdmin, KindAnchor, KindMSRP:
		return true
	}
	return false
}

// Entry is one audit record. Callers fill the descriptive fields; the ledger
// assigns Seq, Node, PrevHash and Hash (and Time when zero) in Append.
//
// Every field except Hash is covered by Hash; see doc.go for the canonical
// encoding.
type Entry struct {
	Seq    uint64 `json:"seq"`
	Time   int64  `json:"time"` // UTC, ns since the Unix epoch
	Node   string `json:"node"`
	Kind   Kind   `json:"kind"`
	Method string `json:"method,omitempty"`
	CallID string `json:"call_id,omitempty"`
	CSeq   string `json:"cseq,omitempty"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	RURI   string `json:"ruri,omitempty"`
	// Src is the transport source address ("ip:port") the message came from;
	// Transport is "udp", "tcp", "tls", "ws", "wss" or "" for non-SIP kinds.
	Src       string `json:"src,omitempty"`
	Transport string `json:"transport,omitempty"`
	SrcNet    string `json:"src_net,omitempty"`
	DstNet    string `json:"dst_net,omitempty"`
	Status    int    `json:"status,omitempty"`
	Reason    string `json:"reason,omitempty"`
	BodyType  string `json:"body_type,omitempty"`
	// BodySHA256 is the SHA-256 of the body; BodyKept says whether Body holds it.
	BodySHA256 []byte `json:"body_sha256,omitempty"`
	BodyKept   bool   `json:"body_kept,omitempty"`
	Body       []byte `json:"body,omitempty"`
	PrevHash   []byte `json:"prev_hash"`
	Hash       []byte `json:"hash"`
}
