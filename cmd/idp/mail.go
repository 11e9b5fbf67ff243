package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/op/mail"
	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/storage"
)

// mail: the operator's view of the outbox (issue 13): `idp mail queue`
// lists pending and given-up mails, `idp mail retry` makes the given-up
// ones due again (audited).
func (e *env) mail(ctx context.Context, args []string) (err error) {
	if len(args) == 0 {
		return usageError{"idp mail: give queue or retry"}
	}
	sub := args[0]
	if sub != "queue" && sub != "retry" {
		return usageError{fmt.Sprintf("idp mail: unknown subcommand %q", sub)}
	}
	fs, db := e.newFlags("mail " + sub)
	var asJSON, failed, sent bool
	limit := 100
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if sub == "queue" {
		fs.BoolVar(&failed, "failed", false, "only the mails the sender gave up")
		fs.BoolVar(&sent, "all", false, "sent mails too")
		fs.IntVar(&limit, "limit", 100, "at most N mails, newest first")
	}
	pos, err := parseArgs(fs, args[1:], "")
	if err != nil {
		return err
	}
	if err := needArgs(pos, 0, "no arguments"); err != nil {
		return err
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	if sub == "retry" {
		adm := &admin.Admin{Store: st}
		n, err := st.RetryFailedMails(ctx, time.Now().UTC())
		if err != nil {
			return err
		}
		adm.Audit(ctx, "mail_retry", fmt.Sprintf("%d given-up mails due again", n))
		defer unaudited(adm, &err)
		if asJSON {
			return e.changed(adm, map[string]any{"retried": n})
		}
		fmt.Fprintf(e.stdout, "%d given-up mails are due again; running servers send them within --mail-interval.\n", n)
		return nil
	}
	// By default everything not sent: pending and given up.
	f := storage.MailFilter{Pending: true, Failed: true, Limit: limit}
	switch {
	case sent:
		f = storage.MailFilter{Limit: limit}
	case failed:
		f = storage.MailFilter{Failed: true, Limit: limit}
	}
	mails, err := st.Mails(ctx, f)
	if err != nil {
		return err
	}
	state := func(m storage.Mail) string {
		switch {
		case !m.SentAt.IsZero():
			return "sent"
		case !m.FailedAt.IsZero():
			return "gave up"
		}
		return "pending"
	}
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, m := range mails {
			if err := enc.Encode(map[string]any{"id": m.ID, "state": state(m), "kind": m.Kind, "to": m.To, "subject": m.Subject,
				"user_id": m.UserID, "created": stamp(m.CreatedAt), "attempts": m.Attempts, "next_attempt": stamp(m.NextAttemptAt),
				"sent": stamp(m.SentAt), "gave_up": stamp(m.FailedAt), "last_error": m.LastError}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CREATED\tSTATE\tKIND\tTO\tATTEMPTS\tNEXT\tLAST ERROR")
	for _, m := range mails {
		next := stamp(m.NextAttemptAt)
		if state(m) != "pending" {
			next = ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", stamp(m.CreatedAt), state(m), printable(m.Kind), printable(m.To), m.Attempts, next,
			printable(m.LastError))
	}
	return tw.Flush()
}

// notifier is the operator commands' mail.Notifier: the catalogue's texts
// sealed with the secret key. Without a key file (none given, no DB.key)
// there is none, and the command says no notice was queued.
func (e *env) notifier(ctx context.Context, st storage.Store, keyFile, db, product string) (*mail.Notifier, error) {
	if keyFileFor(keyFile, db) == "" {
		fmt.Fprintln(e.stderr, "idp: no secret key (--secret-key-file, or DB.key): the user is not mailed a notice of this change")
		return nil, nil
	}
	sealer, _, err := loadSealer(keyFile, db, false)
	if err != nil {
		return nil, err
	}
	if err := sealer.Bind(ctx, st); err != nil {
		return nil, err
	}
	p, err := pages.New(product, nil)
	if err != nil {
		return nil, err
	}
	return &mail.Notifier{Store: st, Sealer: sealer, Text: p.Text, Product: product}, nil
}
