package hub

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// waitParked waits until p has n parked workers.
func waitParked(t *testing.T, p *workerPool, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.parked() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers parked, want %d", p.parked(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWorkerPoolReusesParkedWorkers(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	p := newWorkerPool(done, 8)
	ran := make(chan struct{})
	p.run(func() { ran <- struct{}{} })
	<-ran
	waitParked(t, p, 1)
	before := runtime.NumGoroutine()
	for range 100 {
		p.run(func() { ran <- struct{}{} })
		<-ran
		waitParked(t, p, 1)
	}
	if got := runtime.NumGoroutine(); got > before {
		t.Errorf("%d goroutines after 100 sequential jobs, %d before: workers not reused", got, before)
	}
}

func TestWorkerPoolBounds(t *testing.T) {
	for _, tc := range []struct {
		name            string
		jobs, maxIdle   int
		trims           int
		wantAfterJobs   int
		wantAfterTrims  int
		closeAfterTrims bool
	}{
		{"idle bounded by maxIdle", 20, 5, 0, 5, 5, false},
		{"one trim keeps what was not idle through an interval", 8, 8, 1, 8, 8, false},
		{"trims halve the unused ones", 8, 8, 2, 8, 4, false},
		{"repeated trims end at zero", 8, 8, 6, 8, 0, false},
		{"done stops every parked worker", 8, 8, 0, 8, 8, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			p := newWorkerPool(done, tc.maxIdle)
			before := runtime.NumGoroutine()
			var wg sync.WaitGroup
			release := make(chan struct{})
			for range tc.jobs {
				wg.Add(1)
				p.run(func() { defer wg.Done(); <-release })
			}
			close(release)
			wg.Wait()
			waitParked(t, p, tc.wantAfterJobs)
			for range tc.trims {
				p.trim()
			}
			waitParked(t, p, tc.wantAfterTrims)
			if tc.closeAfterTrims {
				close(done)
				deadline := time.Now().Add(5 * time.Second)
				for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if got := runtime.NumGoroutine(); got > before {
					t.Errorf("%d goroutines after done, %d before", got, before)
				}
				return
			}
			close(done)
		})
	}
}

// run and trim race (trim runs on the expiry goroutine): every job still
// runs exactly once (wg) and the race detector sees the shared state locked.
func TestWorkerPoolConcurrentRunAndTrim(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	p := newWorkerPool(done, 16)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				p.trim()
				runtime.Gosched()
			}
		}
	}()
	for i := range 2000 {
		wg.Add(1)
		p.run(func() { defer wg.Done() })
		if i%50 == 0 {
			runtime.Gosched()
		}
	}
	wg.Wait()
	close(stop)
}
