// Command idp-bench measures the provider against its performance budget
// (docs/DESIGN.md, "Performance budget"): it builds the real idp binary, runs `idp serve` on a
// temporary SQLite database and drives complete logins (authorize →
// password → TOTP → code → token), refresh grants, JWKS and discovery
// requests and locked-account answers over HTTP on 127.0.0.1, beside the
// argon2id and RS256 ceilings of the same machine measured in the same run.
//
// Usage (from the module root; `make bench` runs it):
//
//	go run ./cmd/idp-bench [-quick] [-json]
//
// A target that is missed is reported, not an error: the exit status is 1
// only when the benchmark itself could not run or a request failed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

// settings are the durations and counts of one run; -quick shrinks them
// for a smoke run.
type settings struct {
	HashDur, ParHashDur, SignDur time.Duration
	Windows                      int // reference rates keep the best of this many windows
	Login                        limits
	Refresh                      limits
	StaticDur, LockDur           time.Duration
	MaxUsers                     int
}

var (
	fullSettings = settings{
		HashDur: 2500 * time.Millisecond, ParHashDur: 1500 * time.Millisecond, SignDur: 2 * time.Second, Windows: 5,
		Login:     limits{MinN: 40, MinDur: 5 * time.Second, MaxN: 600, MaxDur: 20 * time.Second},
		Refresh:   limits{MinN: 20, MinDur: 3 * time.Second, MaxN: 50000, MaxDur: 10 * time.Second},
		StaticDur: 2 * time.Second, LockDur: 2 * time.Second, MaxUsers: 1200,
	}
	quickSettings = settings{
		HashDur: 500 * time.Millisecond, ParHashDur: 300 * time.Millisecond, SignDur: 500 * time.Millisecond, Windows: 2,
		Login:     limits{MinN: 8, MinDur: time.Second, MaxN: 200, MaxDur: 5 * time.Second},
		Refresh:   limits{MinN: 5, MinDur: 500 * time.Millisecond, MaxN: 5000, MaxDur: 3 * time.Second},
		StaticDur: 300 * time.Millisecond, LockDur: 300 * time.Millisecond, MaxUsers: 300,
	}
)

// Levels of concurrency for logins and refresh grants; static documents
// are fetched at the highest.
var levels = []int{1, 4, 16}

const (
	redirectURI  = "https://rp.example/cb"
	clientID     = "bench"
	warmupLogins = 2
)

func main() {
	quick := flag.Bool("quick", false, "short durations, for a smoke run")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	set := fullSettings
	if *quick {
		set = quickSettings
	}
	b := &bench{set: set, start: time.Now(), rep: &report{Quick: *quick, CPUs: runtime.NumCPU(),
		Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}}
	err := b.run(ctx)
	b.rep.evaluate()
	if err != nil {
		b.rep.Errors = append(b.rep.Errors, err.Error())
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(b.rep)
	} else {
		b.rep.print(os.Stdout)
	}
	if len(b.rep.Errors) > 0 {
		fmt.Fprintln(os.Stderr, "idp-bench: errors occurred:")
		for _, e := range b.rep.Errors {
			fmt.Fprintln(os.Stderr, "  "+e)
		}
		os.Exit(1)
	}
}

// bench is one run.
type bench struct {
	set   settings
	start time.Time
	rep   *report

	bin     string
	dir     string
	metrics *http.Client
	// The main section's database, users and client secret, which the
	// mail section uses again.
	mainDB string
	pool   *userPool
	secret string
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "idp-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b.dir = dir
	b.metrics = &http.Client{Transport: newTransport(), Timeout: 10 * time.Second}

	b.logf("building idp")
	if b.bin, err = buildIDP(ctx, dir); err != nil {
		return err
	}
	if err := b.referenceRates(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.mainServer(ctx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.mailSection(ctx); err != nil {
		return err
	}
	if err := b.lockedAccount(ctx); err != nil {
		return err
	}
	return b.postgres(ctx)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mb(bytes int64) float64 { return float64(bytes) / (1 << 20) }
