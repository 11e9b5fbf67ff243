// Command demo-rp is a small example OpenID Connect relying party used to
// test logins against the identity provider.
//
// It logs in with the authorization code flow (PKCE S256, nonce and state),
// verifies the ID token and shows its claims. Every flag can also be given
// through an environment variable DEMO_RP_<FLAG> (upper case, dashes
// replaced by underscores), e.g. DEMO_RP_CLIENT_SECRET. Command-line flags
// take precedence over environment variables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// config is the relying party configuration.
type config struct {
	Issuer       string
	ClientID     string
	ClientSecret string // empty: public client
	Listen       string
	BaseURL      string // externally visible origin, without trailing slash
	Scopes       []string
}

const defaultScopes = "openid profile email offline_access"

// envName returns the environment variable that backs a flag.
func envName(flagName string) string {
	return "DEMO_RP_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseConfig parses flags, falling back to environment variables (read via
// getenv) and then to the built-in defaults.
func parseConfig(args []string, getenv func(string) string, output io.Writer) (config, error) {
	fs := flag.NewFlagSet("demo-rp", flag.ContinueOnError)
	fs.SetOutput(output)

	str := func(name, def, usage string) *string {
		if v := getenv(envName(name)); v != "" {
			def = v
		}
		return fs.String(name, def, usage+" (env "+envName(name)+")")
	}
	issuer := str("issuer", "http://127.0.0.1:8080", "OpenID provider issuer URL")
	clientID := str("client-id", "demo", "OAuth client ID")
	// The secret's default is deliberately not shown in -help output.
	secret := fs.String("client-secret", "", "OAuth client secret; empty means public client, otherwise client_secret_basic is used (env "+envName("client-secret")+", preferred over the flag)")
	listen := str("listen", "127.0.0.1:9000", "address to listen on")
	baseURL := str("base-url", "", "externally visible base URL (default http://<listen>)")
	scopes := str("scopes", defaultScopes, "space-separated scopes to request")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: demo-rp [flags]\n\nExample OpenID Connect relying party for testing logins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["client-secret"] {
		*secret = getenv(envName("client-secret"))
	}

	cfg := config{
		Issuer:       strings.TrimSpace(*issuer),
		ClientID:     strings.TrimSpace(*clientID),
		ClientSecret: *secret,
		Listen:       strings.TrimSpace(*listen),
		BaseURL:      strings.TrimSpace(*baseURL),
		Scopes:       parseScopes(*scopes),
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = defaultBaseURL(cfg.Listen)
	}
	if err := cfg.validate(); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// parseScopes splits a scope list on spaces or commas and makes sure
// "openid" is requested.
func parseScopes(s string) []string {
	scopes := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' })
	var out []string
	for _, sc := range scopes {
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if !slices.Contains(out, "openid") {
		out = append([]string{"openid"}, out...)
	}
	return out
}

// defaultBaseURL derives http://<listen>, replacing an empty or wildcard
// host with localhost so that the result is usable in a browser.
func defaultBaseURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func (c *config) validate() error {
	iss, err := url.Parse(c.Issuer)
	if err != nil || (iss.Scheme != "http" && iss.Scheme != "https") || iss.Host == "" {
		return fmt.Errorf("--issuer must be an absolute http(s) URL, got %q", c.Issuer)
	}
	if c.ClientID == "" {
		return errors.New("--client-id must not be empty")
	}
	if c.Listen == "" {
		return errors.New("--listen must not be empty")
	}
	c.BaseURL = strings.TrimSuffix(c.BaseURL, "/")
	base, err := url.Parse(c.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("--base-url must be an absolute http(s) URL, got %q", c.BaseURL)
	}
	if base.Path != "" || base.RawQuery != "" || base.Fragment != "" || base.User != nil {
		return fmt.Errorf("--base-url must be an origin without path, query or credentials (the RP is served at /), got %q", c.BaseURL)
	}
	return nil
}

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-rp:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, logger, os.Stdout); err != nil {
		logger.Error("demo RP stopped with error", "err", err)
		os.Exit(1)
	}
}

// run serves the relying party until ctx is cancelled, then shuts down
// gracefully.
func run(ctx context.Context, cfg config, logger *slog.Logger, stdout io.Writer) error {
	a, err := newApp(cfg, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// Long enough for discovery plus a token exchange with the provider.
		WriteTimeout:   45 * time.Second,
		IdleTimeout:    60 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "demo RP listening on %s (issuer %s, client %s)\n", cfg.BaseURL, cfg.Issuer, cfg.ClientID)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
