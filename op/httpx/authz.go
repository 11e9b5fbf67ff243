package httpx

import "net/url"

// WithAuthzParams adds params to an authorization response URL, in its
// fragment for response_mode=fragment and in its query otherwise (OAuth
// 2.0 Multiple Response Type Encoding Practices §2.1), replacing any value
// already there under the same names.
func WithAuthzParams(u *url.URL, fragment bool, params url.Values) string {
	out := *u
	if fragment {
		q, _ := url.ParseQuery(out.EscapedFragment())
		for k, v := range params {
			q[k] = v
		}
		out.RawFragment = q.Encode()
		out.Fragment, _ = url.PathUnescape(out.RawFragment)
		return out.String()
	}
	q := out.Query()
	for k, v := range params {
		q[k] = v
	}
	out.RawQuery = q.Encode()
	return out.String()
}
