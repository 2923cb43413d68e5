package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"clearhub/tests/load"

	"golang.org/x/net/ipv4"
)

// uas answers requests: the member edge of the bench.
type uas struct {
	answered atomic.Int64
	dropped  atomic.Int64 // not answerable (ACK, responses, malformed)
	log      *slog.Logger
	wg       sync.WaitGroup
	closers  []func()
}

const uasTag = "ldUAS1"

func runUAS(args []string) error {
	fs := flag.NewFlagSet("uas", flag.ExitOnError)
	udpAddr := fs.String("udp", "", "UDP listen `address` (empty: none)")
	tcpAddr := fs.String("tcp", "", "TCP listen `address` (empty: none)")
	tlsAddr := fs.String("tls", "", "TLS listen `address` (empty: none)")
	cert := fs.String("cert", "", "TLS certificate `file` (PEM; empty: a self-signed one)")
	key := fs.String("key", "", "TLS key `file` (PEM)")
	readers := fs.Int("readers", 2, "UDP reader goroutines")
	lifetime := fs.Duration("lifetime", 2*time.Hour, "exit after this long at the latest")
	_ = fs.Parse(args)
	u := &uas{log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if err := u.start(*udpAddr, *tcpAddr, *tlsAddr, *cert, *key, *readers); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "sipload uas: listening udp=%q tcp=%q tls=%q\n", *udpAddr, *tcpAddr, *tlsAddr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case <-time.After(*lifetime):
	}
	u.stop()
	fmt.Fprintf(os.Stderr, "sipload uas: answered %d, not answered %d\n", u.answered.Load(), u.dropped.Load())
	return nil
}

func (u *uas) start(udpAddr, tcpAddr, tlsAddr, certFile, keyFile string, readers int) error {
	if udpAddr != "" {
		if err := u.listenUDP(udpAddr, readers); err != nil {
			return err
		}
	}
	if tcpAddr != "" {
		ln, err := net.Listen("tcp", tcpAddr)
		if err != nil {
			return fmt.Errorf("uas tcp listen: %w", err)
		}
		u.serveStream(ln)
	}
	if tlsAddr != "" {
		cert, err := loadOrMakeCert(certFile, keyFile)
		if err != nil {
			return err
		}
		// The hub presents its node certificate; the bench edge takes any
		// (it measures, it does not police).
		cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
		ln, err := tls.Listen("tcp", tlsAddr, cfg)
		if err != nil {
			return fmt.Errorf("uas tls listen: %w", err)
		}
		u.serveStream(ln)
	}
	return nil
}

func (u *uas) stop() {
	for _, c := range u.closers {
		c()
	}
	u.wg.Wait()
}

func (u *uas) listenUDP(addr string, readers int) error {
	la, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("uas udp address: %w", err)
	}
	c, err := net.ListenUDP("udp", la)
	if err != nil {
		return fmt.Errorf("uas udp listen: %w", err)
	}
	_ = c.SetReadBuffer(8 << 20)
	_ = c.SetWriteBuffer(8 << 20)
	u.closers = append(u.closers, func() { _ = c.Close() })
	pc := ipv4.NewPacketConn(c)
	if readers < 1 {
		readers = 1
	}
	for i := 0; i < readers; i++ {
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			u.udpLoop(pc)
		}()
	}
	return nil
}

// udpLoop reads a batch, answers it in one batch, to each datagram's
// source (RFC 3581: the proxies put rport in their Via and listen where
// they send from).
func (u *uas) udpLoop(pc *ipv4.PacketConn) {
	const batch = 64
	in := make([]ipv4.Message, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 65536)}
	}
	out := make([]ipv4.Message, batch)
	outBufs := make([][]byte, batch)
	for i := range outBufs {
		outBufs[i] = make([]byte, 0, 2048)
		out[i].Buffers = [][]byte{nil}
	}
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.log.Warn("uas udp read", "err", err)
			time.Sleep(time.Millisecond)
			continue
		}
		k := 0
		for i := 0; i < n; i++ {
			resp, ok := load.BuildResponse(outBufs[k][:0], in[i].Buffers[0][:in[i].N], uasTag)
			if !ok {
				u.dropped.Add(1)
				continue
			}
			outBufs[k] = resp
			out[k].Buffers[0] = resp
			out[k].Addr = in[i].Addr
			k++
		}
		for sent := 0; sent < k; {
			m, err := pc.WriteBatch(out[sent:k], 0)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				u.log.Warn("uas udp write", "err", err)
				break
			}
			sent += m
		}
		u.answered.Add(int64(k))
	}
}

func (u *uas) serveStream(ln net.Listener) {
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	u.closers = append(u.closers, func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				u.log.Warn("uas accept", "err", err)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				u.streamConn(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
}

// streamConn answers pipelined requests: it frames every whole message in
// what one read returned and writes all their answers in one write.
func (u *uas) streamConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 256<<10)
	out := make([]byte, 0, 256<<10)
	r := 0
	for {
		n, err := c.Read(buf[r:])
		if n == 0 && err != nil {
			return
		}
		r += n
		p := 0
		for p < r {
			skip, size, ping, ferr := load.FrameLen(buf[p:r])
			if ferr != nil {
				u.log.Warn("uas stream framing", "remote", c.RemoteAddr().String(), "err", ferr)
				return
			}
			if skip > 0 {
				if ping {
					out = append(out, "\r\n"...) // RFC 5626 3.5.1 pong
				}
				p += skip
				continue
			}
			if size == 0 {
				break
			}
			var ok bool
			out, ok = load.BuildResponse(out, buf[p:p+size], uasTag)
			if ok {
				u.answered.Add(1)
			} else {
				u.dropped.Add(1)
			}
			p += size
		}
		copy(buf, buf[p:r])
		r -= p
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
		if r == len(buf) {
			return // FrameLen bounds a message well below the buffer
		}
	}
}

// loadOrMakeCert reads a PEM pair, or makes a self-signed P-256 one for
// the ceiling run and for Kamailio's edge (neither verifies it).
func loadOrMakeCert(certFile, keyFile string) (tls.Certificate, error) {
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return c, fmt.Errorf("load tls pair %s: %w", certFile, err)
		}
		return c, nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sipload"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls self-signed certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}, nil
}
