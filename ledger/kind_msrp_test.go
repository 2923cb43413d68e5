package ledger

import (
	"encoding/json"
	"testing"
)

// MSRP entries have their own kind: valid, and decoded back to the
// constant by the export reader (an unknown kind would decode to "").
func TestKindMSRPRoundTrip(t *testing.T) {
	if !KindMSRP.Valid() {
		t.Fatal("KindMSRP not valid")
	}
	line, err := json.Marshal(&Entry{Seq: 1, Kind: KindMSRP, Method: "MSRP-FILE", Node: "n1", PrevHash: make([]byte, 32), Hash: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	// Export lines carry "type":"entry" in front (jsonl.go).
	line = append([]byte(`{"type":"entry",`), line[1:]...)
	var e Entry
	if err := DecodeEntryJSON(line, &e); err != nil {
		t.Fatal(err)
	}
	if e.Kind != KindMSRP {
		t.Fatalf("decoded kind %q", e.Kind)
	}
}
