package op

import "testing"

func TestValidateIssuer(t *testing.T) {
	ok := []string{"https://id.example.com", "https://id.example.com/tenant", "http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:9000", "http://127.0.0.5"}
	bad := []string{"http://id.example.com", "http://10.0.0.1:8080", "ftp://x", "https://id.example.com?x=1", "https://id.example.com#f", "127.0.0.1:8080", "https://user@id.example.com"}
	for _, s := range ok {
		if err := ValidateIssuer(s); err != nil {
			t.Errorf("ValidateIssuer(%q): %v", s, err)
		}
	}
	for _, s := range bad {
		if err := ValidateIssuer(s); err == nil {
			t.Errorf("ValidateIssuer(%q) accepted", s)
		}
	}
}
