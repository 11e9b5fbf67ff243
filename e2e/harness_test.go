package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"
)

// idpBin is the binary under test, built once by TestMain.
var idpBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "idp-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	idpBin = filepath.Join(dir, "idp")
	buildArgs := []string{"build"}
	if cover := os.Getenv("IDP_E2E_COVERDIR"); cover != "" {
		// make cover: the binaries record which statements of op and
		// storage they ran into GOCOVERDIR, which every process the
		// tests start inherits.
		// The main packages are instrumented too: without them the
		// binaries write no coverage at all.
		buildArgs = append(buildArgs, "-cover", "-coverpkg=github.com/totp-idp/idp/op/...,github.com/totp-idp/idp/storage/...,github.com/totp-idp/idp/cmd/...")
		os.Setenv("GOCOVERDIR", cover)
	}
	build := exec.Command("go", append(buildArgs, "-o", idpBin, "../cmd/idp")...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build idp:", err)
		os.Exit(1)
	}
	// The example relying party, for the browser tests.
	brDemoRPBin = filepath.Join(dir, "demo-rp")
	buildRP := exec.Command("go", append(buildArgs, "-o", brDemoRPBin, "../cmd/demo-rp")...)
	buildRP.Stdout, buildRP.Stderr = os.Stdout, os.Stderr
	if err := buildRP.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build demo-rp:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Server is a running `idp serve` process.
type Server struct {
	t      testing.TB
	URL    string // issuer and base URL
	Addr   string // the address it listens on (URL's, unless --issuer names a proxy)
	DB     string
	args   []string
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
}

// fastPolicy are flags that keep lock durations short enough for tests.
var fastPolicy = []string{"--totp-lock", "2s", "--totp-lock-max", "8s", "--password-lock", "2s", "--password-lock-max", "8s"}

// StartServer starts idp serve on a fresh database in a temp dir.
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	return StartServerOn(t, filepath.Join(t.TempDir(), "idp.db"), args...)
}

// StartServerOn starts idp serve on db, listening on a free loopback port.
func StartServerOn(t testing.TB, db string, args ...string) *Server {
	t.Helper()
	if !isPostgresURL(db) {
		ensureKey(t, db) // a PostgreSQL database's key is PostgresDB's
	}
	s := &Server{t: t, DB: db, args: args}
	s.start("127.0.0.1:0")
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(listen string) {
	s.t.Helper()
	args := append([]string{"serve", "--db", s.DB, "--listen", listen, "--log-level", "warn"}, s.args...)
	cmd := exec.Command(idpBin, args...)
	cmd.Env = keyEnv(s.DB)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start idp: %v", err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	ready := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		re := regexp.MustCompile(`idp listening on (\S+) \(issuer (\S+)\)`)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.stderr.WriteString(line + "\n")
			s.mu.Unlock()
			if m := re.FindStringSubmatch(line); m != nil {
				ready <- [2]string{m[1], m[2]}
			}
		}
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	select {
	case m := <-ready:
		s.Addr, s.URL = m[0], m[1]
	case <-s.done:
		s.t.Fatalf("idp exited before listening:\n%s", s.Stderr())
	case <-time.After(20 * time.Second):
		s.t.Fatalf("idp did not start within 20 s:\n%s", s.Stderr())
	}
}

// Stderr is everything the server printed so far.
func (s *Server) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// Stop ends the server with SIGTERM (graceful) and waits.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Kill ends the server with SIGKILL, as a crash would.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts the server again on the same database and address.
func (s *Server) Restart() {
	s.t.Helper()
	s.start(s.Addr)
}

// CLI runs an idp subcommand against db with stdin and returns stdout.
func CLI(t testing.TB, db, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := CLIResult(db, stdin, args...)
	if err != nil {
		t.Fatalf("idp %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// ensureKey creates the secret key file DB.key, which idp uses when no
// --secret-key-file is given.
func ensureKey(t testing.TB, db string) {
	t.Helper()
	if _, err := os.Stat(db + ".key"); err == nil {
		return
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := os.WriteFile(db+".key", []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// CLIResult runs an idp subcommand and returns its output and error.
func CLIResult(db, stdin string, args ...string) (string, string, error) {
	cmd := exec.Command(idpBin, append(args, "--db", db)...)
	cmd.Env = keyEnv(db)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// User is a test account with its TOTP secret.
type User struct {
	ID, Name, Password string
	Key                *otp.Key
}

// Code is the TOTP code of the user at time t, computed independently of
// the server with pquerna/otp.
func (u User) Code(at time.Time) string {
	c, err := totp.GenerateCodeCustom(u.Key.Secret(), at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		panic(err)
	}
	return c
}

// AddUser creates a user through the CLI (name@example.com, unverified
// unless extra says "--email-verified"); extra are more `user add` flags.
func AddUser(t testing.TB, db, name, password string, extra ...string) User {
	t.Helper()
	out := CLI(t, db, password+"\n", append([]string{"user", "add", name, "--password-stdin", "--json", "--email", name + "@example.com", "--name", "User " + name}, extra...)...)
	var raw map[string]string
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("user add output %q: %v", out, err)
	}
	key, err := otp.NewKeyFromURL(raw["totp_uri"])
	if err != nil {
		t.Fatalf("totp uri %q: %v", raw["totp_uri"], err)
	}
	return User{ID: raw["id"], Name: raw["username"], Password: password, Key: key}
}

// Client is a registered relying party.
type Client struct {
	ID, Secret, RedirectURI string
}

// AddClient registers a confidential client through the CLI.
func AddClient(t testing.TB, db, id string, extra ...string) Client {
	t.Helper()
	redirect := "https://rp.example/cb/" + id
	args := append([]string{"client", "add", id, "--redirect-uri", redirect, "--post-logout-redirect-uri", "https://rp.example/bye", "--json"}, extra...)
	out := CLI(t, db, "", args...)
	var r struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("client add output %q: %v", out, err)
	}
	return Client{ID: r.ClientID, Secret: r.ClientSecret, RedirectURI: redirect}
}

// Browser is a cookie-keeping HTTP client that does not follow redirects,
// so tests see every hop.
type Browser struct {
	t      testing.TB
	Jar    http.CookieJar
	Client *http.Client
	UA     string // the User-Agent sent, when set
}

// NewBrowser returns a browser; localIP, when not empty, is the 127.0.0.x
// source address its connections are dialled from.
func NewBrowser(t testing.TB, localIP string) *Browser {
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{Timeout: 5 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &Browser{t: t, Jar: jar, Client: &http.Client{
		Jar: jar, Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Page is a fetched response with its body read.
type Page struct {
	Status   int
	Header   http.Header
	Body     string
	Location string
}

func (b *Browser) do(req *http.Request) Page {
	b.t.Helper()
	if b.UA != "" {
		req.Header.Set("User-Agent", b.UA)
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := Page{Status: resp.StatusCode, Header: resp.Header, Body: string(body), Location: resp.Header.Get("Location")}
	if p.Location != "" {
		if u, err := req.URL.Parse(p.Location); err == nil {
			p.Location = u.String()
		}
	}
	return p
}

// Get fetches u.
func (b *Browser) Get(u string) Page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// Post submits a form to u as a same-origin browser form would.
func (b *Browser) Post(u string, form url.Values) Page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.do(req)
}

var hiddenRe = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)

// Hidden returns the hidden form fields of an HTML page.
func Hidden(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(body, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

// Flow is one authorization request in progress.
type Flow struct {
	B        *Browser
	S        *Server
	C        Client
	State    string
	Nonce    string
	Verifier string
	LoginURL string // the provider's login page for this request
	Form     url.Values
}

// AuthParams are authorization request parameters; zero values get
// defaults (scope openid profile email, S256 PKCE, random state and nonce).
type AuthParams struct {
	Scope    string
	NoPKCE   bool
	NoNonce  bool
	Extra    url.Values
	Redirect string
}

// AuthorizeURL builds an authorization request for c.
func AuthorizeURL(s *Server, c Client, p AuthParams) (string, *Flow) {
	f := &Flow{S: s, C: c, State: randString(), Nonce: randString(), Verifier: randString() + randString()}
	q := url.Values{"client_id": {c.ID}, "response_type": {"code"}, "state": {f.State}}
	q.Set("redirect_uri", c.RedirectURI)
	if p.Redirect != "" {
		q.Set("redirect_uri", p.Redirect)
	}
	q.Set("scope", "openid profile email")
	if p.Scope != "" {
		q.Set("scope", p.Scope)
	}
	if !p.NoNonce {
		q.Set("nonce", f.Nonce)
	} else {
		f.Nonce = ""
	}
	if !p.NoPKCE {
		sum := sha256.Sum256([]byte(f.Verifier))
		q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
		q.Set("code_challenge_method", "S256")
	} else {
		f.Verifier = ""
	}
	for k, vs := range p.Extra {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	return s.URL + "/authorize?" + q.Encode(), f
}

// StartFlow sends the browser to /authorize and follows it to the login
// page, which must show the password form.
func (b *Browser) StartFlow(s *Server, c Client, p AuthParams) *Flow {
	b.t.Helper()
	u, f := AuthorizeURL(s, c, p)
	f.B = b
	r := b.Get(u)
	if r.Status != http.StatusFound || !strings.Contains(r.Location, "/login/") {
		b.t.Fatalf("authorize: want 302 to /login/, got %d %q\n%s", r.Status, r.Location, r.Body)
	}
	f.LoginURL = r.Location
	page := b.Get(f.LoginURL)
	if page.Status != http.StatusOK || !strings.Contains(page.Body, `autocomplete="current-password"`) {
		b.t.Fatalf("login page: want 200 password form, got %d\n%s", page.Status, page.Body)
	}
	f.Form = Hidden(page.Body)
	return f
}

// Password submits the password step.
func (f *Flow) Password(username, password string) Page {
	form := url.Values{"id": {f.Form.Get("id")}, "csrf": {f.Form.Get("csrf")}, "username": {username}, "password": {password}}
	return f.B.Post(f.S.URL+"/login/password", form)
}

// TOTP submits the second step.
func (f *Flow) TOTP(code string) Page {
	form := url.Values{"id": {f.Form.Get("id")}, "csrf": {f.Form.Get("csrf")}, "code": {code}}
	return f.B.Post(f.S.URL+"/login/totp", form)
}

// Follow follows redirects on the provider until one leaves it, and
// returns that final redirect's URL (the client's redirect URI).
func (f *Flow) Follow(p Page) string {
	f.B.t.Helper()
	for i := 0; i < 10; i++ {
		if p.Status < 300 || p.Status > 399 {
			f.B.t.Fatalf("expected a redirect, got %d\n%s", p.Status, p.Body)
		}
		if !strings.HasPrefix(p.Location, f.S.URL) {
			return p.Location
		}
		p = f.B.Get(p.Location)
	}
	f.B.t.Fatal("too many redirects")
	return ""
}

// Login runs password and TOTP for u and returns the authorization code
// from the redirect to the client.
func (f *Flow) Login(u User) string {
	f.B.t.Helper()
	p := f.Password(u.Name, u.Password)
	if p.Status != http.StatusSeeOther {
		f.B.t.Fatalf("password step: want 303, got %d\n%s", p.Status, p.Body)
	}
	page := f.B.Get(p.Location)
	if !strings.Contains(page.Body, `autocomplete="one-time-code"`) {
		f.B.t.Fatalf("want TOTP form, got %d\n%s", page.Status, page.Body)
	}
	f.Form = Hidden(page.Body)
	return f.CodeFrom(f.Follow(f.TOTP(u.Code(time.Now()))))
}

// CodeFrom checks the redirect's state and returns its code.
func (f *Flow) CodeFrom(redirect string) string {
	f.B.t.Helper()
	u, err := url.Parse(redirect)
	if err != nil {
		f.B.t.Fatal(err)
	}
	q := u.Query()
	if q.Get("error") != "" {
		f.B.t.Fatalf("authorization error: %s %s", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != f.State {
		f.B.t.Fatalf("state: got %q want %q", q.Get("state"), f.State)
	}
	if q.Get("code") == "" {
		f.B.t.Fatalf("no code in %s", redirect)
	}
	return q.Get("code")
}

// RP is an independent relying party (coreos/go-oidc + x/oauth2).
type RP struct {
	Provider *oidc.Provider
	Config   oauth2.Config
	Verifier *oidc.IDTokenVerifier
}

// NewRP discovers s and returns a relying party for c.
func NewRP(t testing.TB, s *Server, c Client) *RP {
	t.Helper()
	p, err := oidc.NewProvider(context.Background(), s.URL)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return &RP{
		Provider: p,
		Config: oauth2.Config{ClientID: c.ID, ClientSecret: c.Secret, Endpoint: p.Endpoint(),
			RedirectURL: c.RedirectURI, Scopes: []string{oidc.ScopeOpenID, "profile", "email"}},
		Verifier: p.Verifier(&oidc.Config{ClientID: c.ID}),
	}
}

// Exchange redeems code with the flow's PKCE verifier.
func (rp *RP) Exchange(f *Flow, code string) (*oauth2.Token, error) {
	var opts []oauth2.AuthCodeOption
	if f.Verifier != "" {
		opts = append(opts, oauth2.VerifierOption(f.Verifier))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rp.Config.Exchange(ctx, code, opts...)
}

// IDClaims are the ID token claims the tests look at.
type IDClaims struct {
	Sub      string   `json:"sub"`
	Iss      string   `json:"iss"`
	Aud      any      `json:"aud"`
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
	AuthTime int64    `json:"auth_time"`
	Nonce    string   `json:"nonce"`
	AMR      []string `json:"amr"`
	ACR      string   `json:"acr"`
	AZP      string   `json:"azp"`
	Name     string   `json:"name"`
	Email    string   `json:"email"`
	PrefUser string   `json:"preferred_username"`
}

// VerifyID verifies the token's ID token (signature via JWKS, iss, aud,
// exp) and the flow's nonce, and returns its claims.
func (rp *RP) VerifyID(t testing.TB, tok *oauth2.Token, f *Flow) IDClaims {
	t.Helper()
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		t.Fatal("no id_token in token response")
	}
	idt, err := rp.Verifier.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("verify id_token: %v", err)
	}
	if f != nil && idt.Nonce != f.Nonce {
		t.Fatalf("nonce: got %q want %q", idt.Nonce, f.Nonce)
	}
	var c IDClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

func randString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
