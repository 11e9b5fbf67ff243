package password

import (
	"fmt"
	"strings"
	"unicode"
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
	NotText          Reason = "not_text"
)

// Reasons are all the reasons, for the pages' message catalogue.
var Reasons = []Reason{TooShort, TooLong, Common, Repetitive, ContainsUsername, ContainsEmail, NotText}

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
	case NotText:
		return "the password contains bytes that are not text (invalid UTF-8)"
	}
	return "the password is refused"
}

// CheckLength is the rules' length bounds alone, which an operator's
// --allow-weak keeps (NIST SP 800-63B-4 §3.1.1.2: the minimum is a SHALL;
// review of issue 12, B-F5).
func (p Policy) CheckLength(pw string) error {
	minLen := p.MinLength
	if minLen <= 0 {
		minLen = DefaultMinLength
	}
	// The typed bytes are bounded, as the hasher bounds them: NFKC may
	// grow a string 18-fold (U+FDFA), and 64 such characters must pass.
	if len(pw) > MaxBytes {
		return &WeakError{Reason: TooLong}
	}
	if !utf8.ValidString(pw) {
		return &WeakError{Reason: NotText}
	}
	// The length is of what a person sees and types: invisible characters
	// do not count, and a character NFKC expands ("\ufdfa" is 18 letters)
	// counts once (review of issue 12, B-F4). Spaces count.
	if min(visibleLength(pw), visibleLength(Normalize(pw))) < minLen {
		return &WeakError{Reason: TooShort, Min: minLen}
	}
	return nil
}

// Check returns a *WeakError when pw breaks a rule, nil otherwise.
// username and email are the account's (empty when it has none).
func (p Policy) Check(pw, username, email string) error {
	if err := p.CheckLength(pw); err != nil {
		return err
	}
	n := Normalize(pw)
	folded := strings.ToLower(n)
	// squeezed drops what does not change what a person remembers: spaces
	// and invisible characters (a zero-width space inside "password").
	squeezed := squeeze(folded)
	for _, v := range variants(squeezed) {
		if blocklist.Contains(v) {
			return &WeakError{Reason: Common}
		}
	}
	if blocklist.Contains(folded) {
		return &WeakError{Reason: Common}
	}
	if repetitive(squeezed) || repeatedUnit(squeezed) {
		return &WeakError{Reason: Repetitive}
	}
	// Context-specific words (§3.1.1.2): the name people sign in with and
	// the address, whole or its local part; short fragments would refuse
	// too much for nothing.
	if u := squeeze(strings.ToLower(Normalize(strings.TrimSpace(username)))); utf8.RuneCountInString(u) >= minContext && strings.Contains(squeezed, u) {
		return &WeakError{Reason: ContainsUsername}
	}
	if e := squeeze(strings.ToLower(Normalize(strings.TrimSpace(email)))); e != "" {
		local, _, _ := strings.Cut(e, "@")
		if strings.Contains(squeezed, e) || utf8.RuneCountInString(local) >= minContext && strings.Contains(squeezed, local) {
			return &WeakError{Reason: ContainsEmail}
		}
	}
	return nil
}

// squeeze removes white space and invisible characters.
func squeeze(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || invisible(r) {
			return -1
		}
		return r
	}, s)
}

// invisible: characters that show nothing and change nothing a person
// remembers: controls, format characters (zero-width, bidi), variation
// selectors, the combining grapheme joiner and the blank letters (the
// username rule's set, storage.Printable, and the selectors).
func invisible(r rune) bool {
	switch {
	case r == '\u034f', r == '\u115f', r == '\u1160', r == '\u3164', r == '\uffa0', r == '\u2800',
		'\ufe00' <= r && r <= '\ufe0f', '\U000e0100' <= r && r <= '\U000e01ef', '\u180b' <= r && r <= '\u180f':
		return true
	}
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// visibleLength is the number of characters of s that are not invisible.
func visibleLength(s string) int {
	n := 0
	for _, r := range s {
		if !invisible(r) {
			n++
		}
	}
	return n
}

// variants are the forms of a squeezed password compared with the list:
// itself, its core without the digits and signs around it ("Password1!",
// "!!dragon2024", "Summer2024"), and, with the usual substitutions undone,
// every cut of the signs and digits around it: a substitution may stand
// at either end of the word ("@dmin123", "$unshine1", "appl3123") or
// inside it ("P@ssw0rd1", "s3cr3t!!"; reviews of issue 12, B-F3 and
// C-F2). The runs cut are bounded, so a password is looked up a bounded
// number of times.
func variants(s string) []string {
	notLetter := func(r rune) bool { return !unicode.IsLetter(r) }
	core := strings.TrimFunc(s, notLetter)
	out := []string{s}
	if core != "" && core != s {
		out = append(out, core)
	}
	// Punctuation and symbols inside the word ("pass.word", "pass=word",
	// "p_a_s_s"), but the signs that stand for letters ("p.@.s.s"; reviews
	// D-3, E-4): the form without them is compared too, with l33t undone
	// below.
	d := strings.Map(func(r rune) rune {
		if (unicode.IsPunct(r) || unicode.IsSymbol(r)) && !isLeet(r) {
			return -1
		}
		return r
	}, s)
	dr := []rune(d)
	if d != s && d != "" {
		out = append(out, d, strings.TrimFunc(d, notLetter))
	} else {
		dr = nil
	}
	r := []rune(s)
	lead := 0
	for lead < len(r) && notLetter(r[lead]) {
		lead++
	}
	trail := 0
	for trail < len(r)-lead && notLetter(r[len(r)-1-trail]) {
		trail++
	}
	for _, table := range []map[rune]rune{leet, leetL} {
		undo := func(x []rune) string {
			b := make([]rune, len(x))
			for i, c := range x {
				if m, ok := table[c]; ok {
					c = m
				}
				b[i] = c
			}
			return string(b)
		}
		if u := undo(r); u != s {
			out = append(out, u, strings.TrimFunc(u, notLetter))
		}
		if c := []rune(core); len(c) > 0 {
			out = append(out, undo(c)) // l33t inside the word, whatever surrounds it
		}
		if len(dr) > 0 {
			u := undo(dr)
			out = append(out, u, strings.TrimFunc(u, notLetter), undo([]rune(strings.TrimFunc(d, notLetter))))
		}
		for _, i := range cuts(lead) {
			for _, j := range cuts(trail) {
				if i == 0 && j == 0 || len(r)-i-j <= 0 {
					continue
				}
				out = append(out, undo(r[i:len(r)-j]))
			}
		}
	}
	return out
}

// cuts are the lengths cut from a run of n signs and digits at one end of
// a password: up to maxCut from the password's edge, and up to maxCut
// from the word's (a long run of digits may hide a substitution next to
// the word, "123456789@dmin").
func cuts(n int) []int {
	var out []int
	for k := 0; k <= n && k <= maxCut; k++ {
		out = append(out, k)
	}
	for k := max(maxCut+1, n-maxCut); k <= n; k++ {
		out = append(out, k)
	}
	return out
}

// maxCut bounds the signs and digits cut from each end of a password for
// the list's comparison.
const maxCut = 8

// isLeet: r stands for a letter in the substitution tables.
func isLeet(r rune) bool {
	_, ok := leet[r]
	return ok
}

// leet and leetL undo the common letter substitutions; 1 stands for i or l.
var (
	leet  = map[rune]rune{'@': 'a', '4': 'a', '3': 'e', '0': 'o', '1': 'i', '!': 'i', '$': 's', '5': 's', '7': 't', '+': 't'}
	leetL = map[rune]rune{'@': 'a', '4': 'a', '3': 'e', '0': 'o', '1': 'l', '!': 'l', '$': 's', '5': 's', '7': 't', '+': 't'}
)

// repeatedUnit reports a password that is one unit said twice or more
// when the unit is short ("abababab") or common ("passwordpassword").
func repeatedUnit(s string) bool {
	r := []rune(s)
	for p := 1; p <= len(r)/2; p++ {
		if len(r)%p != 0 {
			continue
		}
		unit := string(r[:p])
		if strings.Repeat(unit, len(r)/p) != s {
			continue
		}
		if p <= 4 || blocklist.Contains(unit) {
			return true
		}
		for _, v := range variants(unit) {
			if blocklist.Contains(v) {
				return true
			}
		}
		return false
	}
	return false
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
		// Spaces and at most one other character ("        ", "a" and
		// seven spaces; review C-F2): nothing to remember.
		return true
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
