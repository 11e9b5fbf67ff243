package mail

import (
	"bytes"
	"html/template"
	"strings"
)

// htmlBody is the HTML alternative of a notification: the catalogue's
// text, paragraph by paragraph, escaped by html/template (a display name
// or an address is never markup), with a paragraph that is one https or
// http URL (a link's own line) made a link.
var htmlBody = template.Must(template.New("mail").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Subject}}</title></head>
<body style="font-family:sans-serif;line-height:1.5;max-width:40em">
{{range .Paras}}{{if .Link}}<p><a href="{{.Link}}">{{.Link}}</a></p>
{{else}}<p>{{range $i, $l := .Lines}}{{if $i}}<br>{{end}}{{$l}}{{end}}</p>
{{end}}{{end}}</body></html>
`))

type para struct {
	Lines []string
	Link  string
}

// HTML renders text (paragraphs separated by a blank line) as the HTML
// part of a mail.
func HTML(subject, text string) string {
	var paras []para
	for _, p := range strings.Split(strings.TrimSpace(text), "\n\n") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.ContainsAny(p, " \n") && (strings.HasPrefix(p, "https://") || strings.HasPrefix(p, "http://")) {
			paras = append(paras, para{Link: p})
			continue
		}
		paras = append(paras, para{Lines: strings.Split(p, "\n")})
	}
	var b bytes.Buffer
	if err := htmlBody.Execute(&b, struct {
		Subject string
		Paras   []para
	}{headerText(subject), paras}); err != nil {
		return ""
	}
	return b.String()
}
