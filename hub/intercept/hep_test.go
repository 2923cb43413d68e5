package intercept

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestHEPRoundTrip(t *testing.T) {
	when := time.Unix(1_700_000_000, 123_456_000).UTC()
	for _, tc := range []struct {
		name string
		p    Packet
	}{
		{"ipv4 udp", Packet{Proto: ProtoUDP, SrcIP: netip.MustParseAddr("192.0.2.1"), DstIP: netip.MustParseAddr("192.0.2.2"),
			SrcPort: 5060, DstPort: 5061, Time: when, ProtoType: ProtoTypeSIP, AgentID: 7, CorrelationID: "abc@x", Payload: []byte("MESSAGE sip:b SIP/2.0\r\n\r\n")}},
		{"ipv6 tcp with group and key", Packet{Proto: ProtoTCP, SrcIP: netip.MustParseAddr("2001:db8::1"), DstIP: netip.MustParseAddr("2001:db8::2"),
			SrcPort: 1, DstPort: 2, Time: when, ProtoType: ProtoTypeSIP, AgentID: 1 << 31, AuthKey: "k", GroupID: "warrant:w1", Payload: []byte("x")}},
		{"no addresses", Packet{Proto: ProtoUDP, Time: when, ProtoType: ProtoTypeSIP, Payload: nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.p.Append([]byte("prefix"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("prefixHEP3")) {
				t.Fatalf("frame not appended: %q", b[:10])
			}
			got, n, err := Decode(b[len("prefix"):])
			if err != nil {
				t.Fatal(err)
			}
			if n != len(b)-len("prefix") {
				t.Errorf("length %d, frame is %d", n, len(b)-len("prefix"))
			}
			want := tc.p
			if !want.SrcIP.IsValid() {
				want.SrcIP, want.DstIP = netip.IPv4Unspecified(), netip.IPv4Unspecified()
			}
			if want.Family == 0 {
				want.Family = FamilyIPv4
				if want.SrcIP.Is6() {
					want.Family = FamilyIPv6
				}
			}
			if got.Family != want.Family || got.Proto != want.Proto || got.SrcIP != want.SrcIP || got.DstIP != want.DstIP ||
				got.SrcPort != want.SrcPort || got.DstPort != want.DstPort || !got.Time.Equal(want.Time) || got.ProtoType != want.ProtoType ||
				got.AgentID != want.AgentID || got.AuthKey != want.AuthKey || got.CorrelationID != want.CorrelationID ||
				got.GroupID != want.GroupID || !bytes.Equal(got.Payload, want.Payload) {
				t.Errorf("decoded %+v\nwant    %+v", got, want)
			}
		})
	}
}

func TestHEPEncodeErrors(t *testing.T) {
	mixed := Packet{SrcIP: netip.MustParseAddr("192.0.2.1"), DstIP: netip.MustParseAddr("2001:db8::1")}
	if _, err := mixed.Append(nil); err == nil {
		t.Error("mixed families encoded")
	}
	big := Packet{Payload: make([]byte, MaxFrame)}
	if b, err := big.Append([]byte("x")); err == nil || string(b) != "x" {
		t.Errorf("oversized frame: err %v, buffer %d bytes", err, len(b))
	}
}

func TestHEPDecodeRefuses(t *testing.T) {
	good, _ := (&Packet{Proto: ProtoUDP, Time: time.Unix(1, 0), Payload: []byte("p")}).Append(nil)
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"short", []byte("HEP")},
		{"magic", append([]byte("HEP2"), good[4:]...)},
		{"length below header", []byte{'H', 'E', 'P', '3', 0, 3}},
		{"truncated", good[:len(good)-1]},
		{"chunk overruns", func() []byte { b := bytes.Clone(good); b[hepHeader+5] = 0xff; return b }()},
		{"fixed chunk of wrong size", func() []byte {
			b := []byte{'H', 'E', 'P', '3', 0, 0}
			b = chunkBytes(b, chunkSrcPort, []byte{1, 2, 3})
			b[5] = byte(len(b))
			return b
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := Decode(tc.b); !errors.Is(err, ErrFrame) {
				t.Fatalf("Decode = %v, want ErrFrame", err)
			}
		})
	}
}

// FuzzDecode: nothing a collector's peer sends crashes the decoder, and
// what it accepts re-encodes to a frame that decodes the same.
func FuzzDecode(f *testing.F) {
	seed, _ := (&Packet{Proto: ProtoUDP, SrcIP: netip.MustParseAddr("192.0.2.1"), DstIP: netip.MustParseAddr("192.0.2.2"),
		Time: time.Unix(5, 6000), ProtoType: ProtoTypeSIP, CorrelationID: "c", GroupID: "g", Payload: []byte("SIP/2.0 200 OK\r\n\r\n")}).Append(nil)
	f.Add(seed)
	f.Add([]byte("HEP3\x00\x06"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, n, err := Decode(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("length %d beyond %d bytes", n, len(b))
		}
		if p.SrcIP.IsValid() != p.DstIP.IsValid() || p.SrcIP.Is4() != p.DstIP.Is4() || (p.Family != FamilyIPv4 && p.Family != FamilyIPv6) {
			return // not re-encodable as is (the encoder insists on one family)
		}
		if (p.Family == FamilyIPv4) != (!p.SrcIP.IsValid() || p.SrcIP.Is4()) {
			return
		}
		re, err := p.Append(nil)
		if err != nil {
			return
		}
		q, _, err := Decode(re)
		if err != nil {
			t.Fatalf("re-encoded frame refused: %v", err)
		}
		if q.CorrelationID != p.CorrelationID || !bytes.Equal(q.Payload, p.Payload) || q.SrcPort != p.SrcPort || q.AgentID != p.AgentID {
			t.Fatalf("round trip changed the packet: %+v -> %+v", p, q)
		}
	})
}
