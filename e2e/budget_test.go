package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestAttackTOTPBudgetNotRefilled: an attacker who knows the password makes
// four wrong TOTP guesses after each of the owner's logins, never reaching
// the consecutive-failure lock. The second-factor budget, which the owner's
// successes do not refill, bounds the wrong codes ever evaluated; once it is
// spent the second factor is hard-locked until an operator unlocks
// (README, "The defaults and their arithmetic").
func TestAttackTOTPBudgetNotRefilled(t *testing.T) {
	t.Parallel()
	const budget, perRound, rounds = 6, 4, 4
	s := StartServer(t, atkArgs(atkMetricsFlag, fastPolicy,
		[]string{"--totp-max-failures", "5", "--totp-budget", fmt.Sprint(budget), "--totp-budget-window", "2160h"})...)
	u := AddUser(t, s.DB, "olive", "correct horse battery")
	c := AddClient(t, s.DB, "app")
	codes := lgRecoveryCodes(t, s, u)

	evaluated, refused := 0, 0
	for round := range rounds {
		f := atkToTOTP(t, NewBrowser(t, "127.0.0.7"), s, c, u.Name, u.Password)
		for _, code := range atkWrongCodes(u, perRound) {
			switch p := f.TOTP(code); p.Status {
			case http.StatusUnauthorized:
				evaluated++
			case http.StatusTooManyRequests:
				refused++
			default:
				t.Fatalf("round %d: wrong code answered %d", round+1, p.Status)
			}
		}
		// The owner signs in between the rounds (with a recovery code, so
		// that no test waits for a new TOTP step; it resets the same
		// consecutive counter a TOTP success does).
		owner := NewBrowser(t, "")
		of := owner.StartFlow(s, c, AuthParams{})
		if p := of.Password(u.Name, u.Password); p.Status != http.StatusSeeOther {
			t.Fatalf("owner password: %d", p.Status)
		}
		of.Form = Hidden(owner.Get(s.URL + "/login/recovery?id=" + url.QueryEscape(of.Form.Get("id"))).Body)
		p := enrPost(of, "/login/recovery", url.Values{"recovery_code": {codes[round]}})
		t.Logf("round %d: %d wrong codes evaluated so far, %d refused; owner's sign-in answered %d", round+1, evaluated, refused, p.Status)
	}
	if evaluated > budget {
		t.Errorf("%d wrong codes evaluated over %d rounds of %d, more than the budget of %d", evaluated, rounds, perRound, budget)
	}
	if evaluated < budget {
		t.Errorf("only %d wrong codes evaluated before the budget of %d was reported spent", evaluated, budget)
	}
	m := atkMetrics(t, s)
	if got := m[atkAttempts("totp", "failed")] + m[atkAttempts("recovery", "failed")]; int(got) != evaluated {
		t.Errorf("metrics count %v failed second-factor attempts, the attack saw %d", got, evaluated)
	}
	if got := m[`idp_second_factor_failed_after_password_total`]; int(got) != evaluated {
		t.Errorf("idp_second_factor_failed_after_password_total = %v, want %d", got, evaluated)
	}
	evs := atkAudit(t, s.DB, u.Name)
	if n := atkCount(evs, "second_factor_failed_after_password"); n != evaluated {
		t.Errorf("audit: %d second_factor_failed_after_password events, want %d", n, evaluated)
	}
	if atkCount(evs, "hard_lock") == 0 {
		t.Error("audit: spending the budget wrote no hard_lock event")
	}

	// Spent: the owner's correct code is refused too, until an operator
	// unlocks.
	f := atkToTOTP(t, NewBrowser(t, ""), s, c, u.Name, u.Password)
	if p := f.TOTP(u.Code(time.Now())); p.Status != http.StatusTooManyRequests {
		t.Fatalf("correct code with the budget spent: %d, want 429", p.Status)
	}
	if out := CLI(t, s.DB, "", "user", "show", u.Name); !strings.Contains(out, "budget") {
		t.Errorf("user show does not show the second-factor budget:\n%s", out)
	}
	CLI(t, s.DB, "", "user", "unlock", u.Name)
	f = atkToTOTP(t, NewBrowser(t, ""), s, c, u.Name, u.Password)
	if p := f.TOTP(u.Code(time.Now())); p.Status != http.StatusSeeOther {
		t.Fatalf("correct code after idp user unlock: %d, want 303", p.Status)
	}
}
