package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// report is everything one run measured; -json prints it as is.
type report struct {
	Quick    bool   `json:"quick"`
	CPUs     int    `json:"cpus"`
	Go       string `json:"go"`
	Platform string `json:"platform"`

	Argon2 struct {
		SingleCorePerS  float64 `json:"single_core_per_s"`
		MsPerHash       float64 `json:"ms_per_hash"`
		ParallelPerS    float64 `json:"parallel_per_s"`
		ParallelWorkers int     `json:"parallel_workers"`
		CeilingPerS     float64 `json:"ceiling_per_s"`
	} `json:"argon2id"`
	RS256 struct {
		SingleCorePerS float64 `json:"single_core_per_s"`
		MsPerSign      float64 `json:"ms_per_sign"`
		ParallelPerS   float64 `json:"parallel_per_s"`
		CeilingPerS    float64 `json:"ceiling_per_s"`
	} `json:"rs256_sign"`
	// ReferenceOtherCores is the load other processes put on the machine
	// while the reference rates were measured.
	ReferenceOtherCores float64 `json:"reference_other_cores"`
	Users               struct {
		Created int     `json:"created"`
		Seconds float64 `json:"seconds"`
	} `json:"users"`

	Logins           []*loginLevel   `json:"logins"`
	CPUBeyondHashMs  float64         `json:"cpu_per_login_beyond_hash_ms"`
	Refresh          []*refreshLevel `json:"refresh"`
	JWKS             staticResult    `json:"jwks"`
	Discovery        staticResult    `json:"discovery"`
	PeakRSSC16MB     float64         `json:"peak_rss_c16_mb"`
	PeakRSSOverallMB float64         `json:"peak_rss_overall_mb"`
	Locked           lockedResult    `json:"locked_account"`
	Mail             mailReport      `json:"mail"`
	Postgres         pgReport        `json:"postgres"`
	Targets          []target        `json:"targets"`
	Errors           []string        `json:"errors,omitempty"`
}

type loginLevel struct {
	Concurrency        int                `json:"concurrency"`
	Logins             int                `json:"logins"`
	Seconds            float64            `json:"seconds"`
	PerS               float64            `json:"per_s"`
	ShareOfCeiling     float64            `json:"share_of_ceiling"`
	ServerCPUMsPerOp   float64            `json:"server_cpu_ms_per_login"`
	BeyondHashMs       float64            `json:"server_cpu_beyond_hash_ms"`
	BeyondParHashMs    float64            `json:"server_cpu_beyond_parallel_hash_ms"`
	ServerSysMsPerOp   float64            `json:"server_sys_cpu_ms_per_login"`
	MinorFaultsPerOp   float64            `json:"server_minor_faults_per_login"`
	CPUBoundPerS       float64            `json:"cpu_bound_limit_per_s"`
	ClientCPUMsPerOp   float64            `json:"client_cpu_ms_per_login"`
	Hashes             int64              `json:"argon2id_hashes"`
	P50Ms              float64            `json:"p50_ms"`
	P95Ms              float64            `json:"p95_ms"`
	StepMs             map[string]float64 `json:"step_ms"`
	PeakRSSMB          float64            `json:"peak_rss_mb,omitempty"`
	OtherCores         float64            `json:"other_processes_cores"`
	IdleCores          float64            `json:"idle_cores"`
	Truncated          string             `json:"truncated,omitempty"`
	Failed             int                `json:"failed"`
	Errors             []string           `json:"errors,omitempty"`
	serverCPU, elapsed time.Duration
}

type refreshLevel struct {
	Concurrency      int      `json:"concurrency"`
	Grants           int      `json:"grants"`
	Seconds          float64  `json:"seconds"`
	PerS             float64  `json:"per_s"`
	ShareOfCeiling   float64  `json:"share_of_signing_ceiling"`
	ServerCPUMsPerOp float64  `json:"server_cpu_ms_per_grant"`
	ServerSysMsPerOp float64  `json:"server_sys_cpu_ms_per_grant"`
	BeyondSignMs     float64  `json:"server_cpu_beyond_signature_ms"`
	CPUBoundPerS     float64  `json:"cpu_bound_limit_per_s"`
	ClientCPUMsPerOp float64  `json:"client_cpu_ms_per_grant"`
	P50Ms            float64  `json:"p50_ms"`
	P95Ms            float64  `json:"p95_ms"`
	OtherCores       float64  `json:"other_processes_cores"`
	IdleCores        float64  `json:"idle_cores"`
	Truncated        string   `json:"truncated,omitempty"`
	Failed           int      `json:"failed"`
	Errors           []string `json:"errors,omitempty"`
}

type staticResult struct {
	Concurrency       int     `json:"concurrency"`
	Requests          int     `json:"requests"`
	Seconds           float64 `json:"seconds"`
	PerS              float64 `json:"per_s"`
	ServerCPUUsPerReq float64 `json:"server_cpu_us_per_request"`
	OtherCores        float64 `json:"other_processes_cores"`
}

type lockedResult struct {
	MaxFailures          int     `json:"max_failures"`
	FailuresToLock       int     `json:"failures_to_lock"`
	Answers              int     `json:"answers"`
	Seconds              float64 `json:"seconds"`
	PerS                 float64 `json:"per_s"`
	Non429               int     `json:"non_429"`
	WithoutRetryAfter    int     `json:"without_retry_after"`
	Hashes               int64   `json:"argon2id_hashes"`
	ServerCPUUsPerAnswer float64 `json:"server_cpu_us_per_answer"`
	OtherCores           float64 `json:"other_processes_cores"`
}

// target is one line of the budget: a figure beside its goal.
type target struct {
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Goal     float64 `json:"goal"`
	Unit     string  `json:"unit"`
	AtMost   bool    `json:"at_most"`
	Pass     bool    `json:"pass"`
	Measured bool    `json:"measured"`
	Note     string  `json:"note,omitempty"`
}

func (r *report) addLogin(res levelResult) *loginLevel {
	l := &loginLevel{
		Concurrency: res.Concurrency, Logins: res.N, Seconds: res.Elapsed.Seconds(), PerS: res.perSecond(),
		ServerCPUMsPerOp: ms(res.perOp()), ClientCPUMsPerOp: ms(res.clientPerOp()), Hashes: res.Hashes,
		P50Ms: ms(res.percentile(0.5)), P95Ms: ms(res.percentile(0.95)), StepMs: map[string]float64{},
		Truncated: res.Truncated, Failed: res.Failed, Errors: res.Errors, OtherCores: res.otherCores(),
		IdleCores: res.idleCores(), serverCPU: res.ServerCPU, elapsed: res.Elapsed,
	}
	if r.Argon2.CeilingPerS > 0 {
		l.ShareOfCeiling = l.PerS / r.Argon2.CeilingPerS
	}
	l.BeyondHashMs = l.ServerCPUMsPerOp - r.Argon2.MsPerHash
	l.BeyondParHashMs = l.BeyondHashMs
	if res.Concurrency > 1 && r.Argon2.ParallelPerS > 0 {
		l.BeyondParHashMs = l.ServerCPUMsPerOp - r.parHashMs()
	}
	l.CPUBoundPerS = cpuBound(r.CPUs, l.ServerCPUMsPerOp+l.ClientCPUMsPerOp)
	if res.N > 0 {
		l.ServerSysMsPerOp = ms(res.Server.System / time.Duration(res.N))
		l.MinorFaultsPerOp = float64(res.Server.MinorFaults) / float64(res.N)
		for i, name := range stepNames {
			l.StepMs[name] = ms(res.Steps[i] / time.Duration(res.N))
		}
	}
	r.Logins = append(r.Logins, l)
	return l
}

// levelOf is addLogin's level without adding it to Logins (the mail
// section's).
func (r *report) levelOf(res levelResult) *loginLevel {
	l := r.addLogin(res)
	r.Logins = r.Logins[:len(r.Logins)-1]
	return l
}

func (r *report) addRefresh(res levelResult) {
	l := &refreshLevel{
		Concurrency: res.Concurrency, Grants: res.N, Seconds: res.Elapsed.Seconds(), PerS: res.perSecond(),
		ServerCPUMsPerOp: ms(res.perOp()), ClientCPUMsPerOp: ms(res.clientPerOp()),
		P50Ms: ms(res.percentile(0.5)), P95Ms: ms(res.percentile(0.95)), OtherCores: res.otherCores(),
		IdleCores: res.idleCores(), Truncated: res.Truncated, Failed: res.Failed, Errors: res.Errors,
	}
	if r.RS256.CeilingPerS > 0 {
		l.ShareOfCeiling = l.PerS / r.RS256.CeilingPerS
	}
	if res.N > 0 {
		l.ServerSysMsPerOp = ms(res.Server.System / time.Duration(res.N))
	}
	l.BeyondSignMs = l.ServerCPUMsPerOp - r.RS256.MsPerSign
	l.CPUBoundPerS = cpuBound(r.CPUs, l.ServerCPUMsPerOp+l.ClientCPUMsPerOp)
	r.Refresh = append(r.Refresh, l)
}

// parHashMs is the CPU one argon2id hash costs when every core hashes.
func (r *report) parHashMs() float64 {
	if r.Argon2.ParallelPerS == 0 {
		return 0
	}
	return 1000 * float64(r.Argon2.ParallelWorkers) / r.Argon2.ParallelPerS
}

// cpuBound is the rate cores sustain when each operation costs msPerOp
// of CPU and nothing else runs.
func cpuBound(cores int, msPerOp float64) float64 {
	if msPerOp <= 0 {
		return 0
	}
	return float64(cores) * 1000 / msPerOp
}

// evaluate fills in the targets of the issue / docs/DESIGN.md budget.
func (r *report) evaluate() {
	var bestLogin, bestRefresh float64
	var cpu time.Duration
	var logins int
	for _, l := range r.Logins {
		bestLogin = max(bestLogin, l.PerS)
		cpu += l.serverCPU
		logins += l.Logins
	}
	if logins > 0 {
		r.CPUBeyondHashMs = ms(cpu/time.Duration(logins)) - r.Argon2.MsPerHash
	}
	for _, l := range r.Refresh {
		bestRefresh = max(bestRefresh, l.PerS)
	}
	add := func(t target) {
		if t.Measured {
			if t.AtMost {
				t.Pass = t.Value <= t.Goal
			} else {
				t.Pass = t.Value >= t.Goal
			}
		}
		r.Targets = append(r.Targets, t)
	}
	add(target{Name: "complete logins/s ≥ 0.9 × argon2id ceiling", Value: bestLogin, Goal: 0.9 * r.Argon2.CeilingPerS,
		Unit: "logins/s", Measured: len(r.Logins) > 0, Note: fmt.Sprintf("best level; ceiling %.1f/s = %.1f/s × %d cores; %d goroutines hash %.1f/s", r.Argon2.CeilingPerS, r.Argon2.SingleCorePerS, r.CPUs, r.Argon2.ParallelWorkers, r.Argon2.ParallelPerS)})
	add(target{Name: "provider CPU per login beyond the hash ≤ 5 ms", Value: r.CPUBeyondHashMs, Goal: 5, Unit: "ms", AtMost: true,
		Measured: logins > 0, Note: fmt.Sprintf("all levels: %d logins; hash %.1f ms subtracted", logins, r.Argon2.MsPerHash)})
	add(target{Name: "refresh grants/s ≥ 0.7 × RS256 signing ceiling", Value: bestRefresh, Goal: 0.7 * r.RS256.CeilingPerS,
		Unit: "grants/s", Measured: len(r.Refresh) > 0, Note: fmt.Sprintf("best level; ceiling %.0f/s = %.0f/s × %d cores", r.RS256.CeilingPerS, r.RS256.SingleCorePerS, r.CPUs)})
	add(target{Name: "peak RSS at 16 concurrent logins ≤ 100 MB", Value: r.PeakRSSC16MB, Goal: 100, Unit: "MB", AtMost: true,
		Measured: r.PeakRSSC16MB > 0, Note: "VmHWM of idp serve, reset before the level"})
	lk := r.Locked
	t := target{Name: "locked account: every answer 429, no argon2id hash", Value: float64(lk.Non429 + lk.WithoutRetryAfter + int(lk.Hashes)), Goal: 0,
		Unit: "violations", AtMost: true, Measured: lk.Answers > 0,
		Note: fmt.Sprintf("%d non-429, %d without Retry-After, %d hashes", lk.Non429, lk.WithoutRetryAfter, lk.Hashes)}
	add(t)
	pg := r.Postgres
	if pg.Skipped != "" {
		return
	}
	best := func(ls []*loginLevel, c int) float64 {
		for _, l := range ls {
			if l.Concurrency == c {
				return l.PerS
			}
		}
		return 0
	}
	bestR := func(ls []*refreshLevel, c int) float64 {
		for _, l := range ls {
			if l.Concurrency == c {
				return l.PerS
			}
		}
		return 0
	}
	top := levels[len(levels)-1]
	for _, c := range levels {
		sq, p := best(r.Logins, c), best(pg.Logins, c)
		add(target{Name: fmt.Sprintf("PostgreSQL, one replica: logins/s at c=%d ≥ 0.9 × SQLite's", c), Value: p, Goal: 0.9 * sq,
			Unit: "logins/s", Measured: sq > 0 && p > 0, Note: fmt.Sprintf("SQLite %.1f/s in this run", sq)})
	}
	sqR, pR := bestR(r.Refresh, top), bestR(pg.Refresh, top)
	add(target{Name: fmt.Sprintf("PostgreSQL, one replica: refresh grants/s at c=%d ≥ 0.8 × SQLite's", top), Value: pR, Goal: 0.8 * sqR,
		Unit: "grants/s", Measured: sqR > 0 && pR > 0, Note: fmt.Sprintf("SQLite %.0f/s in this run", sqR)})
	one := best(pg.Logins, top)
	add(target{Name: fmt.Sprintf("PostgreSQL, three replicas behind nginx: logins/s at c=%d within 15 %% of one replica", top),
		Value: pg.ThreeLogins, Goal: 0.85 * one, Unit: "logins/s", Measured: one > 0 && pg.ThreeLogins > 0,
		Note: fmt.Sprintf("one replica %.1f/s; the 2 cores are shared by all replicas, nginx and PostgreSQL", one)})
	add(target{Name: fmt.Sprintf("PostgreSQL, three replicas behind nginx: refresh grants/s at c=%d within 15 %% of one replica", top),
		Value: pg.ThreeRefresh, Goal: 0.85 * pR, Unit: "grants/s", Measured: pR > 0 && pg.ThreeRefresh > 0,
		Note: fmt.Sprintf("one replica %.0f/s", pR)})
}

func verdict(t target) string {
	switch {
	case !t.Measured:
		return "n/a"
	case t.Pass:
		return "PASS"
	default:
		return "MISS"
	}
}

// print writes the human-readable report.
func (r *report) print(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	mode := ""
	if r.Quick {
		mode = "   [-quick: short durations, figures are indicative only]"
	}
	p("idp-bench: %d CPUs, %s, %s%s", r.CPUs, r.Platform, r.Go, mode)
	p("")
	p("Reference rates (measured in this process before the server gets load)")
	p("  argon2id m=19456 KiB t=2 p=1   %.1f hashes/s on one goroutine (%.1f ms/hash); %.1f/s on %d goroutines",
		r.Argon2.SingleCorePerS, r.Argon2.MsPerHash, r.Argon2.ParallelPerS, r.Argon2.ParallelWorkers)
	p("                                 login ceiling = %.1f/s × %d cores = %.1f logins/s", r.Argon2.SingleCorePerS, r.CPUs, r.Argon2.CeilingPerS)
	p("  RS256 sign, 2048-bit (go-jose) %.0f/s on one goroutine (%.2f ms/sign); %.0f/s on %d goroutines",
		r.RS256.SingleCorePerS, r.RS256.MsPerSign, r.RS256.ParallelPerS, r.CPUs)
	p("                                 refresh ceiling = %.0f/s × %d cores = %.0f/s", r.RS256.SingleCorePerS, r.CPUs, r.RS256.CeilingPerS)
	if r.Users.Created > 0 {
		p("  other processes used %.2f cores meanwhile", r.ReferenceOtherCores)
		p("  setup: %d users via `idp user add --password-stdin --json` in %.1f s (%.1f/s)", r.Users.Created, r.Users.Seconds, float64(r.Users.Created)/r.Users.Seconds)
	}
	if len(r.Logins) > 0 {
		p("")
		p("Complete logins (authorize → password → TOTP → code → token with PKCE; new cookie jar and user each)")
		p("  conc  logins   secs  logins/s  of ceiling  server CPU/login  beyond hash  client CPU/login  hashes   p50 ms   p95 ms  idle / other load")
		for _, l := range r.Logins {
			p("  %4d  %6d  %5.1f  %8.1f  %9.0f%%  %13.1f ms  %8.1f ms  %12.1f ms  %6d  %7.0f  %7.0f  %4.2f / %4.2f cores%s",
				l.Concurrency, l.Logins, l.Seconds, l.PerS, 100*l.ShareOfCeiling, l.ServerCPUMsPerOp, l.BeyondHashMs,
				l.ClientCPUMsPerOp, l.Hashes, l.P50Ms, l.P95Ms, l.IdleCores, l.OtherCores, truncNote(l.Truncated))
		}
		for _, l := range r.Logins {
			if l.Concurrency != 1 && l.Concurrency != levels[len(levels)-1] {
				continue
			}
			var parts []string
			for _, name := range stepNames {
				parts = append(parts, fmt.Sprintf("%s %.1f", name, l.StepMs[name]))
			}
			p("  wall ms per step at c=%d: %s", l.Concurrency, strings.Join(parts, ", "))
		}
		p("  server detail: sys CPU and minor page faults per login; CPU beyond the hash with the hash charged at its")
		p("  %d-goroutine cost (%.1f ms) instead of %.1f ms; CPU-bound limit = %d cores ÷ (server + client CPU per login):",
			r.Argon2.ParallelWorkers, r.parHashMs(), r.Argon2.MsPerHash, r.CPUs)
		for _, l := range r.Logins {
			p("    c=%-3d sys %.1f ms, %4.0f faults, beyond hash at parallel cost %4.1f ms, CPU-bound limit %5.1f logins/s",
				l.Concurrency, l.ServerSysMsPerOp, l.MinorFaultsPerOp, l.BeyondParHashMs, l.CPUBoundPerS)
		}
	}
	if len(r.Mail.Logins) > 0 {
		p("")
		p("Complete logins with notifications on and a slow mail server (%.0f s per mail; every login is from a new", r.Mail.DelayS)
		p("browser, so each queues a notice), against the same levels just before with mail off, on the same database")
		p("  conc  logins  logins/s  (mail off)   p50 ms  (mail off)   p95 ms  (mail off)  server CPU/login (mail off)  idle / other load (mail off)")
		for i, l := range r.Mail.Logins {
			base := &loginLevel{}
			if i < len(r.Mail.Control) {
				base = r.Mail.Control[i]
			}
			p("  %4d  %6d  %8.1f  (%8.1f)  %7.0f  (%8.0f)  %7.0f  (%8.0f)  %10.1f ms (%6.1f ms)  %4.2f / %4.2f (%4.2f / %4.2f) cores%s", l.Concurrency, l.Logins,
				l.PerS, base.PerS, l.P50Ms, base.P50Ms, l.P95Ms, base.P95Ms, l.ServerCPUMsPerOp, base.ServerCPUMsPerOp,
				l.IdleCores, l.OtherCores, base.IdleCores, base.OtherCores, truncNote(l.Truncated))
		}
		p("  notices queued %d, delivered by the end %d (the rest wait in the outbox: the sender is slow, the sign-ins are not)", r.Mail.Queued, r.Mail.Sent)
	}
	if len(r.Refresh) > 0 {
		p("")
		p("Refresh grants (own token chain per worker, rotated; each answer carries a new RS256 ID token)")
		p("  conc  grants   secs  grants/s  of signing ceiling  server CPU/grant (sys)  client CPU/grant   p50 ms   p95 ms  idle / other load")
		for _, l := range r.Refresh {
			p("  %4d  %6d  %5.1f  %8.0f  %17.0f%%  %8.2f ms (%.2f ms)  %13.2f ms  %7.1f  %7.1f  %4.2f / %4.2f cores%s",
				l.Concurrency, l.Grants, l.Seconds, l.PerS, 100*l.ShareOfCeiling, l.ServerCPUMsPerOp, l.ServerSysMsPerOp, l.ClientCPUMsPerOp,
				l.P50Ms, l.P95Ms, l.IdleCores, l.OtherCores, truncNote(l.Truncated))
		}
		p("  server CPU per grant beyond one signature (%.2f ms); CPU-bound limit = %d cores ÷ (server + client CPU per grant):",
			r.RS256.MsPerSign, r.CPUs)
		for _, l := range r.Refresh {
			p("    c=%-3d beyond the signature %.2f ms, CPU-bound limit %4.0f grants/s", l.Concurrency, l.BeyondSignMs, l.CPUBoundPerS)
		}
	}
	if r.JWKS.Requests > 0 {
		p("")
		p("Static documents at concurrency %d (docs/DESIGN.md: Dex 2.4 k JWKS req/s, zitadel example 25 k, Authelia 38 k)", r.JWKS.Concurrency)
		for _, d := range []struct {
			name string
			s    staticResult
		}{{"JWKS", r.JWKS}, {"discovery", r.Discovery}} {
			p("  %-9s  %8.0f req/s  (%d in %.1f s, server CPU %.0f µs/req, other load %.2f cores)",
				d.name, d.s.PerS, d.s.Requests, d.s.Seconds, d.s.ServerCPUUsPerReq, d.s.OtherCores)
		}
	}
	if r.PeakRSSOverallMB > 0 {
		p("")
		p("Memory of idp serve: peak RSS during the c=%d login level %.1f MB; overall peak %.1f MB", levels[len(levels)-1], r.PeakRSSC16MB, r.PeakRSSOverallMB)
	}
	if lk := r.Locked; lk.Answers > 0 {
		p("")
		p("Locked account (second server, --password-max-failures %d --password-lock 10m; locked after %d wrong passwords)", lk.MaxFailures, lk.FailuresToLock)
		p("  correct password at concurrency %d: %d answers in %.1f s = %.0f answers/s, server CPU %.0f µs/answer, other load %.2f cores",
			levels[len(levels)-1], lk.Answers, lk.Seconds, lk.PerS, lk.ServerCPUUsPerAnswer, lk.OtherCores)
		p("  non-429 answers: %d; 429 without Retry-After: %d; argon2id hashes on the server meanwhile: %d", lk.Non429, lk.WithoutRetryAfter, lk.Hashes)
	}
	if o := r.maxOtherCores(); o > noisyCores {
		p("")
		p("WARNING: other processes on this machine used up to %.2f cores during a measurement; figures compared", o)
		p("         with ceilings of an idle machine are disturbed. Run again on a quiet machine for a verdict.")
	}
	p("")
	if pg := r.Postgres; pg.Skipped != "" {
		p("PostgreSQL: skipped (%s)", pg.Skipped)
	} else {
		p("PostgreSQL, same run (one replica; three replicas behind nginx at the top level)")
		for _, l := range pg.Logins {
			p("  logins   c=%-3d %7.1f/s  server CPU %.1f ms/login  p50 %.0f ms  p95 %.0f ms", l.Concurrency, l.PerS, l.ServerCPUMsPerOp, l.P50Ms, l.P95Ms)
		}
		for _, l := range pg.Refresh {
			p("  refresh  c=%-3d %7.0f/s  server CPU %.2f ms/grant  p50 %.1f ms  p95 %.1f ms", l.Concurrency, l.PerS, l.ServerCPUMsPerOp, l.P50Ms, l.P95Ms)
		}
		p("  peak RSS of the replica at c=%d: %.1f MB", levels[len(levels)-1], pg.PeakRSSC16MB)
		p("  three replicas: %.1f logins/s, %.0f refresh grants/s; largest replica RSS %.1f MB", pg.ThreeLogins, pg.ThreeRefresh, pg.ThreeMaxRSSMB)
	}
	p("")
	p("Targets (issue / docs/DESIGN.md performance budget)")
	for _, t := range r.Targets {
		op := "≥"
		if t.AtMost {
			op = "≤"
		}
		p("  %-4s  %-50s  %9.2f %s %8.2f %-10s  (%s)", verdict(t), t.Name, t.Value, op, t.Goal, t.Unit, t.Note)
	}
	if len(r.Errors) > 0 {
		p("")
		p("ERRORS")
		for _, e := range r.Errors {
			p("  %s", e)
		}
	}
}

// noisyCores is the load by other processes above which a run is flagged.
const noisyCores = 0.15

func (r *report) maxOtherCores() float64 {
	o := max(r.ReferenceOtherCores, r.JWKS.OtherCores, r.Discovery.OtherCores, r.Locked.OtherCores)
	for _, l := range r.Logins {
		o = max(o, l.OtherCores)
	}
	for _, l := range r.Refresh {
		o = max(o, l.OtherCores)
	}
	return o
}

func truncNote(s string) string {
	if s == "" {
		return ""
	}
	return "  (stopped early: " + s + ")"
}
