package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// ---------------------------------------------------------------------------
// Fake OpenID provider
// ---------------------------------------------------------------------------

var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

const (
	testSub      = "user-123"
	testName     = `Alice <b>Admin</b>`
	testEmail    = "alice@example.test"
	testACR      = "urn:totp-idp:acr:mfa"
	testClientID = "demo"
)

type codeGrant struct {
	clientID    string
	redirectURI string
	challenge   string
	method      string
	nonce       string
	used        bool
}

// fakeOP is a minimal OpenID provider: discovery, JWKS, authorize (which
// immediately redirects back with a code), token (authorization_code with
// PKCE S256 checks, and refresh_token) and end_session.
type fakeOP struct {
	t   *testing.T
	srv *httptest.Server
	key *rsa.PrivateKey
	kid string

	// Expected client authentication; empty secret means public client.
	clientSecret string

	mu sync.Mutex
	// Behaviour switches.
	down       bool     // discovery answers 503
	wrongNonce bool     // ID token carries a different nonce
	badAtHash  bool     // at_hash does not match the access token
	amr        []string // amr claim of issued ID tokens
	// Recorded traffic.
	discoveryHits  int
	authReqs       []url.Values
	tokenReqs      []url.Values
	tokenAuth      []string // Authorization headers seen at the token endpoint
	endSessionReqs []url.Values
	// Issued artefacts.
	codes         map[string]*codeGrant
	refreshTokens map[string]bool
	idTokens      []string
	secrets       []string // every code/token issued, to check nothing leaks to logs
	authTime      time.Time
}

func newFakeOP(t *testing.T) *fakeOP {
	t.Helper()
	op := &fakeOP{
		t:             t,
		key:           testKey(),
		kid:           "test-key-1",
		amr:           []string{"pwd", "otp", "mfa"},
		codes:         map[string]*codeGrant{},
		refreshTokens: map[string]bool{},
		authTime:      time.Now().Add(-30 * time.Second).Truncate(time.Second),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", op.discovery)
	mux.HandleFunc("GET /jwks", op.jwks)
	mux.HandleFunc("GET /authorize", op.authorize)
	mux.HandleFunc("POST /token", op.token)
	mux.HandleFunc("GET /end_session", op.endSession)
	op.srv = httptest.NewServer(mux) // listens on 127.0.0.1
	t.Cleanup(op.srv.Close)
	return op
}

func (op *fakeOP) set(fn func(op *fakeOP)) {
	op.mu.Lock()
	defer op.mu.Unlock()
	fn(op)
}

func (op *fakeOP) snapshot() fakeOPSnapshot {
	op.mu.Lock()
	defer op.mu.Unlock()
	return fakeOPSnapshot{
		discoveryHits:  op.discoveryHits,
		authReqs:       append([]url.Values(nil), op.authReqs...),
		tokenReqs:      append([]url.Values(nil), op.tokenReqs...),
		tokenAuth:      append([]string(nil), op.tokenAuth...),
		endSessionReqs: append([]url.Values(nil), op.endSessionReqs...),
		idTokens:       append([]string(nil), op.idTokens...),
		secrets:        append([]string(nil), op.secrets...),
	}
}

type fakeOPSnapshot struct {
	discoveryHits  int
	authReqs       []url.Values
	tokenReqs      []url.Values
	tokenAuth      []string
	endSessionReqs []url.Values
	idTokens       []string
	secrets        []string
}

func (op *fakeOP) discovery(w http.ResponseWriter, r *http.Request) {
	op.mu.Lock()
	op.discoveryHits++
	down := op.down
	op.mu.Unlock()
	if down {
		http.Error(w, "starting up", http.StatusServiceUnavailable)
		return
	}
	iss := op.srv.URL
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                         iss,
		"authorization_endpoint":                         iss + "/authorize",
		"token_endpoint":                                 iss + "/token",
		"jwks_uri":                                       iss + "/jwks",
		"end_session_endpoint":                           iss + "/end_session",
		"response_types_supported":                       []string{"code"},
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{"RS256"},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"none", "client_secret_basic"},
		"authorization_response_iss_parameter_supported": true,
	})
}

func (op *fakeOP) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &op.key.PublicKey, KeyID: op.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}})
}

func (op *fakeOP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	op.mu.Lock()
	op.authReqs = append(op.authReqs, q)
	op.mu.Unlock()
	if q.Get("response_type") != "code" || q.Get("client_id") != testClientID || q.Get("redirect_uri") == "" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	code := "code-" + rand.Text()
	op.mu.Lock()
	op.codes[code] = &codeGrant{
		clientID:    q.Get("client_id"),
		redirectURI: q.Get("redirect_uri"),
		challenge:   q.Get("code_challenge"),
		method:      q.Get("code_challenge_method"),
		nonce:       q.Get("nonce"),
	}
	op.secrets = append(op.secrets, code)
	op.mu.Unlock()
	rq := redirect.Query()
	rq.Set("code", code)
	rq.Set("state", q.Get("state"))
	rq.Set("iss", op.srv.URL)
	redirect.RawQuery = rq.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func tokenError(w http.ResponseWriter, code, desc string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
}

func (op *fakeOP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, "invalid_request", "bad form")
		return
	}
	form := r.PostForm
	op.mu.Lock()
	defer op.mu.Unlock()
	op.tokenReqs = append(op.tokenReqs, form)
	op.tokenAuth = append(op.tokenAuth, r.Header.Get("Authorization"))

	// Client authentication.
	if op.clientSecret != "" {
		// RFC 6749 2.3.1: credentials are form-urlencoded before Basic.
		id, secret, ok := r.BasicAuth()
		id, err1 := url.QueryUnescape(id)
		secret, err2 := url.QueryUnescape(secret)
		if !ok || err1 != nil || err2 != nil || id != testClientID || secret != op.clientSecret || form.Has("client_secret") {
			w.Header().Set("WWW-Authenticate", "Basic")
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
			return
		}
	} else if form.Get("client_id") != testClientID || r.Header.Get("Authorization") != "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}

	switch form.Get("grant_type") {
	case "authorization_code":
		g, ok := op.codes[form.Get("code")]
		if !ok || g.used {
			tokenError(w, "invalid_grant", "unknown or used code")
			return
		}
		g.used = true
		if form.Get("redirect_uri") != g.redirectURI {
			tokenError(w, "invalid_grant", "redirect_uri mismatch")
			return
		}
		if g.method != "S256" || g.challenge == "" {
			tokenError(w, "invalid_grant", "PKCE S256 required")
			return
		}
		sum := sha256.Sum256([]byte(form.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			tokenError(w, "invalid_grant", "PKCE verification failed")
			return
		}
		nonce := g.nonce
		if op.wrongNonce {
			nonce = "not-the-nonce-you-sent"
		}
		op.issueLocked(w, nonce)
	case "refresh_token":
		rt := form.Get("refresh_token")
		if !op.refreshTokens[rt] {
			tokenError(w, "invalid_grant", "unknown refresh token")
			return
		}
		delete(op.refreshTokens, rt) // rotate
		op.issueLocked(w, "")
	default:
		tokenError(w, "unsupported_grant_type", "")
	}
}

func (op *fakeOP) issueLocked(w http.ResponseWriter, nonce string) {
	access := "at-" + rand.Text()
	refresh := "rt-" + rand.Text()
	op.refreshTokens[refresh] = true
	atHashInput := access
	if op.badAtHash {
		atHashInput = "some other access token"
	}
	sum := sha256.Sum256([]byte(atHashInput))
	now := time.Now()
	claims := map[string]any{
		"iss":            op.srv.URL,
		"sub":            testSub,
		"aud":            testClientID,
		"exp":            now.Add(5 * time.Minute).Unix(),
		"iat":            now.Unix(),
		"auth_time":      op.authTime.Unix(),
		"amr":            op.amr,
		"acr":            testACR,
		"name":           testName,
		"email":          testEmail,
		"email_verified": true,
		"at_hash":        base64.RawURLEncoding.EncodeToString(sum[:16]),
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	idToken := op.sign(claims)
	op.idTokens = append(op.idTokens, idToken)
	op.secrets = append(op.secrets, access, refresh, idToken)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token":  access,
		"token_type":    "Bearer",
		"expires_in":    300,
		"refresh_token": refresh,
		"id_token":      idToken,
		"scope":         "openid profile email offline_access",
	})
}

func (op *fakeOP) sign(claims map[string]any) string {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: op.key, KeyID: op.kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		op.t.Errorf("signer: %v", err)
		return ""
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		op.t.Errorf("sign: %v", err)
		return ""
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		op.t.Errorf("serialize: %v", err)
	}
	return s
}

func (op *fakeOP) endSession(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	op.mu.Lock()
	op.endSessionReqs = append(op.endSessionReqs, q)
	op.mu.Unlock()
	back, err := url.Parse(q.Get("post_logout_redirect_uri"))
	if err != nil || back.String() == "" {
		io.WriteString(w, "logged out")
		return
	}
	bq := back.Query()
	bq.Set("state", q.Get("state"))
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ---------------------------------------------------------------------------
// RP under test and a cookie-keeping browser that does not follow redirects
// ---------------------------------------------------------------------------

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testRP struct {
	app  *app
	srv  *httptest.Server
	url  string
	logs *lockedBuffer
}

func newTestRP(t *testing.T, issuer string, mutate ...func(*config)) *testRP {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil) // listener on 127.0.0.1 already bound
	base := "http://" + srv.Listener.Addr().String()
	cfg := config{
		Issuer:   issuer,
		ClientID: testClientID,
		Listen:   srv.Listener.Addr().String(),
		BaseURL:  base,
		Scopes:   parseScopes(defaultScopes),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	logs := &lockedBuffer{}
	a, err := newApp(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	a.discoveryTimeout = 2 * time.Second
	srv.Config.Handler = a.routes()
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("RP logs:\n%s", logs.String())
		}
	})
	return &testRP{app: a, srv: srv, url: base, logs: logs}
}

type browser struct {
	t      *testing.T
	client *http.Client
}

type response struct {
	status int
	header http.Header
	body   string
	loc    string
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, client: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(req *http.Request) response {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(body), loc: resp.Header.Get("Location")}
}

func (b *browser) get(u string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

func (b *browser) cookie(rawURL, name string) *http.Cookie {
	u, _ := url.Parse(rawURL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func mustStatus(t *testing.T, what string, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: status %d, want %d; body:\n%s", what, r.status, want, r.body)
	}
}

// resolve makes a Location header absolute against base.
func resolve(t *testing.T, base, loc string) string {
	t.Helper()
	b, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	l, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return b.ResolveReference(l).String()
}

// startLogin runs GET /login and the provider's authorize step, and returns
// the callback URL the provider redirected to (not yet visited).
func startLogin(t *testing.T, b *browser, rp *testRP, op *fakeOP) string {
	t.Helper()
	r := b.get(rp.url + "/login")
	mustStatus(t, "GET /login", r, http.StatusFound)
	if !strings.HasPrefix(r.loc, op.srv.URL+"/authorize?") {
		t.Fatalf("login redirected to %q, want the provider's authorization endpoint", r.loc)
	}
	r = b.get(r.loc)
	mustStatus(t, "GET /authorize", r, http.StatusFound)
	if !strings.HasPrefix(r.loc, rp.url+"/callback?") {
		t.Fatalf("provider redirected to %q, want the RP callback", r.loc)
	}
	return r.loc
}

// login performs a complete login and returns the home page after it.
func login(t *testing.T, b *browser, rp *testRP, op *fakeOP) response {
	t.Helper()
	cb := startLogin(t, b, rp, op)
	r := b.get(cb)
	mustStatus(t, "GET /callback", r, http.StatusSeeOther)
	if r.loc != "/" {
		t.Fatalf("callback redirected to %q, want /", r.loc)
	}
	home := b.get(rp.url + "/")
	mustStatus(t, "GET / after login", home, http.StatusOK)
	return home
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfToken(t *testing.T, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in page:\n%s", page)
	}
	return m[1]
}

func assertLoggedOut(t *testing.T, b *browser, rp *testRP) {
	t.Helper()
	home := b.get(rp.url + "/")
	mustStatus(t, "GET /", home, http.StatusOK)
	if !strings.Contains(home.body, `href="/login"`) || strings.Contains(home.body, "Logged in") {
		t.Fatalf("expected logged-out home page, got:\n%s", home.body)
	}
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

func TestFullLoginShowsClaims(t *testing.T) {
	op := newFakeOP(t)
	rp := newTestRP(t, op.srv.URL)
	b := newBrowser(t)

	assertLoggedOut(t, b, rp)

	// /login sets a HttpOnly, SameSite=Lax flow cookie and asks for the
	// configured scopes.
	r := b.get(rp.url + "/login")
	mustStatus(t, "GET /login", r, http.StatusFound)
	var flowSetCookie string
	for _, sc := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, flowCookie+"=") {
			flowSetCookie = sc
		}
	}
	for _, attr := range []string{"HttpOnly", "SameSite=Lax", "Max-Age=600", "Path=/"} {
		if !strings.Contains(flowSetCookie, attr) {
			t.Errorf("flow cookie %q lacks %s", flowSetCookie, attr)
		}
	}
	authURL, _ := url.Parse(r.loc)
	aq := authURL.Query()
	if got := aq.Get("scope"); got != "openid profile email offline_access" {
		t.Errorf("scope = %q", got)
	}
	if got := aq.Get("redirect_uri"); got != rp.url+"/callback" {
		t.Errorf("redirect_uri = %q, want %q", got, rp.url+"/callback")
	}
	if aq.Get("state") == "" || aq.Get("nonce") == "" || aq.Get("state") == aq.Get("nonce") {
		t.Errorf("state %q and nonce %q must be present and distinct", aq.Get("state"), aq.Get("nonce"))
	}

	cbResp := b.get(r.loc)
	mustStatus(t, "authorize", cbResp, http.StatusFound)
	cb := b.get(cbResp.loc)
	mustStatus(t, "callback", cb, http.StatusSeeOther)
	if c := b.cookie(rp.url, sessionCookie); c == nil || c.Value == "" {
		t.Fatal("no session cookie after successful callback")
	}
	if c := b.cookie(rp.url, flowCookie); c != nil {
		t.Errorf("flow cookie still set after callback: %v", c)
	}

	home := b.get(rp.url + "/")
	mustStatus(t, "home", home, http.StatusOK)
	body := home.body
	wantAuthTime := op.authTime.UTC().Format("2006-01-02 15:04:05 UTC")
	for _, want := range []string{
		"Logged in",
		testSub,
		html.EscapeString(testName),
		testEmail,
		`<code class="chip">pwd</code>`,
		`<code class="chip">otp</code>`,
		`<code class="chip">mfa</code>`,
		"Two-factor: yes",
		"amr: otp",
		"amr: mfa",
		testACR,
		wantAuthTime,
		op.srv.URL, // iss
		`<code class="chip">demo</code>`,
		"RS256",
		"Refresh tokens",
		"Log out",
		`&#34;amr&#34;: [`, // raw JSON, pretty-printed and escaped
	} {
		if !strings.Contains(body, want) {
			t.Errorf("home page lacks %q", want)
		}
	}
	if strings.Contains(body, "<b>Admin</b>") {
		t.Error("name claim was not HTML-escaped")
	}
	// Tokens are never rendered.
	snap := op.snapshot()
	for _, secret := range snap.secrets {
		if strings.Contains(body, secret) {
			t.Errorf("home page contains an issued code/token")
		}
	}
	// ...and never logged, nor are state and nonce.
	logs := rp.logs.String()
	for _, secret := range append(snap.secrets, aq.Get("state"), aq.Get("nonce")) {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain a secret value (%.12s…)", secret)
		}
	}
	if !strings.Contains(logs, "login completed") {
		t.Errorf("expected a 'login completed' log line, logs:\n%s", logs)
	}
	// Public client: client_id in the body, no Authorization header.
	if snap.tokenAuth[0] != "" || snap.tokenReqs[0].Get("client_id") != testClientID {
		t.Errorf("public client auth: header %q, client_id %q", snap.tokenAuth[0], snap.tokenReqs[0].Get("client_id"))
	}
}

func TestTwoFactorBadgeWithoutOTP(t *testing.T) {
	op := newFakeOP(t)
	op.set(func(op *fakeOP) { op.amr = []string{"pwd"} })
	rp := newTestRP(t, op.srv.URL)
	home := login(t, newBrowser(t), rp, op)
	for _, want := range []string{"Two-factor: no", "no otp in amr", "no mfa in amr"} {
		if !strings.Contains(home.body, want) {
			t.Errorf("home page lacks %q", want)
		}
	}
	if strings.Contains(home.body, "Two-factor: yes") {
		t.Error("password-only login shown as two-factor")
	}
}

func TestPKCEIsS256AndMatchesVerifier(t *testing.T) {
	op := newFakeOP(t)
	rp := newTestRP(t, op.srv.URL)
	login(t, newBrowser(t), rp, op)

	snap := op.snapshot()
	if len(snap.authReqs) != 1 || len(snap.tokenReqs) != 1 {
		t.Fatalf("got %d authorize and %d token requests, want 1 each", len(snap.authReqs), len(snap.tokenReqs))
	}
	auth, tok := snap.authReqs[0], snap.tokenReqs[0]
	if m := auth.Get("code_challenge_method"); m != "S256" {
		t.Fatalf("code_challenge_method = %q, want S256", m)
	}
	if auth.Has("code_verifier") {
		t.Fatal("verifier leaked into the authorization request")
	}
	verifier := tok.Get("code_verifier")
	if len(verifier) < 43 || len(verifier) > 128 || !regexp.MustCompile(`^[A-Za-z0-9._~-]+$`).MatchString(verifier) {
		t.Fatalf("code_verifier %q is not a valid RFC 7636 verifier", verifier)
	}
	sum := sha256.Sum256([]byte(verifier))
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); auth.Get("code_challenge") != want {
		t.Fatalf("code_challenge %q != BASE64URL(SHA256(verifier)) %q", auth.Get("code_challenge"), want)
	}
	if auth.Get("code_challenge") == verifier {
		t.Fatal("challenge equals verifier (plain method)")
	}
	if tok.Get("grant_type") != "authorization_code" || tok.Get("redirect_uri") != rp.url+"/callback" {
		t.Errorf("token request: grant_type %q redirect_uri %q", tok.Get("grant_type"), tok.Get("redirect_uri"))
	}
}

func TestCallbackWrongStateRefused(t *testing.T) {
	op := newFakeOP(t)
	rp := newTestRP(t, op.srv.URL)
	b := newBrowser(t)

	cb := startLogin(t, b, rp, op)
	u, _ := url.Parse(cb)
	q := u.Query()
	q.Set("state", "attacker-chosen-state")
	u.RawQuery = q.Encode()

	r := b.get(u.String())
	if r.status < 400 || r.status > 499 {
		t.Fatalf("wrong state: status %d, want 4xx", r.status)
	}
	if !strings.Contains(r.body, "State mismatch") {
		t.Errorf("error page does not explain the state mismatch:\n%s", r.body)
	}
	if c := b.cookie(rp.url, sessionCookie); c != nil {
		t.Errorf("session cookie set despite wrong state: %v", c)
	}
	if n := rp.app.sessions.len(); n != 0 {
		t.Errorf("%d sessions stored, want 0", n)
	}
	if n := len(op.snapshot().tokenReqs); n != 0 {
		t.Errorf("RP redeemed the code %d times despite the wrong state", n)
	}
	assertLoggedOut(t, b, rp)

	// The flow was consumed: even the genuine response is refused now.
	r = b.get(cb)
	if r.status != http.StatusBadRequest {
		t.Errorf("genuine callback after a refused one: status %d, want 400", r.status)
	}
}

// TestCallbackIssuerChecked: RFC 9207 §2.4. A response naming another
// issuer, or without iss from a provider that sends it, is refused before
// the code is redeemed.
func TestCallbackIssuerChecked(t *testing.T) {
	op := newFakeOP(t)
	rp := newTestRP(t, op.srv.URL)
	for name, iss := range map[string][]string{"another issuer": {"https://evil.example"}, "no iss": nil, "two iss": {op.srv.URL, "https://evil.example"}} {
		b := newBrowser(t)
		u, _ := url.Parse(startLogin(t, b, rp, op))
		q := u.Query()
		q.Del("iss")
		for _, v := range iss {
			q.Add("iss", v)
		}
		u.RawQuery = q.Encode()
		r := b.get(u.String())
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Issuer mismatch") {
			t.Errorf("%s: status %d, want 400 with the issuer mismatch page", name, r.status)
		}
		if c := b.cookie(rp.url, sessionCookie); c != nil {
			t.Errorf("%s: session cookie set", name)
		}
	}
	if n := len(op.snapshot().tokenReqs); n != 0 {
		t.Errorf("RP redeemed %d codes of refused responses", n)
	}
	// The genuine response still signs in.
	login(t, newBrowser(t), rp, op)
}

func TestWrongNonceRefused(t *testing.T) {
	op := newFakeOP(t)
	op.set(func(op *fakeOP) { op.wrongNonce = true })
	rp := newTestRP(t, op.srv.URL)
	b := newBrowser(t)

	r := b.get(startLogin(t, b, rp, op))
	if r.status < 400 || r.status > 499 {
		t.Fatalf("wrong nonce: status %d, want 4xx", r.status)
	}
	if !strings.Contains(r.body, "ID token rejected") || !strings.Contains(r.body, "nonce") {
		t.Errorf("error page does not mention the nonce:\n%s", r.body)
	}
	if len(op.snapshot().tokenReqs) != 1 {
		t.Error("expected the code to have been exchanged once")
	}
	if c := b.cookie(rp.url, sessionCookie); c != nil {
		t.Errorf("session cookie set despite wrong nonce")
	}
	if n := rp.app.sessions.len(); n != 0 {
		t.Errorf("%d sessions stored, want 0", n)
	}
	assertLoggedOut(t, b, rp)
}

func TestAtHashMismatchRefused(t *testing.T) {
	op := newFakeOP(t)
	op.set(func(op *fakeOP) { op.badAtHash = true })
	rp := newTestRP(t, op.srv.URL)
	b := newBrowser(t)

	r := b.get(startLogin(t, b, rp, op))
	mustStatus(t, "callback with bad at_hash", r, http.StatusUnauthorized)
	if !strings.Contains(r.body, "at_hash") {
		t.Errorf("error page does not mention at_hash:\n%s", r.body)
	}
	if n := rp.app.sessions.len(); n != 0 {
		t.Errorf("%d sessions stored, want 0", n)
	}
}

func TestReplayedCallbackRefused(t *testing.T) {
	op := newFakeOP(t)
	rp := newTestRP(t, op.srv.URL)
	b := newBrowser(t)

	cb := startLogin(t, b, rp, op)
	flow := b.cookie(rp.url, flowCookie)
	if flow == nil {
		t.Fatal("no flow cookie after /login")
	}
	r := b.get(cb)
	mustStatus(t, "first callback", r, http.StatusSeeOther)

	// Same browser: the flow cookie is gone.
	r = b.get(cb)
	mustStatus(t, "replayed callback (same browser)", r, http.StatusBadRequest)

	// An attacker who also replays the old flow cookie: the server-side flow
	// was consumed by the first callback.
	attacker := newBrowser(t)
	req, _ := http.NewRequest(http.MethodGet, cb, nil)
	req.AddCookie(&http.Cookie{Name: flowCookie, Value: flow.Value})
	r = attacker.do(req)
	mustStatus(t, "replayed callback with old flow cookie", r, http.StatusBadRequest)
	if !strings.Contains(r.body, "already used") {
		t.Errorf("replay page does not say the login was already used:\n%s", r.body)
	}
	if c := attacker.cookie(rp.url, sessionCookie); c != nil {
		t.Error("replayed callback created a session")
	}
	if n := len(op.snapshot().tokenReqs); n != 1 {
		t.Errorf("token endpoint called %d times, want exactly 1", n)
	}
	if n := rp.app.sessions.len(); n != 1 {
		t.Errorf("%d sessions stored, want 1 (the original login)", n)
	}
}

func TestProviderErrorShownEscaped(t *testing.T) {
	op := newFakeOP(t)
	rp := newTestRP(t, op.srv.URL)
	b := newBrowser(t)

	r := b.get(rp.url + "/login")
	mustStatus(t, "login", r, http.StatusFound)
	au, _ := url.Parse(r.loc)
	q := url.Values{
		"error":             {"access_denied"},
		"error_description": {"<script>alert(1)</script> user said no"},
		"state":             {au.Query().Get("state")},
	}
	r = b.get(rp.url + "/callback?" + q.Encode())
	mustStatus(t, "error callback", r, http.StatusBadRequest)
	for _, want := range []string{"The provider returned an error", "access_denied", "&lt;script&gt;alert(1)&lt;/script&gt; user said no"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("error page lacks %q:\n%s", want, r.body)
		}
	}
	if strings.Contains(r.body, "<script>") {
		t.Error("error_description not escaped")
	}
	if strings.Contains(r.body, "may be stale or forged") {
		t.Error("state matched but page claims it did not")
	}
	if len(op.snapshot().tokenReqs) != 0 {
		t.Error("token endpoint called for an error response")
	}
	assertLoggedOut(t, b, rp)
}

func TestProviderDown(t *testing.T) {
	// A port on 127.0.0.1 that nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	ln.Close()

	rp := newTestRP(t, issuer)
	b := newBrowser(t)

	r := b.get(rp.url + "/login")
	mustStatus(t, "login with provider down", r, http.StatusBadGateway)
	if !strings.Contains(r.body, "Provider not reachable at "+issuer) {
		t.Errorf("502 page lacks the friendly message:\n%s", r.body)
	}
	if r.header.Get("Content-Security-Policy") == "" {
		t.Error("502 page lacks security headers")
	}
	if c := b.cookie(rp.url, flowCookie); c != nil {
		t.Error("flow cookie set although the provider is down")
	}
	// The rest of the app still works.
	mustStatus(t, "home with provider down", b.get(rp.url+"/"), http.StatusOK)
	mustStatus(t, "healthz with provider down", b.get(rp.url+"/healthz"), http.StatusOK)
}

func TestDiscoveryRetriedUntilProviderUp(t *testing.T) {
	op := newFakeOP(t)
	op.set(func(op *fakeOP) { op.down = true })
	rp := newTestRP(t, op.srv.URL)
	b := newBrowser(t)

	if n := op.snapshot().discoveryHits; n != 0 {
		t.Fatalf("discovery ran %d times before any request; it must be lazy", n)
	}
	r := b.get(rp.url + "/login")
	mustStatus(t, "login while provider starting", r, http.StatusBadGateway)
	if !strings.Contains(r.body, "Provider not reachable at "+op.srv.URL) {
		t.Errorf("502 page lacks the friendly message:\n%s", r.body)
	}

	op.set(func(op *fakeOP) { op.down = false })
	home := login(t, b, rp, op)
	if !strings.Contains(home.body, "Two-factor: yes") {
		t.Error("login after provider came up did not show claims")
	}
	hits := op.snapshot().discoveryHits
	if hits != 2 {
		t.Errorf("discovery hits = %d, want 2 (one failure, one success)", hits)
	}
	// Success is cached: further logins do not rediscover.
	login(t, newBrowser(t), rp, op)
	if n := op.snapshot().discoveryHits; n != hits {
		t.Errorf("discovery repeated after success (%d -> %d)", hits, n)
	}
}

func TestConcurrentDiscovery(t *testing.T) {
	op := newFakeOP(t)
	rp := newTestRP(t, op.srv.URL)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := c.Get(rp.url + "/login")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if n := op.snapshot().discoveryHits; n < 1 || n > 8 {
		t.Errorf("discovery hits = %d", n)
	}
	if n := rp.app.flows.len(); n != 8 {
		t.Errorf("%d flows stored, want 8", n)
	}
}

func TestLogoutRedirectsToEndSession(t *testing.T) {
	op := newFakeOP(t)
	rp := newTestRP(t, op.srv.URL)
	b := newBrowser(t)
	home := login(t, b, rp, op)
	csrf := csrfToken(t, home.body)

	// Without the form token the request is refused and the session kept.
	r := b.post(rp.url+"/logout", url.Values{})
	mustStatus(t, "logout without CSRF token", r, http.StatusForbidden)
	if rp.app.sessions.len() != 1 {
		t.Fatal("session deleted by a request without CSRF token")
	}

	r = b.post(rp.url+"/logout", url.Values{"csrf": {csrf}})
	mustStatus(t, "logout", r, http.StatusSeeOther)
	u, err := url.Parse(r.loc)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != op.srv.URL+"/end_session" {
		t.Fatalf("logout redirected to %q, want the end_session_endpoint", got)
	}
	q := u.Query()
	snap := op.snapshot()
	if got := q.Get("id_token_hint"); got == "" || got != snap.idTokens[len(snap.idTokens)-1] {
		t.Errorf("id_token_hint is not the ID token of the session")
	}
	if got := q.Get("post_logout_redirect_uri"); got != rp.url+"/" {
		t.Errorf("post_logout_redirect_uri = %q, want %q", got, rp.url+"/")
	}
	if got := q.Get("client_id"); got != testClientID {
		t.Errorf("client_id = %q", got)
	}
	if q.Get("state") == "" {
		t.Error("no state on the logout request")
	}
	if n := rp.app.sessions.len(); n != 0 {
		t.Errorf("%d sessions left after logout", n)
	}

	// The provider sends the browser back with the state.
	r = b.get(r.loc)
	mustStatus(t, "end_session", r, http.StatusFound)
	if len(op.snapshot().endSessionReqs) != 1 {
		t.Fatal("end_session not called")
	}
	r = b.get(resolve(t, op.srv.URL, r.loc))
	mustStatus(t, "post-logout home", r, http.StatusOK)
	if !strings.Contains(r.body, "You have been logged out at the provider.") {
		t.Errorf("post-logout page lacks confirmation:\n%s", r.body)
	}
	assertLoggedOut(t, b, rp)
}

func TestRefreshTokens(t *testing.T) {
	op := newFakeOP(t)
	rp := newTestRP(t, op.srv.URL)
	b := newBrowser(t)
	home := login(t, b, rp, op)
	csrf := csrfToken(t, home.body)

	r := b.post(rp.url+"/refresh", url.Values{"csrf": {csrf}})
	mustStatus(t, "refresh", r, http.StatusSeeOther)
	snap := op.snapshot()
	if len(snap.tokenReqs) != 2 || snap.tokenReqs[1].Get("grant_type") != "refresh_token" {
		t.Fatalf("expected a refresh_token grant, got %v", snap.tokenReqs)
	}
	// The refresh token sent is the one issued at login (secrets[1..3] are
	// access, refresh, id token of the first issuance; secrets[0] the code).
	if got := snap.tokenReqs[1].Get("refresh_token"); got != snap.secrets[2] {
		t.Errorf("refresh grant used an unexpected refresh token")
	}
	home = b.get(rp.url + "/")
	mustStatus(t, "home after refresh", home, http.StatusOK)
	for _, want := range []string{"last refresh", "new ID token", "Refresh tokens", testSub} {
		if !strings.Contains(home.body, want) {
			t.Errorf("home after refresh lacks %q", want)
		}
	}
	// The rotated refresh token is used next time.
	r = b.post(rp.url+"/refresh", url.Values{"csrf": {csrf}})
	mustStatus(t, "second refresh", r, http.StatusSeeOther)
	snap = op.snapshot()
	if len(snap.tokenReqs) != 3 || snap.tokenReqs[2].Get("refresh_token") != snap.secrets[5] {
		t.Errorf("second refresh did not use the rotated refresh token")
	}
	// Logout now hints the newest ID token.
	r = b.post(rp.url+"/logout", url.Values{"csrf": {csrf}})
	mustStatus(t, "logout", r, http.StatusSeeOther)
	u, _ := url.Parse(r.loc)
	if u.Query().Get("id_token_hint") != snap.idTokens[len(snap.idTokens)-1] {
		t.Error("id_token_hint is not the refreshed ID token")
	}
}

func TestClientSecretBasic(t *testing.T) {
	op := newFakeOP(t)
	op.clientSecret = "s3cr3t:with/special chars"
	rp := newTestRP(t, op.srv.URL, func(c *config) { c.ClientSecret = op.clientSecret })
	login(t, newBrowser(t), rp, op)
	snap := op.snapshot()
	if !strings.HasPrefix(snap.tokenAuth[0], "Basic ") {
		t.Errorf("Authorization = %q, want Basic", snap.tokenAuth[0])
	}
	if snap.tokenReqs[0].Has("client_secret") {
		t.Error("client_secret sent in the body")
	}
	if strings.Contains(rp.logs.String(), op.clientSecret) {
		t.Error("client secret logged")
	}
}

func TestSecurityHeadersAndStatic(t *testing.T) {
	op := newFakeOP(t)
	rp := newTestRP(t, op.srv.URL)
	b := newBrowser(t)
	want := map[string]string{
		"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	}
	for _, path := range []string{"/", "/login", "/callback?state=x&code=y", "/static/style.css", "/healthz", "/nope"} {
		r := b.get(rp.url + path)
		for h, v := range want {
			if got := r.header.Get(h); got != v {
				t.Errorf("%s: %s = %q, want %q", path, h, got, v)
			}
		}
	}
	css := b.get(rp.url + "/static/style.css")
	mustStatus(t, "style.css", css, http.StatusOK)
	if !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") || !strings.Contains(css.body, ".badge") {
		t.Errorf("style.css: content-type %q, %d bytes", css.header.Get("Content-Type"), len(css.body))
	}
	home := b.get(rp.url + "/")
	for _, bad := range []string{"<script", "style=", "http://", "https://"} {
		// Only the issuer (shown as text) may contain a URL.
		if strings.Contains(strings.ReplaceAll(home.body, op.srv.URL, ""), bad) {
			t.Errorf("home page contains %q (inline or external resource)", bad)
		}
	}
	if r := b.get(rp.url + "/healthz"); r.status != http.StatusOK || r.body != "ok\n" {
		t.Errorf("healthz: %d %q", r.status, r.body)
	}
	if r := b.post(rp.url+"/login", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /login: %d, want 405", r.status)
	}
	if r := b.get(rp.url + "/logout"); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /logout: %d, want 405", r.status)
	}
}

func TestParseConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	cfg, err := parseConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer != "http://127.0.0.1:8080" || cfg.ClientID != "demo" || cfg.ClientSecret != "" ||
		cfg.Listen != "127.0.0.1:9000" || cfg.BaseURL != "http://127.0.0.1:9000" ||
		strings.Join(cfg.Scopes, " ") != "openid profile email offline_access" {
		t.Errorf("defaults: %+v", cfg)
	}

	cfg, err = parseConfig([]string{"--client-id", "flag-client", "--scopes", "profile,email"}, env(map[string]string{
		"DEMO_RP_ISSUER":        "https://idp.example.test",
		"DEMO_RP_CLIENT_ID":     "env-client",
		"DEMO_RP_CLIENT_SECRET": "env-secret",
		"DEMO_RP_LISTEN":        ":9100",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Issuer != "https://idp.example.test" || cfg.ClientID != "flag-client" || cfg.ClientSecret != "env-secret" ||
		cfg.Listen != ":9100" || cfg.BaseURL != "http://localhost:9100" || strings.Join(cfg.Scopes, " ") != "openid profile email" {
		t.Errorf("env + flags: %+v", cfg)
	}

	cfg, err = parseConfig([]string{"--base-url", "https://rp.example.test/"}, env(nil), io.Discard)
	if err != nil || cfg.BaseURL != "https://rp.example.test" {
		t.Errorf("base-url: %q, %v", cfg.BaseURL, err)
	}
	for _, args := range [][]string{
		{"--issuer", "not a url"},
		{"--base-url", "http://rp.example.test/sub"},
		{"--client-id", ""},
		{"extra-arg"},
	} {
		if _, err := parseConfig(args, env(nil), io.Discard); err == nil {
			t.Errorf("parseConfig(%q) accepted invalid input", args)
		}
	}
}

func TestTTLStore(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	s := newTTLStore[int](time.Minute, 3, func() time.Time { return now })
	for i := range 3 {
		s.put(fmt.Sprint(i), i)
	}
	if n := s.put("3", 3); n != 1 {
		t.Errorf("evicted %d, want 1", n)
	}
	if _, ok := s.get("0"); ok {
		t.Error("oldest entry not evicted at capacity")
	}
	if v, ok := s.take("1"); !ok || v != 1 {
		t.Errorf("take = %v, %v", v, ok)
	}
	if _, ok := s.take("1"); ok {
		t.Error("take succeeded twice")
	}
	now = now.Add(30 * time.Second)
	s.put("4", 4)
	now = now.Add(31 * time.Second) // "2" and "3" expired, "4" alive
	if _, ok := s.get("2"); ok {
		t.Error("expired entry returned")
	}
	if n := s.len(); n != 1 {
		t.Errorf("len = %d, want 1", n)
	}
	if !s.update("4", func(v *int) { *v = 40 }) {
		t.Error("update of live entry failed")
	}
	if v, _ := s.get("4"); v != 40 {
		t.Errorf("after update: %d", v)
	}
}

func TestRunPrintsStartupLineAndShutsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg, err := parseConfig([]string{"--listen", addr, "--issuer", "http://127.0.0.1:1"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, slog.New(slog.DiscardHandler), out) }()

	want := fmt.Sprintf("demo RP listening on http://%s (issuer http://127.0.0.1:1, client demo)\n", addr)
	deadline := time.Now().Add(5 * time.Second)
	for out.String() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if out.String() != want {
		t.Errorf("startup line = %q, want %q", out.String(), want)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after shutdown", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
