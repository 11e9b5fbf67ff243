package op

import (
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/op/login"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/secret"
	"github.com/totp-idp/idp/op/totp"
	"github.com/totp-idp/idp/storage"
)

// failStore fails one named method on demand, as an unreachable disk or
// a database that stays locked would.
type failStore struct {
	storage.Store
	mu         sync.Mutex
	name       string
	err        error
	beforeSave func()
	beforeOpen func()

	beforeSetPassword func()
	beforeReverify    func()
	beforeReplaceTOTP func()
}

func (f *failStore) set(name string, err error) {
	f.mu.Lock()
	f.name, f.err = name, err
	f.mu.Unlock()
}

func (f *failStore) failing(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.name == name {
		return fmt.Errorf("sqlite: %s: %w", name, f.err)
	}
	return nil
}

func (f *failStore) UserByUsername(ctx context.Context, n string) (storage.User, error) {
	if err := f.failing("UserByUsername"); err != nil {
		return storage.User{}, err
	}
	return f.Store.UserByUsername(ctx, n)
}

func (f *failStore) AuthRequestByID(ctx context.Context, id string, now time.Time) (storage.AuthRequest, error) {
	if err := f.failing("AuthRequestByID"); err != nil {
		return storage.AuthRequest{}, err
	}
	return f.Store.AuthRequestByID(ctx, id, now)
}

func (f *failStore) TOTPByUser(ctx context.Context, id string) (storage.TOTPCredential, error) {
	if err := f.failing("TOTPByUser"); err != nil {
		return storage.TOTPCredential{}, err
	}
	return f.Store.TOTPByUser(ctx, id)
}

func (f *failStore) ClaimAttempt(ctx context.Context, id string, fa storage.Factor, now time.Time, p storage.LockPolicy) (storage.AttemptClaim, error) {
	if err := f.failing("ClaimAttempt/" + string(fa)); err != nil {
		return storage.AttemptClaim{}, err
	}
	return f.Store.ClaimAttempt(ctx, id, fa, now, p)
}

func (f *failStore) ClaimUnknownAttempt(ctx context.Context, key string, now time.Time, p storage.LockPolicy) (storage.AttemptClaim, error) {
	if err := f.failing("ClaimUnknownAttempt"); err != nil {
		return storage.AttemptClaim{}, err
	}
	return f.Store.ClaimUnknownAttempt(ctx, key, now, p)
}

func (f *failStore) AttemptSucceeded(ctx context.Context, id string, fa storage.Factor, c storage.AttemptClaim, now time.Time, p storage.LockPolicy) error {
	if err := f.failing("AttemptSucceeded"); err != nil {
		return err
	}
	return f.Store.AttemptSucceeded(ctx, id, fa, c, now, p)
}

func (f *failStore) SetPendingTOTP(ctx context.Context, id, userID string, sealed []byte, replace bool, now time.Time) error {
	if err := f.failing("SetPendingTOTP"); err != nil {
		return err
	}
	return f.Store.SetPendingTOTP(ctx, id, userID, sealed, replace, now)
}

func (f *failStore) CompleteTOTP(ctx context.Context, id, userID string, step int64, now time.Time, amr []string, acr string) error {
	if err := f.failing("CompleteTOTP"); err != nil {
		return err
	}
	return f.Store.CompleteTOTP(ctx, id, userID, step, now, amr, acr)
}

func (f *failStore) CompleteRecovery(ctx context.Context, id, userID string, h []byte, now time.Time, amr []string, acr string) (int, error) {
	if err := f.failing("CompleteRecovery"); err != nil {
		return 0, err
	}
	return f.Store.CompleteRecovery(ctx, id, userID, h, now, amr, acr)
}

func (f *failStore) OpenSession(ctx context.Context, id string, s storage.Session) error {
	if err := f.failing("OpenSession"); err != nil {
		return err
	}
	f.mu.Lock()
	hook := f.beforeOpen
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return f.Store.OpenSession(ctx, id, s)
}

// TestDatabaseFailuresLoseNothing: when the database fails at any step of
// a sign-in, the answer is the service-error page (503 with Retry-After
// when it stayed busy, 500 otherwise) that shows nothing of the cause,
// the request stays where it was, and the same step succeeds once the
// database is back. A failure to open the SSO session after the second
// factor leaves a done request whose login page opens it on the next
// visit (no code without a session).
func TestDatabaseFailuresLoseNothing(t *testing.T) {
	ctx := context.Background()
	boom := errors.New("disk I/O error at /var/lib/idp/idp.db")
	// env is a fresh provider on a store that fails on demand, with
	// "dora" waiting for enrollment and a recovery code of ann's.
	type env struct {
		*testEnv
		fs   *failStore
		code string
	}
	newEnv := func(t *testing.T) env {
		var fs *failStore
		e := newTestEnvOn(t, nil, func(st storage.Store) storage.Store { fs = &failStore{Store: st}; return fs })
		if _, err := e.admin.AddUser(ctx, admin.NewUser{Username: "dora", Password: "correct staple", SkipTOTP: true}); err != nil {
			t.Fatal(err)
		}
		_, codes, _, err := e.admin.RegenerateRecoveryCodes(ctx, "ann")
		if err != nil {
			t.Fatal(err)
		}
		return env{e, fs, codes[0]}
	}
	stage := func(t *testing.T, e env, f *inFlow) string {
		a, err := e.store.AuthRequestByID(ctx, f.form.Get("id"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return a.Stage
	}
	// atPassword is a flow past the password of user (its next page loaded).
	atPassword := func(t *testing.T, e env, user string) *inFlow {
		f := startFlow(t, e.testEnv)
		pw := map[string]string{"ann": "correct horse", "dora": "correct staple"}[user]
		if r := f.post(t, "/login/password", url.Values{"username": {user}, "password": {pw}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("password of %s: %d", user, r.StatusCode)
		}
		f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
		return f
	}
	start := func(t *testing.T, e env) *inFlow { return startFlow(t, e.testEnv) }
	password := func(user, pw string) func(*testing.T, env, *inFlow) (*http.Response, string) {
		return func(t *testing.T, e env, f *inFlow) (*http.Response, string) {
			return f.postPage(t, "/login/password", url.Values{"username": {user}, "password": {pw}})
		}
	}
	code := func(t *testing.T, e env, f *inFlow) (*http.Response, string) {
		return f.postPage(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}})
	}
	recovery := func(t *testing.T, e env, f *inFlow) (*http.Response, string) {
		return f.postPage(t, "/login/recovery", url.Values{"recovery_code": {e.code}})
	}
	enrollPage := func(t *testing.T, e env, f *inFlow) (*http.Response, string) {
		resp, err := f.c.Get(e.ts.URL + login.URL(f.form.Get("id")))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	type step struct {
		method string
		prep   func(*testing.T, env) *inFlow
		do     func(*testing.T, env, *inFlow) (*http.Response, string)
		stage  string // the request's stage after the failure
		again  int    // the status of the same step once the database is back
	}
	for _, c := range []step{
		// A flow that cannot be read is a database failure, not an
		// invalid sign-in link.
		{"AuthRequestByID", start, password("ann", "correct horse"), storage.StageCreated, http.StatusSeeOther},
		{"AuthRequestByID", func(t *testing.T, e env) *inFlow { return atPassword(t, e, "ann") }, code, storage.StagePasswordOK, http.StatusSeeOther},
		{"UserByUsername", start, password("ann", "correct horse"), storage.StageCreated, http.StatusSeeOther},
		{"ClaimAttempt/password", start, password("ann", "correct horse"), storage.StageCreated, http.StatusSeeOther},
		{"ClaimUnknownAttempt", start, password("nobody", "correct horse"), storage.StageCreated, http.StatusUnauthorized},
		{"AttemptSucceeded", start, password("ann", "correct horse"), storage.StageCreated, http.StatusSeeOther},
		{"TOTPByUser", start, password("ann", "correct horse"), storage.StageCreated, http.StatusSeeOther},
		{"ClaimAttempt/totp", func(t *testing.T, e env) *inFlow { return atPassword(t, e, "ann") }, code, storage.StagePasswordOK, http.StatusSeeOther},
		{"CompleteTOTP", func(t *testing.T, e env) *inFlow { return atPassword(t, e, "ann") }, code, storage.StagePasswordOK, http.StatusSeeOther},
		{"CompleteRecovery", func(t *testing.T, e env) *inFlow { return atPassword(t, e, "ann") }, recovery, storage.StagePasswordOK, http.StatusOK},
		{"SetPendingTOTP", func(t *testing.T, e env) *inFlow {
			f := start(t, e)
			if r := f.post(t, "/login/password", url.Values{"username": {"dora"}, "password": {"correct staple"}}); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("dora's password: %d", r.StatusCode)
			}
			return f
		}, enrollPage, storage.StagePasswordOK, http.StatusOK},
	} {
		for _, busy := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/busy=%t", c.method, busy), func(t *testing.T) {
				e := newEnv(t)
				f := c.prep(t, e)
				err, want := boom, http.StatusInternalServerError
				if busy {
					err, want = storage.ErrBusy, http.StatusServiceUnavailable
				}
				e.fs.set(c.method, err)
				r, body := c.do(t, e, f)
				e.fs.set("", nil)
				if r.StatusCode != want || busy != (r.Header.Get("Retry-After") != "") || strings.Contains(body, "disk I/O") {
					t.Fatalf("%d, Retry-After %q\n%s", r.StatusCode, r.Header.Get("Retry-After"), body)
				}
				if got := stage(t, e, f); got != c.stage {
					t.Fatalf("stage %s after the failure, want %s", got, c.stage)
				}
				f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
				if r, _ := c.do(t, e, f); r.StatusCode != c.again {
					t.Fatalf("the same step once the database is back: %d, want %d", r.StatusCode, c.again)
				}
			})
		}
	}
	t.Run("OpenSession", func(t *testing.T) {
		e := newEnv(t)
		f := atPassword(t, e, "ann")
		e.fs.set("OpenSession", boom)
		r, _ := code(t, e, f)
		e.fs.set("", nil)
		if r.StatusCode != http.StatusInternalServerError || stage(t, e, f) != storage.StageDone {
			t.Fatalf("%d, stage %s", r.StatusCode, stage(t, e, f))
		}
		a, _ := e.store.AuthRequestByID(ctx, f.form.Get("id"), time.Now())
		if len(a.SessionHash) != 0 {
			t.Fatal("a session linked although none was created")
		}
		resp, err := f.c.Get(e.ts.URL + "/authorize/callback?id=" + url.QueryEscape(a.ID))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, login.Path) {
			t.Fatalf("callback without a session: %d %s, want the login page", resp.StatusCode, loc)
		}
		status, _ := get(t, f.c, e.ts.URL+login.URL(a.ID))
		a, _ = e.store.AuthRequestByID(ctx, a.ID, time.Now())
		if status != http.StatusSeeOther || len(a.SessionHash) == 0 {
			t.Fatalf("the login page after the failure: %d, session linked %t", status, len(a.SessionHash) != 0)
		}
	})
}

func (f *failStore) ConfirmEnrollment(ctx context.Context, id string, cred storage.TOTPCredential, hashes [][]byte, now time.Time) error {
	if err := f.failing("ConfirmEnrollment"); err != nil {
		return err
	}
	return f.Store.ConfirmEnrollment(ctx, id, cred, hashes, now)
}

// totpState is the user's TOTP guard row (zero when there is none).
func totpState(t *testing.T, st storage.Store, userID string) storage.AttemptState {
	t.Helper()
	states, err := st.AttemptStates(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.Factor == storage.FactorTOTP {
			return s
		}
	}
	return storage.AttemptState{}
}

// TestEveryClaimIsEvaluatedOrAccounted: no claim on the TOTP counter ends
// without its code being checked and recorded, given back, or recorded as
// not evaluated. A right code whose request moved on meanwhile (the form
// sent twice, another tab: ErrWrongState at completion) gets its claim
// back instead of spending the budget no success refills; a recovery code
// not even looked up is recorded as such, without the "failed after
// password" alert; a secret that cannot be opened costs no attempt at all
// (docs/THREAT-MODEL.md rule 3, R-L2).
func TestEveryClaimIsEvaluatedOrAccounted(t *testing.T) {
	ctx := context.Background()
	newEnv := func(t *testing.T) (*testEnv, *failStore) {
		var fs *failStore
		e := newTestEnvOn(t, nil, func(st storage.Store) storage.Store { fs = &failStore{Store: st}; return fs })
		return e, fs
	}
	atTOTP := func(t *testing.T, e *testEnv, user, pw string) *inFlow {
		f := startFlow(t, e)
		if r := f.post(t, "/login/password", url.Values{"username": {user}, "password": {pw}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("password: %d", r.StatusCode)
		}
		f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
		return f
	}
	t.Run("right code, request moved on", func(t *testing.T) {
		e, fs := newEnv(t)
		f := atTOTP(t, e, "ann", "correct horse")
		fs.set("CompleteTOTP", storage.ErrWrongState)
		r := f.post(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}})
		fs.set("", nil)
		if s := totpState(t, e.store, e.annID(t)); r.StatusCode != http.StatusSeeOther || s.Failures != 0 || s.BudgetLevel > 0.01 {
			t.Fatalf("%d, TOTP state %+v: the right code's claim was not given back", r.StatusCode, s)
		}
	})
	t.Run("right enrollment code, request moved on", func(t *testing.T) {
		e, fs := newEnv(t)
		if _, err := e.admin.AddUser(ctx, admin.NewUser{Username: "dora", Password: "correct staple", SkipTOTP: true}); err != nil {
			t.Fatal(err)
		}
		f := atTOTP(t, e, "dora", "correct staple")
		_, page := get(t, f.c, e.ts.URL+login.URL(f.form.Get("id")))
		m := secretOnPage.FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no secret on the enrollment page:\n%s", page)
		}
		secret, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ReplaceAll(m[1], " ", ""))
		fs.set("ConfirmEnrollment", storage.ErrWrongState)
		r := f.post(t, "/login/enroll", url.Values{"code": {totp.Code(secret, totp.Step(time.Now()))}})
		fs.set("", nil)
		dora, _ := e.store.UserByUsername(ctx, "dora")
		if s := totpState(t, e.store, dora.ID); r.StatusCode != http.StatusSeeOther || s.Failures != 0 || s.BudgetLevel > 0.01 {
			t.Fatalf("%d, TOTP state %+v", r.StatusCode, s)
		}
	})
	t.Run("recovery code not looked up", func(t *testing.T) {
		e, fs := newEnv(t)
		_, codes, _, err := e.admin.RegenerateRecoveryCodes(ctx, "ann")
		if err != nil {
			t.Fatal(err)
		}
		f := atTOTP(t, e, "ann", "correct horse")
		fs.set("CompleteRecovery", storage.ErrWrongState)
		r := f.post(t, "/login/recovery", url.Values{"recovery_code": {codes[0]}})
		fs.set("", nil)
		s := totpState(t, e.store, e.annID(t))
		if r.StatusCode != http.StatusSeeOther || s.Failures != 1 || e.auditCount(t, "recovery_code_not_evaluated") != 1 ||
			e.auditCount(t, "second_factor_failed_after_password") != 0 {
			t.Fatalf("%d, TOTP state %+v, %d not-evaluated rows, %d alerts", r.StatusCode, s,
				e.auditCount(t, "recovery_code_not_evaluated"), e.auditCount(t, "second_factor_failed_after_password"))
		}
	})
	t.Run("authenticator secret unreadable", func(t *testing.T) {
		e, _ := newEnv(t)
		f := atTOTP(t, e, "ann", "correct horse")
		cred, err := e.store.TOTPByUser(ctx, e.annID(t))
		if err != nil {
			t.Fatal(err)
		}
		cred.Secret = []byte("s1" + strings.Repeat("\x07", 40)) // sealed under a key nobody has
		if err := e.store.PutTOTP(ctx, cred); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 6; i++ {
			if r := f.post(t, "/login/totp", url.Values{"code": {"123456"}}); r.StatusCode != http.StatusInternalServerError {
				t.Fatalf("post %d: %d", i, r.StatusCode)
			}
		}
		if s := totpState(t, e.store, e.annID(t)); s.Failures != 0 || !s.LockedUntil.IsZero() {
			t.Fatalf("an unreadable secret cost attempts: %+v", s)
		}
	})
	t.Run("pending secret unreadable", func(t *testing.T) {
		e, _ := newEnv(t)
		if _, err := e.admin.AddUser(ctx, admin.NewUser{Username: "dora", Password: "correct staple", SkipTOTP: true}); err != nil {
			t.Fatal(err)
		}
		f := atTOTP(t, e, "dora", "correct staple")
		dora, _ := e.store.UserByUsername(ctx, "dora")
		id := f.form.Get("id")
		if err := e.store.SetPendingTOTP(ctx, id, dora.ID, []byte("s1"+strings.Repeat("\x07", 40)), true, time.Now()); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 6; i++ {
			if r := f.post(t, "/login/enroll", url.Values{"code": {"123456"}}); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("post %d: %d, want 303 to a fresh secret", i, r.StatusCode)
			}
		}
		if s := totpState(t, e.store, dora.ID); s.Failures != 0 {
			t.Fatalf("an unreadable pending secret cost attempts: %+v", s)
		}
		if status, page := get(t, f.c, e.ts.URL+login.URL(id)); status != http.StatusOK || secretOnPage.FindStringSubmatch(page) == nil {
			t.Fatalf("the login page after a lost pending secret: %d", status)
		}
	})
}

// TestDoubleSubmitOfTheRightCode: the TOTP form sent twice at once with
// the right code (a double click) completes the sign-in once and leaves
// the counter and the budget as one success leaves them, however the two
// requests interleave.
func TestDoubleSubmitOfTheRightCode(t *testing.T) {
	clk := &testClock{t: time.Now().UTC()}
	e := newTestEnv(t, func(c *Config) { c.Now = clk.now })
	for round := 0; round < 8; round++ {
		clk.add(totp.Period * time.Second) // a fresh time step each round
		f := startFlow(t, e)
		if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("password: %d", r.StatusCode)
		}
		f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
		code := e.annCode(t, clk.now())
		var wg sync.WaitGroup
		locs := make([]string, 2)
		for i := range locs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := f.post(t, "/login/totp", url.Values{"code": {code}})
				locs[i] = fmt.Sprint(r.StatusCode, " ", r.Header.Get("Location"))
			}()
		}
		wg.Wait()
		done := 0
		for _, l := range locs {
			if strings.Contains(l, "/authorize/callback") {
				done++
			}
		}
		if s := totpState(t, e.store, e.annID(t)); done != 1 || s.Failures != 0 || s.BudgetLevel > 0.01 {
			t.Fatalf("round %d: answers %q, TOTP state %+v", round, locs, s)
		}
	}
}

func (f *failStore) Ping(ctx context.Context) error {
	if err := f.failing("Ping"); err != nil {
		return err
	}
	return f.Store.Ping(ctx)
}

// oldSchemaStore reports a schema other than this program's.
type oldSchemaStore struct{ storage.Store }

func (oldSchemaStore) SchemaCurrent(context.Context) error {
	return errors.New("database schema version 12 (12 migrations), this program's is 10 (10)")
}

// TestProbes: /healthz says the process serves (it reads nothing, so a
// database outage does not get replicas restarted); /readyz and /ready
// say whether it can finish a sign-in: the database answers and its
// schema is this program's. Neither shows why.
func TestProbes(t *testing.T) {
	var fs *failStore
	e := newTestEnvOn(t, nil, func(st storage.Store) storage.Store { fs = &failStore{Store: st}; return fs })
	for _, p := range []string{"/healthz", "/readyz", "/ready"} {
		if status, _ := get(t, e.browser(), e.ts.URL+p); status != http.StatusOK {
			t.Errorf("%s with the database up: %d", p, status)
		}
	}
	fs.set("Ping", errors.New("connection refused"))
	if status, _ := get(t, e.browser(), e.ts.URL+"/healthz"); status != http.StatusOK {
		t.Errorf("/healthz with the database down: %d", status)
	}
	for _, p := range []string{"/readyz", "/ready"} {
		resp, err := e.browser().Get(e.ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || strings.Contains(string(b), "refused") {
			t.Errorf("%s with the database down: %d %q", p, resp.StatusCode, b)
		}
	}
	fs.set("", nil)
	old := newTestEnvOn(t, nil, func(st storage.Store) storage.Store { return oldSchemaStore{st} })
	if status, body := get(t, old.browser(), old.ts.URL+"/readyz"); status != http.StatusServiceUnavailable || strings.Contains(body, "version") {
		t.Errorf("/readyz on another schema: %d %q", status, body)
	}
}

func (f *failStore) CreateAuthRequest(ctx context.Context, a storage.AuthRequest) error {
	if err := f.failing("CreateAuthRequest"); err != nil {
		return err
	}
	return f.Store.CreateAuthRequest(ctx, a)
}

func (f *failStore) AuthRequestByCodeHash(ctx context.Context, h []byte) (storage.AuthRequest, error) {
	if err := f.failing("AuthRequestByCodeHash"); err != nil {
		return storage.AuthRequest{}, err
	}
	return f.Store.AuthRequestByCodeHash(ctx, h)
}

// TestLibraryRoutesWhenTheDatabaseIsBusy: when the store answers "try
// again" under one of the library's routes, the library would send the
// browser back to the application with server_error (a lost sign-in) or
// a client a 500; the route's wrapper answers 503 with Retry-After: the
// service page at /authorize, temporarily_unavailable at the token
// endpoint. A plain database error keeps the library's answer.
func TestLibraryRoutesWhenTheDatabaseIsBusy(t *testing.T) {
	var fs *failStore
	e := newTestEnvOn(t, nil, func(st storage.Store) storage.Store { fs = &failStore{Store: st}; return fs })
	fs.set("CreateAuthRequest", storage.ErrBusy)
	resp, err := e.browser().Get(e.ts.URL + "/authorize?" + authorizeQuery().Encode())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || resp.Header.Get("Location") != "" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(b), e.srv.pages.Text(pages.MsgBusy)) {
		t.Fatalf("/authorize with the database busy: %d %v\n%s", resp.StatusCode, resp.Header, b)
	}
	fs.set("CreateAuthRequest", errors.New("disk I/O error"))
	resp, _ = e.browser().Get(e.ts.URL + "/authorize?" + authorizeQuery().Encode())
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.Contains(loc, "error=server_error") {
		t.Fatalf("/authorize with a database error: %d %s", resp.StatusCode, loc)
	}
	fs.set("AuthRequestByCodeHash", storage.ErrBusy)
	resp, err = e.browser().PostForm(e.ts.URL+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"},
		"client_id": {"app"}, "client_secret": {"s"}, "redirect_uri": {"https://rp.example/cb"}, "code_verifier": {"v"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"temporarily_unavailable"`) {
		t.Fatalf("token endpoint with the database busy: %d %s", resp.StatusCode, b)
	}
	// Another database error: a server error whose text (which names the
	// database) stays in the log.
	fs.set("AuthRequestByCodeHash", errors.New("disk I/O error at /var/lib/idp/idp.db"))
	resp, err = e.browser().PostForm(e.ts.URL+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {"x"},
		"client_id": {"app"}, "client_secret": {"s"}, "redirect_uri": {"https://rp.example/cb"}, "code_verifier": {"v"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 500 && (strings.Contains(string(b), "disk") || strings.Contains(string(b), "idp.db")) {
		t.Fatalf("token endpoint with a database error shows its cause: %d %s", resp.StatusCode, b)
	}
	t.Logf("token endpoint with a database error: %d %s", resp.StatusCode, b)
}

// TestLibraryServerErrorsHideTheirCause: a 5xx answer of the library,
// whose error_description carries its cause's text, reaches neither a
// client nor a browser: they get a plain server error, the log the text.
func TestLibraryServerErrorsHideTheirCause(t *testing.T) {
	e := newTestEnv(t, nil)
	lib := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":"server_error","error_description":"postgres: user idp on /run/postgresql: disk full"}`))
	})
	for _, browser := range []bool{false, true} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", nil)
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey, &reqInfo{}))
		e.srv.unavailable(browser)(lib).ServeHTTP(w, r)
		if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "postgres") {
			t.Errorf("browser=%t: %d %s", browser, w.Code, w.Body.String())
		}
	}
}

// SaveAuthCode runs beforeSave (a logout landing between the callback's
// read of the request and the code's write), then the store's.
func (f *failStore) SaveAuthCode(ctx context.Context, id string, h []byte, now, exp time.Time) error {
	f.mu.Lock()
	hook := f.beforeSave
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return f.Store.SaveAuthCode(ctx, id, h, now, exp)
}

// TestSignInEndedBeforeItsCode: the user's sessions end (an operator, a
// changed factor) after the callback read the done request and before its
// code is stored. No code is issued, and the client gets access_denied at
// its redirect URI rather than a server error (storage.Store.SaveAuthCode;
// docs/THREAT-MODEL.md R-O4).
func TestSignInEndedBeforeItsCode(t *testing.T) {
	ctx := context.Background()
	var fs *failStore
	e := newTestEnvOn(t, nil, func(st storage.Store) storage.Store { fs = &failStore{Store: st}; return fs })
	f := annAtSecondFactor(t, e)
	if r, body := f.postPage(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("totp: %d\n%s", r.StatusCode, body)
	}
	id := f.form.Get("id")
	u, err := e.store.UserByUsername(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	ended := 0
	fs.mu.Lock()
	fs.beforeSave = func() {
		en, err := fs.Store.EndUserSessions(ctx, u.ID, "", time.Now())
		if err != nil {
			t.Error(err)
		}
		ended += en.SignIns
	}
	fs.mu.Unlock()
	resp, err := f.c.Get(e.ts.URL + "/authorize/callback?id=" + url.QueryEscape(id))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if ended != 1 {
		t.Fatalf("the hook ended %d sign-ins, want 1 (the test did not reach SaveAuthCode)", ended)
	}
	if resp.StatusCode/100 != 3 || loc.Query().Get("error") != "access_denied" || loc.Query().Has("code") {
		t.Fatalf("callback after the ending: %d %s, want a redirect with access_denied and no code", resp.StatusCode, loc)
	}
	if _, err := e.store.AuthRequestByID(ctx, id, time.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the request after the ending: %v, want ErrNotFound", err)
	}
}

func (f *failStore) CompleteFromSession(ctx context.Context, id string, s storage.Session, now time.Time) error {
	if err := f.failing("CompleteFromSession"); err != nil {
		return err
	}
	return f.Store.CompleteFromSession(ctx, id, s, now)
}

// TestSSOReuseOnABusyDatabase: a browser with a live SSO session starts a
// new sign-in while the database is busy. The answer is the service page
// (503, Retry-After), not the password form: a database failure is not a
// reason to ask for the password again (second review, I1).
func TestSSOReuseOnABusyDatabase(t *testing.T) {
	var fs *failStore
	e := newTestEnvOn(t, nil, func(st storage.Store) storage.Store { fs = &failStore{Store: st}; return fs })
	f := annAtSecondFactor(t, e)
	if r, body := f.postPage(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("totp: %d\n%s", r.StatusCode, body)
	}
	second := func() (*http.Response, string) {
		resp, err := f.c.Get(e.ts.URL + "/authorize?" + authorizeQuery().Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		r, err := f.c.Get(e.ts.URL + resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r, string(b)
	}
	fs.set("CompleteFromSession", storage.ErrBusy)
	r, body := second()
	fs.set("", nil)
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || strings.Contains(body, `name="password"`) {
		t.Fatalf("SSO reuse on a busy database: %d, Retry-After %q\n%s", r.StatusCode, r.Header.Get("Retry-After"), body)
	}
	// Once the database is back the session signs the browser in.
	if r, _ := second(); r.StatusCode != http.StatusSeeOther || !strings.Contains(r.Header.Get("Location"), "/authorize/callback") {
		t.Fatalf("SSO reuse once the database is back: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
}

// TestSignInEndedBeforeItsSession: the user's sessions end right after the
// second factor, before the SSO session opens. No session is opened, and
// the browser gets the expired page with the way back to the application
// instead of a server error (third review, N2).
func TestSignInEndedBeforeItsSession(t *testing.T) {
	ctx := context.Background()
	var fs *failStore
	e := newTestEnvOn(t, nil, func(st storage.Store) storage.Store { fs = &failStore{Store: st}; return fs })
	f := annAtSecondFactor(t, e)
	u, err := e.store.UserByUsername(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	fs.beforeOpen = func() {
		if _, err := fs.Store.EndUserSessions(ctx, u.ID, "", time.Now()); err != nil {
			t.Error(err)
		}
	}
	fs.mu.Unlock()
	r, body := f.postPage(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}})
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, "https://rp.example/cb?error=access_denied") {
		t.Fatalf("the second factor after the ending: %d\n%s", r.StatusCode, body)
	}
	for _, c := range f.c.Jar.Cookies(r.Request.URL) {
		if strings.Contains(c.Name, "sso") || strings.Contains(c.Name, "session") {
			t.Fatalf("a session cookie %s was set for a cancelled sign-in", c.Name)
		}
	}
}

// annAtSecondFactor is a flow of ann past her password, its TOTP page
// loaded.
func annAtSecondFactor(t *testing.T, e *testEnv) *inFlow {
	t.Helper()
	f := startFlow(t, e)
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password: %d", r.StatusCode)
	}
	f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
	return f
}

func (f *failStore) SetPassword(ctx context.Context, userID string, c storage.PasswordChange, now time.Time) (storage.Ended, error) {
	f.mu.Lock()
	hook := f.beforeSetPassword
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return f.Store.SetPassword(ctx, userID, c, now)
}

// TestOperatorResetWinsOverTheForm: an operator resets the password again
// (set-password --must-change) while the user's new-password form is being
// handled. The user's change does not overwrite the operator's: the form
// answers that the sign-in ended, the operator's password stands and the
// account must still change it (review of issue 12, F1).
func TestOperatorResetWinsOverTheForm(t *testing.T) {
	ctx := context.Background()
	var fs *failStore
	e := newTestEnvOn(t, nil, func(st storage.Store) storage.Store { fs = &failStore{Store: st}; return fs })
	const temp, again = "velvet compass seven", "amber lantern forty"
	if _, _, err := e.admin.SetPassword(ctx, "ann", temp, true, false); err != nil {
		t.Fatal(err)
	}
	f := startFlow(t, e)
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {temp}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password: %d", r.StatusCode)
	}
	f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
	if r, body := f.postPage(t, "/login/totp", url.Values{"code": {e.annCode(t, time.Now())}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("totp: %d\n%s", r.StatusCode, body)
	}
	if status, body := f.load(t, e.ts.URL+login.URL(f.form.Get("id"))); status != http.StatusOK || !strings.Contains(body, "new-password") {
		t.Fatalf("the new-password form: %d\n%s", status, body)
	}
	fs.mu.Lock()
	fs.beforeSetPassword = func() {
		fs.mu.Lock()
		fs.beforeSetPassword = nil
		fs.mu.Unlock()
		if _, _, err := e.admin.SetPassword(ctx, "ann", again, true, false); err != nil {
			t.Error(err)
		}
	}
	fs.mu.Unlock()
	r, body := f.postPage(t, login.NewPasswordPath, url.Values{"new": {"marble orchard three"}, "repeat": {"marble orchard three"}})
	if r.StatusCode != http.StatusBadRequest || strings.Contains(r.Header.Get("Location"), "code=") {
		t.Fatalf("the form after the operator's reset: %d %s\n%s", r.StatusCode, r.Header.Get("Location"), body)
	}
	u, err := e.store.UserByUsername(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := e.admin.Hasher.Verify(ctx, u.PasswordHash, again)
	if err != nil || !ok || !u.MustChangePassword {
		t.Fatalf("after the race: operator's password kept %t (%v), must change %t", ok, err, u.MustChangePassword)
	}
}

func (f *failStore) reverifyHook() {
	f.mu.Lock()
	hook := f.beforeReverify
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
}

func (f *failStore) ReverifyTOTP(ctx context.Context, idHash []byte, userID string, step int64, now time.Time) error {
	f.reverifyHook()
	return f.Store.ReverifyTOTP(ctx, idHash, userID, step, now)
}

func (f *failStore) ReverifyRecovery(ctx context.Context, idHash []byte, userID string, codeHash []byte, now time.Time) (int, error) {
	f.reverifyHook()
	return f.Store.ReverifyRecovery(ctx, idHash, userID, codeHash, now)
}

// TestReauthAfterTheSessionEnded: the session ends (an operator's
// revoke-sessions) while its reauthentication is being answered. The
// browser is told it is signed out, not shown a server error; the code is
// not checked and the claim stays counted, with its event.
func TestReauthAfterTheSessionEnded(t *testing.T) {
	ctx := context.Background()
	clk := accountClock()
	var fs *failStore
	e := newTestEnvOn(t, func(c *Config) { c.Now = clk.now }, func(st storage.Store) storage.Store { fs = &failStore{Store: st}; return fs })
	// New codes first: making them ends the account's sessions.
	_, codes, _, err := e.admin.RegenerateRecoveryCodes(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	ann, err := e.store.UserByUsername(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	var f *inFlow
	var token string
	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"authenticator code", nil},
		{"recovery code", url.Values{"recovery_code": {codes[0]}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk.add(31 * time.Second)
			f, token = accountSignIn(t, e, clk)
			clk.add(31 * time.Second) // a code of a later step than the sign-in's
			before := totpState(t, e.store, ann.ID)
			fs.mu.Lock()
			fs.beforeReverify = func() {
				fs.mu.Lock()
				fs.beforeReverify = nil
				fs.mu.Unlock()
				if _, _, err := e.admin.RevokeSessions(ctx, "ann", ""); err != nil {
					t.Error(err)
				}
			}
			fs.mu.Unlock()
			form := tc.form
			if form == nil {
				form = url.Values{"code": {e.annCode(t, clk.now())}}
			}
			form.Set("csrf", token)
			status, body := accountPost(t, f, "/account/verify", form)
			if status != http.StatusForbidden || !strings.Contains(body, "no longer signed in") {
				t.Fatalf("reauthentication in an ended session: %d, want 403 signed out\n%.400s", status, body)
			}
			if after := totpState(t, e.store, ann.ID); after.Failures != before.Failures+1 {
				t.Errorf("TOTP failures %d -> %d: the claim should stay counted", before.Failures, after.Failures)
			}
		})
	}
	if n := e.auditCount(t, "reauth_not_evaluated"); n != 2 {
		t.Errorf("reauth_not_evaluated events: %d, want 2", n)
	}
}

func (f *failStore) ReplaceTOTP(ctx context.Context, cred storage.TOTPCredential, recoveryHashes [][]byte, keep []byte, now time.Time) (storage.Ended, error) {
	f.mu.Lock()
	hook := f.beforeReplaceTOTP
	f.beforeReplaceTOTP = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return f.Store.ReplaceTOTP(ctx, cred, recoveryHashes, keep, now)
}

// TestConfirmLostToARenewalStaysCounted: a new authenticator's right code
// whose confirmation lost to a renewal of the recovery codes (not to a
// confirmation of the same offer) keeps its claim counted: a code of a
// key the session made itself proves nothing about the account's, so it
// must not reset the account's counter (review of issue 12, D-4).
func TestConfirmLostToARenewalStaysCounted(t *testing.T) {
	ctx := context.Background()
	clk := accountClock()
	var fs *failStore
	e := newTestEnvOn(t, func(c *Config) { c.Now = clk.now }, func(st storage.Store) storage.Store { fs = &failStore{Store: st}; return fs })
	mine, token := accountSignIn(t, e, clk)
	ann, _ := e.store.UserByUsername(ctx, "ann")
	// One wrong code at a sign-in first: the counter has something to lose.
	f := startFlow(t, e)
	if r := f.post(t, "/login/password", url.Values{"username": {"ann"}, "password": {"correct horse"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("password: %d", r.StatusCode)
	}
	f.load(t, e.ts.URL+login.URL(f.form.Get("id")))
	if r, _ := f.postPage(t, "/login/totp", url.Values{"code": {"000000"}}); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong code: %d", r.StatusCode)
	}
	key, pending := accountOffer(t, mine, token)
	cred, _ := e.store.TOTPByUser(ctx, ann.ID)
	sess, err := e.store.Sessions(ctx, ann.ID, clk.now())
	if err != nil || len(sess) == 0 {
		t.Fatalf("sessions: %v", err)
	}
	fs.mu.Lock()
	fs.beforeReplaceTOTP = func() {
		// The renewal of the codes wins the generation first.
		if _, err := e.store.RenewRecoveryCodes(ctx, ann.ID, [][]byte{secret.Hash("x")}, sess[0].IDHash, cred.Generation, clk.now()); err != nil {
			t.Error(err)
		}
	}
	fs.mu.Unlock()
	clk.add(30 * time.Second)
	before := totpState(t, e.store, ann.ID).Failures
	if status, _ := accountPost(t, mine, "/account/authenticator/confirm", url.Values{"csrf": {token}, "pending": {pending},
		"code": {totp.Code(key, totp.Step(clk.now()))}}); status != http.StatusConflict {
		t.Fatalf("the confirmation that lost to a renewal: %d, want 409", status)
	}
	if after := totpState(t, e.store, ann.ID).Failures; after != before+1 {
		t.Fatalf("TOTP failures %d -> %d: the lost confirmation's claim must stay counted", before, after)
	}
}
