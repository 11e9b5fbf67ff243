package password

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/totp-idp/idp/op/password/blocklist"
)

// DefaultMinLength is NIST SP 800-63B-4 §3.1.1.2's minimum for a password
// used with a second factor, which this provider always requires.
const DefaultMinLength = 8

// Policy is the rule set a new password must meet (NIST SP 800-63B-4
// §3.1.1.2; docs/THREAT-MODEL.md R-S5): a minimum length in characters
// after normalisation, at most MaxBytes (so at least 64 characters of any
// script are accepted), not on the blocklist of common and breached
// passwords, not one character repeated or a plain sequence, and not
// containing the account's username or e-mail address. There are no
// composition rules (§3.1.1.2 forbids them).
type Policy struct {
	MinLength int // characters; DefaultMinLength when zero
}

// Reason says which rule a password broke.
type Reason string

const (
	TooShort         Reason = "too_short"
	TooLong          Reason = "too_long"
	Common           Reason = "common"
	Repetitive       Reason = "repetitive"
	ContainsUsername Reason = "contains_username"
	ContainsEmail    Reason = "contains_email"
)

// WeakError is a password refused by the policy.
type WeakError struct {
	Reason Reason
	Min    int // the minimum length, for TooShort
}

func (e *WeakError) Error() string {
	switch e.Reason {
	case TooShort:
		return fmt.Sprintf("the password must be at least %d characters long", e.Min)
	case TooLong:
		return fmt.Sprintf("the password must be at most %d bytes long", MaxBytes)
	case Common:
		return "the password is on the list of common and breached passwords"
	case Repetitive:
		return "the password is one character repeated or a plain sequence"
	case ContainsUsername:
		return "the password contains the username"
	case ContainsEmail:
		return "the password contains the e-mail address"
	}
	return "the password is refused"
}

// Check returns a *WeakError when pw breaks a rule, nil otherwise.
// username and email are the account's (empty when it has none).
func (p Policy) Check(pw, username, email string) error {
	minLen := p.MinLength
	if minLen <= 0 {
		minLen = DefaultMinLength
	}
	n := Normalize(pw)
	if len(n) > MaxBytes || len(pw) > MaxBytes {
		return &WeakError{Reason: TooLong}
	}
	if utf8.RuneCountInString(n) < minLen {
		return &WeakError{Reason: TooShort, Min: minLen}
	}
	folded := strings.ToLower(n)
	if blocklist.Contains(folded) {
		return &WeakError{Reason: Common}
	}
	if repetitive(folded) {
		return &WeakError{Reason: Repetitive}
	}
	// Context-specific words (§3.1.1.2): the name people sign in with and
	// the address, whole or its local part; short fragments would refuse
	// too much for nothing.
	if u := strings.ToLower(Normalize(strings.TrimSpace(username))); utf8.RuneCountInString(u) >= minContext && strings.Contains(folded, u) {
		return &WeakError{Reason: ContainsUsername}
	}
	if e := strings.ToLower(Normalize(strings.TrimSpace(email))); e != "" {
		local, _, _ := strings.Cut(e, "@")
		if strings.Contains(folded, e) || utf8.RuneCountInString(local) >= minContext && strings.Contains(folded, local) {
			return &WeakError{Reason: ContainsEmail}
		}
	}
	return nil
}

// minContext is the shortest username or address local part that a
// password may not contain: shorter ones ("ann", "bo") are parts of too
// many good passphrases.
const minContext = 4

// repetitive reports one character repeated ("aaaaaaaa") or a run whose
// characters each step by the same +1 or -1 ("12345678", "hgfedcba").
func repetitive(s string) bool {
	r := []rune(s)
	if len(r) < 2 {
		return false
	}
	step := r[1] - r[0]
	if step < -1 || step > 1 {
		return false
	}
	for i := 2; i < len(r); i++ {
		if r[i]-r[i-1] != step {
			return false
		}
	}
	return true
}
