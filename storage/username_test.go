package storage

import (
	"strings"
	"testing"
)

func TestCanonicalUsernameVariantsShareOneKey(t *testing.T) {
	for _, v := range []string{"alice", "Alice", "ALICE", " alice", "alice ", "\talice\n", "ａｌｉｃｅ", "ＡＬＩＣＥ"} {
		got, err := CanonicalUsername(v)
		if err != nil || got != "alice" {
			t.Errorf("CanonicalUsername(%q) = %q, %v; want alice", v, got, err)
		}
	}
	// NFKC folds compatibility forms: "ﬁ" ligature → "fi".
	if got, _ := CanonicalUsername("ﬁona"); got != "fiona" {
		t.Errorf("ligature: %q", got)
	}
}

func TestCanonicalUsernameRejects(t *testing.T) {
	for _, v := range []string{"", "   ", "a\x00b", "a\nb", "\xff\xfe", strings.Repeat("a", MaxUsernameLen+1),
		"evil\u202egnp.exe", "a\u202ab", "two\u2028lines", "para\u2029graph", "zero\u200bwidth", "join\u200dme",
		"soft\u00adhyphen", "bom\ufeff", "a\u0085b", "tag\U000e0041",
		"alice\u3164", "alice\u115f", "alice\u1160", "alice\uffa0", "alice\u2800", "\u0301alice"} {
		if got, err := CanonicalUsername(v); err == nil {
			t.Errorf("CanonicalUsername(%q) = %q, want error", v, got)
		}
	}
}
