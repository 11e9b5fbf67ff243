package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/totp-idp/idp/op"
	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/op/audit"
	"github.com/totp-idp/idp/op/httpx"
	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/password"
	"github.com/totp-idp/idp/storage"
)

// Demo client and user created by --dev on an empty database; make demo
// points the example relying party at them.
const (
	devClientID    = "demo"
	devRedirectURI = "http://127.0.0.1:9000/callback"
	devLogoutURI   = "http://127.0.0.1:9000/"
	devUsername    = "demo"
)

// defaultAuditRetention keeps the audit trail for 180 days: long enough to
// investigate a compromise noticed months later (an account takeover is
// often found at the next password change or quarterly access review),
// short enough that the client addresses and account ids in it are not
// kept without end (GDPR Art. 5(1)(e), storage limitation). Operators
// with a longer duty, such as PCI DSS's one year, raise it (README,
// Operations).
const defaultAuditRetention = 180 * 24 * time.Hour

// minAuditRetention: a shorter retention would delete the evidence of an
// attack before anyone has looked at it.
const minAuditRetention = 24 * time.Hour

func (e *env) serve(ctx context.Context, args []string) error {
	fs, db := e.newFlags("serve")
	cfg := op.DefaultConfig("")
	var (
		configFile, issuer, listen, proxies, logFormat, logLevel, metricsListen, keyFile string
		dev                                                                              bool
		auditRetention                                                                   time.Duration
		smtpURL, smtpFrom, smtpPasswordFile, mailDir                                     string
		mailInterval                                                                     time.Duration
	)
	fs.StringVar(&configFile, "config", "", "file of \"name = value\" lines setting any of these flags")
	fs.StringVar(&issuer, "issuer", "", "issuer URL (https, or http for loopback hosts); default http://LISTEN for a loopback listener")
	fs.StringVar(&listen, "listen", "127.0.0.1:8080", "address to listen on (port 0 picks a free port)")
	fs.StringVar(&metricsListen, "metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics on a separate, private listener (default: off)")
	fs.StringVar(&keyFile, "secret-key-file", "", "file with the 256-bit key that seals secrets in the database (default: DB.key if it exists; --dev creates it)")
	fs.BoolVar(&dev, "dev", false, "development mode: on an empty database create a demo user and client and print how to sign in")
	noMigrate := fs.Bool("no-migrate", false, "PostgreSQL: refuse to start unless the schema is current (run `idp migrate` first) instead of migrating")
	fs.StringVar(&proxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is honoured (default: none)")
	fs.StringVar(&cfg.ProductName, "product-name", cfg.ProductName, "name shown on pages and in authenticator apps")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.IntVar(&cfg.LoginRatePerIP, "login-rate-per-ip", 0, "sign-in requests (/authorize and login form posts) per minute per client address (0: no limit); an outer layer only")
	fs.IntVar(&cfg.LoginBurstPerIP, "login-burst-per-ip", 20, "sign-in requests a client address may send at once under --login-rate-per-ip")
	fs.IntVar(&cfg.HashConcurrency, "hash-concurrency", 0, "password hashes computed at once (0: number of CPUs)")
	fs.DurationVar(&cfg.AuthRequestLifetime, "auth-request-lifetime", cfg.AuthRequestLifetime, "how long a sign-in may take from /authorize to the code")
	fs.DurationVar(&cfg.AccessTokenLifetime, "access-token-lifetime", cfg.AccessTokenLifetime, "access token lifetime")
	fs.DurationVar(&cfg.IDTokenLifetime, "id-token-lifetime", cfg.IDTokenLifetime, "ID token lifetime")
	fs.DurationVar(&cfg.RefreshTokenLifetime, "refresh-token-lifetime", cfg.RefreshTokenLifetime, "absolute lifetime of a refresh token family")
	fs.DurationVar(&cfg.SessionLifetime, "session-lifetime", cfg.SessionLifetime, "absolute lifetime of an SSO session")
	fs.DurationVar(&cfg.SessionIdleTimeout, "session-idle-timeout", cfg.SessionIdleTimeout, "SSO session idle timeout")
	fs.DurationVar(&cfg.KeyRetention, "key-retention", cfg.KeyRetention, "how long a retired signing key stays in JWKS")
	fs.DurationVar(&auditRetention, "audit-retention", defaultAuditRetention, "how long audit events are kept (at least 24h; 0: forever)")
	fs.DurationVar(&cfg.ReauthWindow, "reauth-window", 5*time.Minute, "how long a proof of the second factor lets the account page change the password or end sessions, at most 1h")
	fs.IntVar(&cfg.PasswordMinLength, "password-min-length", password.DefaultMinLength, "the shortest new password accepted, in characters, 8 to 64 (NIST SP 800-63B-4 §3.1.1.2)")
	fs.DurationVar(&cfg.EnrollWithin, "enroll-within", cfg.EnrollWithin, "how long an account without an authenticator (user add --enroll-at-login, user reset-totp) may sign in with its password to set one up; after that an operator must run user reset-totp again")
	fs.StringVar(&smtpURL, "smtp-url", "", "send e-mail notifications through this server: smtp://host[:port] (STARTTLS required), smtp://host?tls=none (a loopback host only) or smtps://host[:port] (default: no mail)")
	fs.StringVar(&smtpFrom, "smtp-from", "", "the notifications' From address (required with --smtp-url)")
	fs.StringVar(&smtpPasswordFile, "smtp-password-file", "", "file with the password of --smtp-url's user")
	fs.StringVar(&mailDir, "mail-dir", "", "write e-mail notifications as .eml files in this directory instead of sending them (--dev: DB.mail)")
	fs.DurationVar(&mailInterval, "mail-interval", 2*time.Second, "how often the outbox is delivered")
	mailRetry := fs.Duration("mail-retry", mail.FirstRetry, "the wait after a mail's first failed attempt; it doubles with each attempt, up to 30m")
	newDeviceNotice := fs.Bool("notify-new-device", true, "with mail on, mail the user when a sign-in completes in a browser that never signed in to the account")
	registerPolicyFlags(fs, "totp", &cfg.TOTPPolicy)
	fs.IntVar(&cfg.TOTPPolicy.Budget, "totp-budget", cfg.TOTPPolicy.Budget, "TOTP and recovery-code failures allowed per --totp-budget-window, which no success refills; when spent, the second factor locks until an operator unlocks")
	fs.DurationVar(&cfg.TOTPPolicy.BudgetWindow, "totp-budget-window", cfg.TOTPPolicy.BudgetWindow, "the window of --totp-budget (one failure leaks out every window/budget)")
	registerPolicyFlags(fs, "password", &cfg.PasswordPolicy)
	fs.DurationVar(&cfg.PasswordPolicy.Decay, "password-decay", cfg.PasswordPolicy.Decay, "each password counter forgets one failure per this (at most 720h); no success resets it, so accounts and unknown names look alike (over a period T the shared counter evaluates at most --password-hard-limit + T/decay wrong passwords; each remembered device at most --device-max-failures more)")
	fs.DurationVar(&cfg.DeviceLifetime, "device-lifetime", cfg.DeviceLifetime, "how long a browser stays remembered after its last complete sign-in (its password attempts count on its own counter, so others' failures do not lock it out)")
	fs.IntVar(&cfg.DeviceMaxFailures, "device-max-failures", cfg.DeviceMaxFailures, "failed passwords with one remembered device's cookie before it is forgotten (at most 100)")
	pos, err := parseArgs(fs, args, "config")
	if err != nil {
		return err
	}
	if err := needArgs(pos, 0, "no arguments"); err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// The heap is mostly argon2id's 19 MiB working buffers, which hold
		// no pointers and die after each hash: collecting them early is
		// cheap and keeps resident memory near what is live (make bench:
		// peak RSS at 16 concurrent logins).
		debug.SetGCPercent(25)
	}
	log, err := newLogger(e.stderr, logFormat, logLevel)
	if err != nil {
		return usageError{err.Error()}
	}
	// The protocol library logs through the default logger with the
	// request's context: wrapped, its lines carry the request id too.
	slog.SetDefault(slog.New(httpx.LogHandler{Handler: log.Handler()}))
	cfg.Logger = log
	if cfg.TrustedProxies, err = httpx.ParseCIDRs(proxies); err != nil {
		return usageError{fmt.Sprintf("--trusted-proxies: %v", err)}
	}
	// The issuer and the secret key are settled below; op.New checks the
	// whole configuration again with them.
	if err := flagErrors(cfg.Validate(), "Issuer", "Sealer"); err != nil {
		return err
	}
	if *mailRetry <= 0 || *mailRetry > mail.MaxRetry {
		return usageError{fmt.Sprintf("--mail-retry %s: must be positive and at most %s", *mailRetry, mail.MaxRetry)}
	}
	if mailInterval <= 0 {
		return usageError{fmt.Sprintf("--mail-interval %s: must be positive", mailInterval)}
	}
	if auditRetention != 0 && auditRetention < minAuditRetention {
		return usageError{fmt.Sprintf("--audit-retention %s: use at least %s, or 0 to keep events forever", auditRetention, minAuditRetention)}
	}

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	defer ln.Close()
	if issuer == "" {
		host, _, _ := net.SplitHostPort(ln.Addr().String())
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return usageError{"--issuer is required unless the listener is on a loopback address"}
		}
		issuer = "http://" + ln.Addr().String()
	}
	cfg.Issuer = issuer
	if err := op.ValidateIssuer(issuer); err != nil {
		return usageError{err.Error()}
	}

	sealer, keyPath, err := loadSealer(keyFile, *db, dev)
	if err != nil {
		return err
	}
	cfg.Sealer = sealer
	if dev && mailDir == "" && smtpURL == "" && !isPostgres(*db) {
		mailDir = *db + ".mail"
	}
	transport, from, err := mailTransport(smtpURL, smtpFrom, smtpPasswordFile, mailDir)
	if err != nil {
		return err
	}
	cfg.Mail = transport != nil
	cfg.NoNewDeviceNotice = !*newDeviceNotice
	st, err := openStoreWith(ctx, *db, *noMigrate)
	if err != nil {
		return err
	}
	defer st.Close()
	if !isPostgres(*db) {
		warnLooseDatabase(log, *db)
	}
	srv, err := op.New(ctx, cfg, st)
	if err := flagErrors(err); err != nil {
		return err
	}
	if err != nil {
		return err
	}
	if dev {
		if err := e.devSetup(ctx, st, srv, cfg); err != nil {
			return fmt.Errorf("dev setup: %w", err)
		}
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go gcLoop(ctx, st, log, auditRetention)
	go srv.WatchSecretKey(ctx)
	go srv.WatchChanges(ctx)
	if transport != nil {
		domain, _ := url.Parse(issuer)
		sender := &mail.Sender{Store: st, Sealer: sealer, Transport: transport, From: from, Domain: domain.Hostname(),
			Trail: auditTrail{st: st, log: log}, Log: log, FirstRetry: *mailRetry}
		go sender.Run(ctx, mailInterval)
		if mailDir != "" {
			log.Info("e-mail is written as .eml files, not sent", "dir", mailDir)
			fmt.Fprintf(e.stderr, "idp writes its e-mail as .eml files in %s\n", mailDir)
		}
	}
	// Start-up hashed a dummy password (and --dev a user): hand those
	// 19 MiB argon2id buffers back now rather than when the scavenger
	// gets to them.
	debug.FreeOSMemory()

	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(ln) }()
	if metricsListen != "" {
		mln, err := net.Listen("tcp", metricsListen)
		if err != nil {
			return fmt.Errorf("metrics listen on %s: %w", metricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = ms.Serve(mln) }()
		defer ms.Close()
		fmt.Fprintf(e.stderr, "idp metrics on http://%s/metrics\n", mln.Addr())
	}
	log.Info("idp listening", "addr", ln.Addr().String(), "issuer", issuer, "db", redactDB(*db), "secret_key_file", keyPath, "secret_key_id", sealer.CurrentKeyID())
	fmt.Fprintf(e.stderr, "idp listening on %s (issuer %s)\n", ln.Addr(), issuer)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// A request that sealed with the previous secret key just before a
	// rotation may have written after the watcher's last sweep.
	_ = srv.ResealStale(sctx)
	return nil
}

// warnLooseDatabase warns when other users may read the database or its
// -wal and -shm files, which hold argon2id hashes: a new database is
// created 0600, an older one keeps the mode it was given.
func warnLooseDatabase(log *slog.Logger, db string) {
	for _, p := range []string{db, db + "-wal", db + "-shm"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 && runtime.GOOS != "windows" {
			log.Warn("other users may read the database, which holds password hashes", "file", p,
				"mode", fmt.Sprintf("%04o", fi.Mode().Perm()), "fix", "chmod 600 "+db+" "+db+"-wal "+db+"-shm")
		}
	}
}

// registerPolicyFlags adds the --totp-* or --password-* lock policy flags.
func registerPolicyFlags(fs *flag.FlagSet, factor string, p *storage.LockPolicy) {
	fs.IntVar(&p.FreeFailures, factor+"-max-failures", p.FreeFailures, "consecutive "+factor+" failures before the first lock")
	fs.DurationVar(&p.BaseLock, factor+"-lock", p.BaseLock, "first "+factor+" lock duration; each further failure doubles it")
	fs.DurationVar(&p.MaxLock, factor+"-lock-max", p.MaxLock, "longest "+factor+" lock")
	if factor == "password" {
		fs.IntVar(&p.HardLimit, factor+"-hard-limit", p.HardLimit, "most password failures a counter holds; at it, attempts are refused until one is forgotten (--password-decay; at most 100)")
		return
	}
	fs.IntVar(&p.HardLimit, factor+"-hard-limit", p.HardLimit, "consecutive "+factor+" failures that lock until an operator unlocks (at most 100)")
}

// settingFlags names serve's flag for each op.Config setting it sets.
var settingFlags = map[string]string{
	"Issuer":                      "issuer",
	"ProductName":                 "product-name",
	"HashConcurrency":             "hash-concurrency",
	"AuthRequestLifetime":         "auth-request-lifetime",
	"AccessTokenLifetime":         "access-token-lifetime",
	"IDTokenLifetime":             "id-token-lifetime",
	"RefreshTokenLifetime":        "refresh-token-lifetime",
	"SessionLifetime":             "session-lifetime",
	"SessionIdleTimeout":          "session-idle-timeout",
	"KeyRetention":                "key-retention",
	"LoginRatePerIP":              "login-rate-per-ip",
	"LoginBurstPerIP":             "login-burst-per-ip",
	"EnrollWithin":                "enroll-within",
	"PasswordMinLength":           "password-min-length",
	"ReauthWindow":                "reauth-window",
	"TOTPPolicy.FreeFailures":     "totp-max-failures",
	"TOTPPolicy.BaseLock":         "totp-lock",
	"TOTPPolicy.MaxLock":          "totp-lock-max",
	"TOTPPolicy.HardLimit":        "totp-hard-limit",
	"TOTPPolicy.Budget":           "totp-budget",
	"TOTPPolicy.BudgetWindow":     "totp-budget-window",
	"PasswordPolicy.FreeFailures": "password-max-failures",
	"PasswordPolicy.BaseLock":     "password-lock",
	"PasswordPolicy.MaxLock":      "password-lock-max",
	"PasswordPolicy.HardLimit":    "password-hard-limit",
	"PasswordPolicy.Decay":        "password-decay",
	"DeviceLifetime":              "device-lifetime",
	"DeviceMaxFailures":           "device-max-failures",
}

// flagErrors turns the *op.ConfigError values in err into one usage error
// that names serve's flags, one line each, leaving out the settings in
// skip. It returns nil when err holds no other configuration error.
func flagErrors(err error, skip ...string) error {
	var lines []string
	for _, ce := range configErrors(err) {
		if slices.Contains(skip, ce.Setting) {
			continue
		}
		name := ce.Setting
		if f, ok := settingFlags[ce.Setting]; ok {
			name = "--" + f
		}
		lines = append(lines, name+": "+ce.Problem)
	}
	if len(lines) == 0 {
		return nil
	}
	return usageError{"configuration refused:\n  " + strings.Join(lines, "\n  ")}
}

// configErrors collects the *op.ConfigError values in err's tree.
func configErrors(err error) []*op.ConfigError {
	if ce, ok := err.(*op.ConfigError); ok {
		return []*op.ConfigError{ce}
	}
	switch x := err.(type) {
	case interface{ Unwrap() []error }:
		var out []*op.ConfigError
		for _, e := range x.Unwrap() {
			out = append(out, configErrors(e)...)
		}
		return out
	case interface{ Unwrap() error }:
		return configErrors(x.Unwrap())
	}
	return nil
}

func newLogger(w interface{ Write([]byte) (int, error) }, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %v", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: use text or json", format)
	}
}

// gcLoop deletes expired rows at start-up and every 10 minutes, and audit
// events older than auditRetention (none when it is 0).
func gcLoop(ctx context.Context, st storage.Store, log *slog.Logger, auditRetention time.Duration) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		now := time.Now().UTC()
		if n, err := st.GC(ctx, now); err != nil && ctx.Err() == nil {
			log.Warn("garbage collection", "err", err)
		} else if n > 0 {
			log.Info("garbage collection", "deleted", n)
		}
		if auditRetention > 0 {
			if n, err := st.DeleteAuditBefore(ctx, now.Add(-auditRetention)); err != nil && ctx.Err() == nil {
				log.Warn("audit retention", "err", err)
			} else if n > 0 {
				log.Info("audit retention", "deleted", n, "older_than", auditRetention.String())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// devSetup creates the demo user and client on an empty database and
// prints how to sign in.
func (e *env) devSetup(ctx context.Context, st storage.Store, srv *op.Server, cfg op.Config) error {
	users, err := st.ListUsers(ctx)
	if err != nil {
		return err
	}
	clients, err := st.ListClients(ctx)
	if err != nil {
		return err
	}
	if len(users) > 0 || len(clients) > 0 {
		fmt.Fprintf(e.stderr, "--dev: the database already has users or clients; nothing created.\n")
		return nil
	}
	adm := &admin.Admin{Store: st, Sealer: cfg.Sealer, Hasher: srv.Hasher(), Product: cfg.ProductName, Log: cfg.Logger}
	if _, err := adm.AddClient(ctx, admin.NewClient{
		ID: devClientID, Name: "Demo app", Public: true,
		RedirectURIs: []string{devRedirectURI}, PostLogoutRedirectURIs: []string{devLogoutURI},
	}); err != nil {
		return err
	}
	password := devPassword()
	u, err := adm.AddUser(ctx, admin.NewUser{Username: devUsername, Name: "Demo User", Email: "demo@example.com", EmailVerified: true, Password: password})
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n=== Development mode ===\nDemo client %q (public, PKCE) redirects to %s\n", devClientID, devRedirectURI)
	fmt.Fprintf(&b, "Demo user:  %s\nPassword:   %s\n\nAdd the TOTP secret to an authenticator app (scan the code or enter the URI):\n\n", u.Username, password)
	fmt.Fprint(e.stderr, b.String())
	if err := printQR(e.stderr, u.TOTPURI); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "\n%s\n\nThen open http://127.0.0.1:9000/ (the demo app) and sign in.\n========================\n\n", u.TOTPURI)
	return nil
}

// mailTransport is the outbox's way out: SMTP (--smtp-url, which needs
// --smtp-from), a directory of .eml files (--mail-dir), or none (nil: mail
// off). Both at once is a usage error.
func mailTransport(smtpURL, from, passwordFile, dir string) (mail.Transport, string, error) {
	switch {
	case smtpURL != "" && dir != "":
		return nil, "", usageError{"--smtp-url and --mail-dir: give one"}
	case smtpURL != "":
		if _, err := mail.FromAddress(from); err != nil {
			return nil, "", usageError{"--smtp-url needs --smtp-from, one plain address"}
		}
		password := ""
		if passwordFile != "" {
			b, err := os.ReadFile(passwordFile)
			if err != nil {
				return nil, "", fmt.Errorf("--smtp-password-file: %w", err)
			}
			password = strings.TrimRight(string(b), "\r\n")
		}
		t, err := mail.ParseSMTP(smtpURL, password)
		if err != nil {
			return nil, "", usageError{err.Error()}
		}
		return t, from, nil
	case dir != "":
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, "", fmt.Errorf("--mail-dir: %w", err)
		}
		if from == "" {
			from = "idp@localhost"
		}
		if _, err := mail.FromAddress(from); err != nil {
			return nil, "", usageError{"--smtp-from: one plain address"}
		}
		return mail.Dir{Path: dir}, from, nil
	}
	if passwordFile != "" || from != "" {
		return nil, "", usageError{"--smtp-from and --smtp-password-file go with --smtp-url"}
	}
	return nil, "", nil
}

// auditTrail writes the sender's audit events (mail_gave_up).
type auditTrail struct {
	st  storage.Store
	log *slog.Logger
}

func (a auditTrail) Event(ctx context.Context, typ, userID, username, clientID, detail string) {
	_ = audit.Append(ctx, a.st, a.log, storage.AuditEvent{Time: time.Now().UTC(), Type: typ, UserID: userID, Username: username,
		ClientID: clientID, ClientIP: "mail", Detail: detail})
}
