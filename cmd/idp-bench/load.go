package main

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// limits bound a load level: it runs until both minimums are reached, and
// never past either maximum.
type limits struct {
	MinN   int
	MinDur time.Duration
	MaxN   int
	MaxDur time.Duration
}

// maxErrors stops a level early: a broken provider should not be hammered
// for the rest of its time.
const maxErrors = 10

// levelResult is what one load level measured.
type levelResult struct {
	Concurrency int
	N           int
	Elapsed     time.Duration
	ServerCPU   time.Duration // provider process utime+stime during the level
	Server      procStat      // the same, split, with minor page faults
	ClientCPU   time.Duration // this process (the simulated browsers and RP)
	OtherCPU    time.Duration // every other process on the machine
	IdleCPU     time.Duration // no process at all (idle and I/O wait)
	Hashes      int64         // idp_password_hashes_total delta
	Latencies   []time.Duration
	Steps       [numSteps]time.Duration // summed per-step wall time (logins)
	Truncated   string                  // why the level stopped before its minimums
	Failed      int                     // operations that failed
	Errors      []string                // the first few failures
}

func (l levelResult) perSecond() float64 { return rate{l.N, l.Elapsed}.perSecond() }

// otherCores is the average number of cores other processes used.
func (l levelResult) otherCores() float64 {
	if l.Elapsed <= 0 {
		return 0
	}
	return l.OtherCPU.Seconds() / l.Elapsed.Seconds()
}

// idleCores is the average number of cores nothing ran on: with work
// queued, a sign of waiting (locks, I/O) rather than computing.
func (l levelResult) idleCores() float64 {
	if l.Elapsed <= 0 {
		return 0
	}
	return l.IdleCPU.Seconds() / l.Elapsed.Seconds()
}

// perOp is the server CPU per completed operation.
func (l levelResult) perOp() time.Duration {
	if l.N == 0 {
		return 0
	}
	return l.ServerCPU / time.Duration(l.N)
}

func (l levelResult) clientPerOp() time.Duration {
	if l.N == 0 {
		return 0
	}
	return l.ClientCPU / time.Duration(l.N)
}

func (l levelResult) percentile(p float64) time.Duration {
	if len(l.Latencies) == 0 {
		return 0
	}
	s := slices.Clone(l.Latencies)
	slices.Sort(s)
	i := int(p*float64(len(s)) + 0.5)
	return s[min(max(i-1, 0), len(s)-1)]
}

// errStop ends a worker without counting an error (no user left).
var errStop = errors.New("stop")

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runLevel runs op on conc workers within lim (or until ctx ends) and
// measures the server process around it. op gets the worker number and a per-worker step
// timer; it returns errStop (wrapped) to end its worker quietly.
func runLevel(ctx context.Context, srv *server, metrics *http.Client, conc int, lim limits, op func(w int, steps *[numSteps]time.Duration) error) (levelResult, error) {
	res := levelResult{Concurrency: conc}
	cpu0, err := readProcStat(srv.pid)
	if err != nil {
		return res, err
	}
	h0, err := srv.hashes(metrics)
	if err != nil {
		return res, err
	}
	self0 := selfCPU()
	busy0, busyErr := machineBusy()

	var (
		started, done, failed atomic.Int64
		mu                    sync.Mutex
		wg                    sync.WaitGroup
		stopReason            string
	)
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var steps [numSteps]time.Duration
			var lat []time.Duration
			defer func() {
				mu.Lock()
				for i := range steps {
					res.Steps[i] += steps[i]
				}
				res.Latencies = append(res.Latencies, lat...)
				mu.Unlock()
			}()
			for {
				el := time.Since(start)
				if (int(done.Load()) >= lim.MinN && el >= lim.MinDur) || el >= lim.MaxDur || failed.Load() >= maxErrors || ctx.Err() != nil {
					return
				}
				if int(started.Add(1)) > lim.MaxN {
					return
				}
				t := time.Now()
				err := op(w, &steps)
				switch {
				case errors.Is(err, errStop):
					mu.Lock()
					stopReason = strings.TrimPrefix(err.Error(), errStop.Error()+": ")
					mu.Unlock()
					return
				case err != nil:
					failed.Add(1)
					mu.Lock()
					if len(res.Errors) < 5 {
						res.Errors = append(res.Errors, err.Error())
					}
					mu.Unlock()
				default:
					done.Add(1)
					lat = append(lat, time.Since(t))
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.N = int(done.Load())
	res.ClientCPU = selfCPU() - self0
	cpu1, err := readProcStat(srv.pid)
	if err != nil {
		return res, err
	}
	res.Server = cpu1.sub(cpu0)
	res.ServerCPU = res.Server.cpu()
	if busy1, err := machineBusy(); err == nil && busyErr == nil {
		res.OtherCPU = max(0, busy1-busy0-res.ServerCPU-res.ClientCPU)
		res.IdleCPU = max(0, res.Elapsed*time.Duration(runtime.NumCPU())-(busy1-busy0))
	}
	h1, err := srv.hashes(metrics)
	if err != nil {
		return res, err
	}
	res.Hashes = h1 - h0
	if res.N < lim.MinN || res.Elapsed < lim.MinDur {
		switch {
		case stopReason != "":
			res.Truncated = stopReason
		case failed.Load() >= maxErrors:
			res.Truncated = "too many errors"
		case ctx.Err() != nil:
			res.Truncated = "interrupted"
		case res.Elapsed >= lim.MaxDur:
			res.Truncated = "time limit"
		default:
			res.Truncated = "count limit"
		}
	}
	res.Failed = int(failed.Load())
	return res, nil
}
