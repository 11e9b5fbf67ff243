package audit

import "strconv"

// Plural says n things in an event's detail ("1 token", "3 tokens"); the
// plural form is what+"s" unless given.
func Plural(n int, what string, many ...string) string {
	if n == 1 {
		return "1 " + what
	}
	if len(many) > 0 {
		return strconv.Itoa(n) + " " + many[0]
	}
	return strconv.Itoa(n) + " " + what + "s"
}
