package hub

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// Concurrent writes on a member connection arrive whole and in the order
// each writer issued them, however they were combined.
func TestMemberConnWriteCombining(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := &memberConn{Conn: a}
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := c.Write([]byte(fmt.Sprintf("w%d-%04d\n", w, i))); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}()
	}
	got := make(chan map[int]int, 1)
	go func() {
		last := map[int]int{}
		r := bufio.NewReader(b)
		for n := 0; n < writers*each; n++ {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Errorf("read: %v", err)
				break
			}
			var w, i int
			if _, err := fmt.Sscanf(line, "w%d-%04d\n", &w, &i); err != nil {
				t.Errorf("torn line %q", line)
				continue
			}
			if p, ok := last[w]; ok && i != p+1 {
				t.Errorf("writer %d: %d after %d", w, i, p)
			}
			last[w] = i
		}
		got <- last
	}()
	wg.Wait()
	select {
	case last := <-got:
		for w := range writers {
			if last[w] != each-1 {
				t.Errorf("writer %d: last %d, want %d", w, last[w], each-1)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader did not get everything")
	}
	a.Close()
}

// A peer that stops reading: the backlog is bounded, and once the write
// fails every later one fails with the same error.
func TestMemberConnWriteBacklog(t *testing.T) {
	a, b := net.Pipe()
	c := &memberConn{Conn: a}
	done := make(chan error, 1)
	go func() { _, err := c.Write(make([]byte, 1024)); done <- err }() // blocks: nobody reads
	time.Sleep(50 * time.Millisecond)
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	var err error
	for range 100 {
		if _, err = c.Write(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, errWriteBacklog) {
		t.Fatalf("after 6.4 MB unread: %v, want errWriteBacklog", err)
	}
	b.Close() // the blocked write fails now
	if werr := <-done; werr == nil {
		t.Fatal("the blocked write did not fail")
	}
	if _, err := c.Write([]byte("more")); err == nil || errors.Is(err, errWriteBacklog) {
		t.Errorf("write after a failed one: %v, want the sticky write error", err)
	}
}
