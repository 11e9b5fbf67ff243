package password

import (
	"errors"
	"strings"
	"testing"

	"github.com/totp-idp/idp/op/password/blocklist"
)

// TestPolicy: each rule of NIST SP 800-63B-4 §3.1.1.2 refuses what it
// should, says which rule, and accepts what it must (long passphrases,
// any script, no composition rules).
func TestPolicy(t *testing.T) {
	p := Policy{}
	for _, c := range []struct {
		pw, user, email string
		want            Reason // "" = accepted
	}{
		{"short7!", "ann", "", TooShort},
		{"ﬀﬀﬀ", "ann", "", TooShort},  // 3 ligatures, 6 letters after NFKC
		{"ﬀﬀﬀﬀ", "ann", "", TooShort}, // 8 letters after NFKC, but 4 typed (B-F4)
		{"ﬀﬀﬀﬀﬀﬀﬀﬀ", "ann", "", Repetitive},
		// B-F3: l33t before the digits and signs after the word.
		{"p@ssword1", "ann", "", Common},
		{"b@seball2024", "ann", "", Common},
		{"s3cr3t!!", "ann", "", Common},
		{"dr@gon1!", "ann", "", Common},
		{"l3tm3in2024", "ann", "", Common},
		{"m@st3r2024", "ann", "", Common},
		{"pr1nc3ss!", "ann", "", Common},
		// B-F4: invisible characters count for nothing, and are not
		// there for the list either.
		{"xq7\u200b\u200b\u200b\u200b\u200b", "ann", "", TooShort},
		{"\ufdfa", "ann", "", TooShort},
		{"pass\ufe0fword", "ann", "", Common},
		{"pass\u034fword", "ann", "", Common},
		{"pass\u3164word", "ann", "", Common},
		{"my dog is", "ann", "", ""}, // spaces count: 9 characters
		// C-F2: spaces alone, and l33t at either end of the word.
		{"        ", "ann", "", Repetitive},
		{"a       ", "ann", "", Repetitive},
		{"       1", "ann", "", Repetitive},
		{"\u3000\u3000\u3000\u3000\u3000\u3000\u3000\u3000", "ann", "", Repetitive},
		{"@dmin123", "ann", "", Common},
		{"$unshine1", "ann", "", Common},
		{"$uperman1", "ann", "", Common},
		{"4ngel123", "ann", "", Common},
		{"appl3123", "ann", "", Common},
		{"@lexander1", "ann", "", Common},
		{"!nternet2024", "ann", "", Common},
		// D-3: long runs around a l33t word, punctuation inside it.
		{"p@ssword123456789", "ann", "", Common},
		{"s3cr3t!!!!!!!!!", "ann", "", Common},
		{"123456789p@ssword", "ann", "", Common},
		{"dr@gon2024202420", "ann", "", Common},
		{"123456789@dmin", "ann", "", Common},
		{"!!!!!!!!!@dmin", "ann", "", Common},
		{"$unshine123456789", "ann", "", Common},
		{"pass.word", "ann", "", Common},
		{"pass_word", "ann", "", Common},
		{"P.a.s.s.w.o.r.d", "ann", "", Common},
		// E-4: l33t and symbols with punctuation inside the word.
		{"p.@.s.s.w.o.r.d", "ann", "", Common},
		{"p_@_s_s_w_0_r_d", "ann", "", Common},
		{"s.3.c.r.3.t", "ann", "", Common},
		{"b@se.ball", "ann", "", Common},
		{"p@ss-w0rd", "ann", "", Common},
		{"i-l0ve-y0u", "ann", "", Common},
		{"pass=word", "ann", "", Common},
		{"pass|word", "ann", "", Common},
		{"pass<word>", "ann", "", Common},
		{"4 score and 7 years ago", "ann", "", ""},
		{"99 luftballons forever", "ann", "", ""},
		{"2 dragons ate my homework", "ann", "", ""},
		{"Tr0ub4dor&3 is long", "ann", "", ""},
		{"password", "ann", "", Common},
		{"PassWord", "ann", "", Common}, // case-insensitive
		{"ｐａｓｓｗｏｒｄ", "ann", "", Common}, // full-width folds to ASCII (NFKC)
		{"iloveyou1", "ann", "", Common},
		{"aaaaaaaaaa", "ann", "", Repetitive},
		{"13579bdfhj", "ann", "", ""},
		{"abcdefghijk", "ann", "", Repetitive},
		{"9876543210", "ann", "", Repetitive},
		{"my-ann-secret!", "Ann", "", ""}, // three letters: too short a name to refuse on
		{"my-dora-secret!", "Dora", "", ContainsUsername},
		{"xx-annabelle-xx", "annabelle", "", ContainsUsername},
		{"xx-ANNABELLE-xx", "annabelle", "", ContainsUsername},
		{"hello.bob.smith", "bsmith", "bob.smith@example.com", ContainsEmail},
		{"correct horse battery staple", "ann", "ann@example.com", ""},
		{"Fähre über den Fluß 42", "ann", "", ""},
		{"日本語のパスワードです", "ann", "", ""},
		{strings.Repeat("long passphrase ", 4), "ann", "", ""},    // 64 characters
		{strings.Repeat("ü", 500), "ann", "", Repetitive},         // 1000 bytes: accepted by length
		{strings.Repeat("xyz", MaxBytes/3+1), "ann", "", TooLong}, // over 1024 bytes
		{strings.Repeat("\ufdfa", 64), "ann", "", ""},             // 64 characters, 2112 bytes after NFKC (review F7)
		{"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", "ann", "", NotText},  // invalid UTF-8 (F7)
		// What the review got past the list (F6): spaces and invisible
		// characters, digits and signs around a listed word, l33t, and
		// repeated units.
		{"password ", "ann", "", Common},
		{" password", "ann", "", Common},
		{"pass word", "ann", "", Common},
		{"password\u00a0", "ann", "", Common},
		{"pass\u200bword", "ann", "", Common},
		{"Password1!", "ann", "", Common},
		{"Passw0rd!", "ann", "", Common},
		{"P@ssw0rd1", "ann", "", Common},
		{"Summer2024", "ann", "", Common},
		{"Password123!", "ann", "", Common},
		{"Qwerty123!", "ann", "", Common},
		{"!!dragon2024", "ann", "", Common},
		{"passwordpassword", "ann", "", Repetitive},
		{"qwertyqwerty", "ann", "", Repetitive},
		{"abababab", "ann", "", Repetitive},
		{"zor\u200bblatt-2026!!", "zorblatt", "", ContainsUsername},
		// And what must still pass: passphrases with digits and signs.
		{"correct horse battery staple", "ann", "", ""},
		{"Tr0ub4dor&3 horse", "ann", "", ""},
		{"my cat ate 3 tulips!", "ann", "", ""},
	} {
		err := p.Check(c.pw, c.user, c.email)
		var w *WeakError
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q refused: %v", c.pw, err)
		case c.want != "" && (!errors.As(err, &w) || w.Reason != c.want):
			t.Errorf("%q: %v, want %s", c.pw, err, c.want)
		}
	}
	if err := (Policy{MinLength: 12}).Check("elevenchars", "", ""); err == nil || !strings.Contains(err.Error(), "at least 12") {
		t.Errorf("MinLength 12: %v", err)
	}
	if n := blocklist.Len(); n < 40000 {
		t.Errorf("blocklist has %d entries, want the shipped 47 023", n)
	}
}
