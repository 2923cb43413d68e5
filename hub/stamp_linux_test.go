package hub

import (
	"encoding/binary"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

func TestStampOf(t *testing.T) {
	cmsg := func(level, typ int32, data []byte) []byte {
		b := make([]byte, syscall.SizeofCmsghdr, syscall.SizeofCmsghdr+len(data)+8)
		binary.NativeEndian.PutUint64(b[0:8], uint64(syscall.SizeofCmsghdr+len(data)))
		binary.NativeEndian.PutUint32(b[8:12], uint32(level))
		binary.NativeEndian.PutUint32(b[12:16], uint32(typ))
		b = append(b, data...)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		return b
	}
	ts := make([]byte, 16)
	binary.NativeEndian.PutUint64(ts[0:8], 1_700_000_000)
	binary.NativeEndian.PutUint64(ts[8:16], 250_000_000)
	want := time.Unix(1_700_000_000, 250_000_000)
	other := cmsg(syscall.IPPROTO_IP, 8, []byte{1, 2, 3, 4})
	cases := []struct {
		name string
		oob  []byte
		want time.Time
	}{
		{"timestamp", cmsg(syscall.SOL_SOCKET, syscall.SCM_TIMESTAMPNS, ts), want},
		{"after another message", append(other, cmsg(syscall.SOL_SOCKET, syscall.SCM_TIMESTAMPNS, ts)...), want},
		{"none", other, time.Time{}},
		{"empty", nil, time.Time{}},
		{"truncated", cmsg(syscall.SOL_SOCKET, syscall.SCM_TIMESTAMPNS, ts)[:20], time.Time{}},
		{"length lies", func() []byte {
			b := cmsg(syscall.SOL_SOCKET, syscall.SCM_TIMESTAMPNS, ts)
			binary.NativeEndian.PutUint64(b[0:8], 1<<40)
			return b
		}(), time.Time{}},
	}
	for _, tc := range cases {
		if got := stampOf(tc.oob); !got.Equal(tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The socket really delivers receive times: a datagram sent now is
// stamped within a second of now.
func TestKernelStamps(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !kernelStamps(c) {
		t.Skip("SO_TIMESTAMPNS refused here")
	}
	s, err := net.DialUDP("udp", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sent := time.Now()
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	ms := []ipv4.Message{{Buffers: [][]byte{make([]byte, 16)}, OOB: make([]byte, oobSize)}}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := newBatchReader(c).ReadBatch(ms, 0); err != nil {
		t.Fatal(err)
	}
	at := stampOf(ms[0].OOB[:ms[0].NN])
	if at.IsZero() || at.Sub(sent).Abs() > time.Second {
		t.Fatalf("stamp %v for a datagram sent at %v", at, sent)
	}
}
