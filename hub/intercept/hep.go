package intercept

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// HEP v3 (the HEP3 network protocol specification, as Homer, heplify and
// Kamailio's siptrace speak it): "HEP3", a 16-bit total length, then
// chunks of vendor id (0 = generic), type id and 16-bit length (the six
// header bytes included), all big-endian.

// Generic chunk types.
const (
	chunkFamily     = 0x0001 // uint8: 2 IPv4, 10 IPv6
	chunkProto      = 0x0002 // uint8: IP protocol (17 UDP, 6 TCP)
	chunkSrcIPv4    = 0x0003
	chunkDstIPv4    = 0x0004
	chunkSrcIPv6    = 0x0005
	chunkDstIPv6    = 0x0006
	chunkSrcPort    = 0x0007 // uint16
	chunkDstPort    = 0x0008 // uint16
	chunkTimeSec    = 0x0009 // uint32
	chunkTimeUsec   = 0x000a // uint32
	chunkProtoType  = 0x000b // uint8: 1 SIP
	chunkAgentID    = 0x000c // uint32
	chunkAuthKey    = 0x000e // string
	chunkPayload    = 0x000f
	chunkCorrelator = 0x0011 // string: the Call-ID for SIP
	chunkGroupID    = 0x0013 // string: Homer's node name; the warrant id for interception
)

// Values of Packet fields.
const (
	FamilyIPv4   = 2
	FamilyIPv6   = 10
	ProtoUDP     = 17
	ProtoTCP     = 6
	ProtoTypeSIP = 1
)

const (
	hepHeader   = 6 // "HEP3" + total length
	chunkHeader = 6
	// MaxFrame is the largest HEP frame: its length field is 16 bits.
	MaxFrame = 0xffff
)

// Packet is one captured message.
type Packet struct {
	Family  uint8 // FamilyIPv4 or FamilyIPv6; 0: taken from SrcIP
	Proto   uint8 // ProtoUDP or ProtoTCP
	SrcIP   netip.Addr
	DstIP   netip.Addr
	SrcPort uint16
	DstPort uint16
	Time    time.Time
	// ProtoType is the payload's protocol (ProtoTypeSIP).
	ProtoType uint8
	AgentID   uint32
	AuthKey   string // optional
	// CorrelationID ties the frames of one call together (the Call-ID).
	CorrelationID string
	GroupID       string // optional
	Payload       []byte
}

// ErrFrame is wrapped by every error of Decode.
var ErrFrame = errors.New("hep: malformed frame")

// Append appends p's HEP v3 frame to b. Both addresses must be of one
// family; the frame must fit MaxFrame.
func (p *Packet) Append(b []byte) ([]byte, error) {
	src, dst := p.SrcIP.Unmap(), p.DstIP.Unmap()
	fam := p.Family
	if fam == 0 {
		fam = FamilyIPv4
		if src.Is6() {
			fam = FamilyIPv6
		}
	}
	if !src.IsValid() {
		src = zeroAddr(fam)
	}
	if !dst.IsValid() {
		dst = zeroAddr(fam)
	}
	if src.Is4() != dst.Is4() || (fam == FamilyIPv4) != src.Is4() {
		return b, fmt.Errorf("hep: addresses %s and %s are not both of family %d", src, dst, fam)
	}
	start := len(b)
	b = append(b, 'H', 'E', 'P', '3', 0, 0)
	b = chunk8(b, chunkFamily, fam)
	b = chunk8(b, chunkProto, p.Proto)
	if fam == FamilyIPv4 {
		s, d := src.As4(), dst.As4()
		b = chunkBytes(b, chunkSrcIPv4, s[:])
		b = chunkBytes(b, chunkDstIPv4, d[:])
	} else {
		s, d := src.As16(), dst.As16()
		b = chunkBytes(b, chunkSrcIPv6, s[:])
		b = chunkBytes(b, chunkDstIPv6, d[:])
	}
	b = chunk16(b, chunkSrcPort, p.SrcPort)
	b = chunk16(b, chunkDstPort, p.DstPort)
	b = chunk32(b, chunkTimeSec, uint32(p.Time.Unix()))
	b = chunk32(b, chunkTimeUsec, uint32(p.Time.Nanosecond()/1000))
	b = chunk8(b, chunkProtoType, p.ProtoType)
	b = chunk32(b, chunkAgentID, p.AgentID)
	if p.AuthKey != "" {
		b = chunkBytes(b, chunkAuthKey, []byte(p.AuthKey))
	}
	if p.CorrelationID != "" {
		b = chunkBytes(b, chunkCorrelator, []byte(p.CorrelationID))
	}
	if p.GroupID != "" {
		b = chunkBytes(b, chunkGroupID, []byte(p.GroupID))
	}
	b = chunkBytes(b, chunkPayload, p.Payload)
	n := len(b) - start
	if n > MaxFrame {
		return b[:start], fmt.Errorf("hep: frame of %d bytes exceeds %d", n, MaxFrame)
	}
	binary.BigEndian.PutUint16(b[start+4:], uint16(n))
	return b, nil
}

func zeroAddr(fam uint8) netip.Addr {
	if fam == FamilyIPv6 {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

func chunkHead(b []byte, typ uint16, n int) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, 0), typ), uint16(chunkHeader+n))
}

func chunk8(b []byte, typ uint16, v uint8) []byte { return append(chunkHead(b, typ, 1), v) }
func chunk16(b []byte, typ uint16, v uint16) []byte {
	return binary.BigEndian.AppendUint16(chunkHead(b, typ, 2), v)
}
func chunk32(b []byte, typ uint16, v uint32) []byte {
	return binary.BigEndian.AppendUint32(chunkHead(b, typ, 4), v)
}
func chunkBytes(b []byte, typ uint16, v []byte) []byte {
	return append(chunkHead(b, typ, len(v)), v...)
}

// fixedLen is the value size of the fixed-size generic chunks.
var fixedLen = map[uint16]int{chunkFamily: 1, chunkProto: 1, chunkProtoType: 1, chunkSrcPort: 2, chunkDstPort: 2,
	chunkTimeSec: 4, chunkTimeUsec: 4, chunkAgentID: 4, chunkSrcIPv4: 4, chunkDstIPv4: 4, chunkSrcIPv6: 16, chunkDstIPv6: 16}

// FrameLen reports the length of the HEP v3 frame at the start of b, from
// its header, or 0 and an error when b does not start with one; b may
// hold less than the whole frame (a stream reader's buffer).
func FrameLen(b []byte) (int, error) {
	if len(b) < hepHeader {
		return 0, fmt.Errorf("%w: %d bytes, shorter than the header", ErrFrame, len(b))
	}
	if string(b[:4]) != "HEP3" {
		return 0, fmt.Errorf("%w: no HEP3 magic", ErrFrame)
	}
	n := int(binary.BigEndian.Uint16(b[4:]))
	if n < hepHeader {
		return 0, fmt.Errorf("%w: total length %d", ErrFrame, n)
	}
	return n, nil
}

// Decode parses one HEP v3 frame at the start of b and returns it and its
// length. Unknown and vendor chunks are skipped. Payload and strings are
// copies. For collectors in tests and tools: the hub itself only encodes.
func Decode(b []byte) (*Packet, int, error) {
	n, err := FrameLen(b)
	if err != nil {
		return nil, 0, err
	}
	if n > len(b) {
		return nil, 0, fmt.Errorf("%w: total length %d, %d bytes present", ErrFrame, n, len(b))
	}
	p := &Packet{}
	var sec, usec uint32
	for off := hepHeader; off < n; {
		if n-off < chunkHeader {
			return nil, 0, fmt.Errorf("%w: truncated chunk header at %d", ErrFrame, off)
		}
		vendor := binary.BigEndian.Uint16(b[off:])
		typ := binary.BigEndian.Uint16(b[off+2:])
		cl := int(binary.BigEndian.Uint16(b[off+4:]))
		if cl < chunkHeader || off+cl > n {
			return nil, 0, fmt.Errorf("%w: chunk 0x%04x length %d at %d", ErrFrame, typ, cl, off)
		}
		v := b[off+chunkHeader : off+cl]
		off += cl
		if vendor != 0 {
			continue
		}
		if w, fixed := fixedLen[typ]; fixed && len(v) != w {
			return nil, 0, fmt.Errorf("%w: chunk 0x%04x of %d bytes, want %d", ErrFrame, typ, len(v), w)
		}
		switch typ {
		case chunkFamily:
			p.Family = v[0]
		case chunkProto:
			p.Proto = v[0]
		case chunkSrcIPv4, chunkSrcIPv6:
			p.SrcIP, _ = netip.AddrFromSlice(v)
		case chunkDstIPv4, chunkDstIPv6:
			p.DstIP, _ = netip.AddrFromSlice(v)
		case chunkSrcPort:
			p.SrcPort = binary.BigEndian.Uint16(v)
		case chunkDstPort:
			p.DstPort = binary.BigEndian.Uint16(v)
		case chunkTimeSec:
			sec = binary.BigEndian.Uint32(v)
		case chunkTimeUsec:
			usec = binary.BigEndian.Uint32(v)
		case chunkProtoType:
			p.ProtoType = v[0]
		case chunkAgentID:
			p.AgentID = binary.BigEndian.Uint32(v)
		case chunkAuthKey:
			p.AuthKey = string(v)
		case chunkCorrelator:
			p.CorrelationID = string(v)
		case chunkGroupID:
			p.GroupID = string(v)
		case chunkPayload:
			p.Payload = append([]byte(nil), v...)
		}
	}
	if usec >= 1e6 {
		return nil, 0, fmt.Errorf("%w: microseconds %d", ErrFrame, usec)
	}
	p.Time = time.Unix(int64(sec), int64(usec)*1000).UTC()
	return p, n, nil
}
