package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// rp is the relying party side: the registered client, the provider's
// endpoints from discovery and an independent ID token verifier.
type rp struct {
	issuer       string
	clientID     string
	clientSecret string
	redirectURI  string
	tokenURL     string
	jwksURL      string
	transport    *http.Transport
	verifier     *oidc.IDTokenVerifier
	verifyCtx    context.Context
}

// newTransport is shared by every simulated browser: connections carry no
// browser state, and sharing them keeps ephemeral ports in check.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
}

// newRP discovers the provider with go-oidc, as a real relying party would.
func newRP(ctx context.Context, issuer, clientID, secret, redirect string) (*rp, error) {
	tr := newTransport()
	vctx := oidc.ClientContext(context.Background(), &http.Client{Transport: tr, Timeout: 10 * time.Second})
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, &http.Client{Transport: tr, Timeout: 10 * time.Second}), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var doc struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	return &rp{
		issuer: issuer, clientID: clientID, clientSecret: secret, redirectURI: redirect,
		tokenURL: p.Endpoint().TokenURL, jwksURL: doc.JWKS, transport: tr,
		verifier: p.Verifier(&oidc.Config{ClientID: clientID}), verifyCtx: vctx,
	}, nil
}

// browser keeps its own cookies and sees every redirect.
type browser struct {
	hc *http.Client
}

func (r *rp) newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{hc: &http.Client{
		Jar: jar, Transport: r.transport, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	status   int
	header   http.Header
	body     string
	location string
}

func (b *browser) do(req *http.Request) (page, error) {
	resp, err := b.hc.Do(req)
	if err != nil {
		return page{}, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return page{}, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	p := page{status: resp.StatusCode, header: resp.Header, body: string(body)}
	if loc := resp.Header.Get("Location"); loc != "" {
		if u, err := req.URL.Parse(loc); err == nil {
			p.location = u.String()
		}
	}
	return p, nil
}

func (b *browser) get(u string) (page, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return page{}, err
	}
	return b.do(req)
}

// post submits a form as a same-origin browser form would.
func (b *browser) post(u string, form url.Values) (page, error) {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return page{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.do(req)
}

var hiddenRe = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)

func hidden(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(body, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

func randString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Login steps, timed separately so a report can say where a login's wall
// time goes.
const (
	stepAuthorize = iota
	stepLoginPage
	stepPassword
	stepTOTPPage
	stepTOTP
	stepCallback
	stepToken
	numSteps
)

var stepNames = [numSteps]string{"authorize", "login page", "POST password", "TOTP page", "POST totp", "callback", "token"}

// flow is one authorization request in progress in one browser.
type flow struct {
	r        *rp
	b        *browser
	state    string
	nonce    string
	verifier string
	form     url.Values
}

// start sends a fresh browser to /authorize and on to the password form.
func (r *rp) start(scope string, steps *[numSteps]time.Duration) (*flow, error) {
	f := &flow{r: r, b: r.newBrowser(), state: randString(), nonce: randString(), verifier: randString() + randString()}
	sum := sha256.Sum256([]byte(f.verifier))
	q := url.Values{
		"client_id": {r.clientID}, "response_type": {"code"}, "scope": {scope},
		"redirect_uri": {r.redirectURI}, "state": {f.state}, "nonce": {f.nonce},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	t := time.Now()
	p, err := f.b.get(r.issuer + "/authorize?" + q.Encode())
	if err != nil {
		return nil, err
	}
	if p.status != http.StatusFound || !strings.Contains(p.location, "/login/") {
		return nil, fmt.Errorf("authorize: want 302 to /login/, got %d %q", p.status, p.location)
	}
	t = lap(steps, stepAuthorize, t)
	p, err = f.b.get(p.location)
	if err != nil {
		return nil, err
	}
	if p.status != http.StatusOK || !strings.Contains(p.body, `autocomplete="current-password"`) {
		return nil, fmt.Errorf("login page: want 200 with the password form, got %d", p.status)
	}
	lap(steps, stepLoginPage, t)
	f.form = hidden(p.body)
	return f, nil
}

func lap(steps *[numSteps]time.Duration, i int, since time.Time) time.Time {
	now := time.Now()
	if steps != nil {
		steps[i] += now.Sub(since)
	}
	return now
}

func (f *flow) postPassword(username, password string) (page, error) {
	return f.b.post(f.r.issuer+"/login/password", url.Values{
		"id": {f.form.Get("id")}, "csrf": {f.form.Get("csrf")}, "username": {username}, "password": {password}})
}

// tokens is a token endpoint answer.
type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	TokenType    string `json:"token_type"`
}

// login runs a complete login for u: password, TOTP, callback, code and
// token exchange with PKCE; the ID token is verified (signature via JWKS,
// iss, aud, exp) and must carry the flow's nonce. It returns the TOTP step
// it used, so the pool knows when u may log in again.
func (r *rp) login(u *benchUser, scope string, steps *[numSteps]time.Duration) (tokens, int64, error) {
	f, err := r.start(scope, steps)
	if err != nil {
		return tokens{}, 0, err
	}
	t := time.Now()
	p, err := f.postPassword(u.Name, u.Password)
	if err != nil {
		return tokens{}, 0, err
	}
	if p.status != http.StatusSeeOther {
		return tokens{}, 0, fmt.Errorf("password step for %s: want 303, got %d", u.Name, p.status)
	}
	t = lap(steps, stepPassword, t)
	p, err = f.b.get(p.location)
	if err != nil {
		return tokens{}, 0, err
	}
	if p.status != http.StatusOK || !strings.Contains(p.body, `autocomplete="one-time-code"`) {
		return tokens{}, 0, fmt.Errorf("want the TOTP form, got %d", p.status)
	}
	f.form = hidden(p.body)
	t = lap(steps, stepTOTPPage, t)
	code, step, err := u.code(time.Now())
	if err != nil {
		return tokens{}, 0, err
	}
	p, err = f.b.post(r.issuer+"/login/totp", url.Values{"id": {f.form.Get("id")}, "csrf": {f.form.Get("csrf")}, "code": {code}})
	if err != nil {
		return tokens{}, step, err
	}
	if p.status != http.StatusSeeOther {
		return tokens{}, step, fmt.Errorf("TOTP step for %s: want 303, got %d", u.Name, p.status)
	}
	t = lap(steps, stepTOTP, t)
	redirect := ""
	for range 10 {
		if p.status < 300 || p.status > 399 {
			return tokens{}, step, fmt.Errorf("callback: want a redirect, got %d", p.status)
		}
		if !strings.HasPrefix(p.location, r.issuer) {
			redirect = p.location
			break
		}
		if p, err = f.b.get(p.location); err != nil {
			return tokens{}, step, err
		}
	}
	if redirect == "" {
		return tokens{}, step, errors.New("callback: too many redirects")
	}
	ru, err := url.Parse(redirect)
	if err != nil {
		return tokens{}, step, err
	}
	q := ru.Query()
	if e := q.Get("error"); e != "" {
		return tokens{}, step, fmt.Errorf("authorization error: %s %s", e, q.Get("error_description"))
	}
	if q.Get("state") != f.state || q.Get("code") == "" {
		return tokens{}, step, fmt.Errorf("callback: bad state or no code in %s", redirect)
	}
	t = lap(steps, stepCallback, t)
	tok, err := r.token(url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
		"redirect_uri": {r.redirectURI}, "code_verifier": {f.verifier}})
	if err != nil {
		return tok, step, err
	}
	lap(steps, stepToken, t)
	if err := r.verifyID(tok.IDToken, f.nonce); err != nil {
		return tok, step, err
	}
	return tok, step, nil
}

// token calls the token endpoint with HTTP Basic client authentication.
func (r *rp) token(form url.Values) (tokens, error) {
	req, err := http.NewRequest(http.MethodPost, r.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return tokens{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(r.clientID), url.QueryEscape(r.clientSecret))
	resp, err := (&http.Client{Transport: r.transport, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return tokens{}, fmt.Errorf("token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return tokens{}, fmt.Errorf("token endpoint: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return tokens{}, fmt.Errorf("token endpoint (%s): status %d: %s", form.Get("grant_type"), resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var t tokens
	if err := json.Unmarshal(body, &t); err != nil {
		return t, fmt.Errorf("token response: %w", err)
	}
	if t.AccessToken == "" || t.IDToken == "" {
		return t, fmt.Errorf("token response (%s) without access_token or id_token", form.Get("grant_type"))
	}
	return t, nil
}

// refresh redeems rt and returns the rotated tokens; the new ID token must
// be an RS256 JWT.
func (r *rp) refresh(rt string) (tokens, error) {
	t, err := r.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if err != nil {
		return t, err
	}
	if t.RefreshToken == "" || t.RefreshToken == rt {
		return t, errors.New("refresh grant did not rotate the refresh token")
	}
	return t, checkRS256(t.IDToken)
}

// checkRS256 looks at a JWT's header only (the full verification is done
// on samples: it would add client CPU on the shared machine).
func checkRS256(jwt string) error {
	h, _, ok := strings.Cut(jwt, ".")
	if !ok {
		return errors.New("ID token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return fmt.Errorf("ID token header: %w", err)
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil || hdr.Alg != "RS256" {
		return fmt.Errorf("ID token header %s: want alg RS256", raw)
	}
	return nil
}

// verifyID verifies an ID token like a relying party does; nonce "" skips
// the nonce check.
func (r *rp) verifyID(raw, nonce string) error {
	ctx, cancel := context.WithTimeout(r.verifyCtx, 10*time.Second)
	defer cancel()
	idt, err := r.verifier.Verify(ctx, raw)
	if err != nil {
		return fmt.Errorf("verify ID token: %w", err)
	}
	if nonce != "" && idt.Nonce != nonce {
		return fmt.Errorf("ID token nonce %q, want %q", idt.Nonce, nonce)
	}
	return nil
}
