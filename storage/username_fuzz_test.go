package storage

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzCanonicalUsername: whatever is typed, a canonical name is valid
// UTF-8, non-empty, at most MaxUsernameLen bytes, free of invisible and
// reordering characters, and canonical already (canonicalising it again
// changes nothing), so every spelling of a name is one counter
// (docs/THREAT-MODEL.md rule 1). Seeds: the attack suite's odd names.
func FuzzCanonicalUsername(f *testing.F) {
	for _, s := range []string{"Alice", " ALICE ", "ａｌｉｃｅ", "ali\u202ece", "al\u200bice", "ﬃ", "İstanbul", "ß", "ǅ",
		"\x00alice", "\u3164", "\u2800", "\u0301a", "a\u2028b", strings.Repeat("a", MaxUsernameLen+1), "\xff\xfe", "Ω", "Ｋ", "\u1e9e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := CanonicalUsername(s)
		if err != nil {
			return
		}
		if c == "" || len(c) > MaxUsernameLen || !utf8.ValidString(c) {
			t.Fatalf("CanonicalUsername(%q) = %q", s, c)
		}
		for _, r := range c {
			if invisible(r) || r == utf8.RuneError {
				t.Fatalf("CanonicalUsername(%q) = %q keeps %U", s, c, r)
			}
		}
		if first, _ := utf8.DecodeRuneInString(c); unicode.Is(unicode.M, first) || unicode.IsSpace(first) {
			t.Fatalf("CanonicalUsername(%q) = %q starts with %U", s, c, first)
		}
		again, err := CanonicalUsername(c)
		if err != nil || again != c {
			t.Fatalf("not canonical: CanonicalUsername(%q) = %q, then %q (%v)", s, c, again, err)
		}
	})
}
