package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/totp-idp/idp/op/admin"
	"github.com/totp-idp/idp/storage"
)

func (e *env) audit(ctx context.Context, args []string) error {
	fs, db := e.newFlags("audit")
	user := fs.String("user", "", "only events of this user")
	since := fs.String("since", "", "only events at or after TIME (RFC 3339, YYYY-MM-DD, or a duration like 24h meaning that long ago)")
	limit := fs.Int("limit", 0, "at most N events (0: all)")
	asJSON := fs.Bool("json", false, "print JSON lines")
	pos, err := parseArgs(fs, args, "")
	if err != nil {
		return err
	}
	if err := needArgs(pos, 0, "no arguments"); err != nil {
		return err
	}
	f := storage.AuditFilter{Limit: *limit}
	if *since != "" {
		t, err := parseSince(*since, time.Now().UTC())
		if err != nil {
			return usageError{err.Error()}
		}
		f.Since = t
	}
	st, err := openStore(ctx, *db)
	if err != nil {
		return err
	}
	defer st.Close()
	if *user != "" {
		u, err := (&admin.Admin{Store: st}).UserByName(ctx, *user)
		if err != nil {
			return notFound("user", *user, err)
		}
		f.UserID = u.ID
	}
	events, err := st.ListAudit(ctx, f)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, ev := range events {
			if err := enc.Encode(map[string]any{
				"id": ev.ID, "time": ev.Time.UTC().Format(time.RFC3339), "event": ev.Type, "user_id": ev.UserID,
				"username": ev.Username, "client_id": ev.ClientID, "ip": ev.ClientIP, "request_id": ev.RequestID, "detail": ev.Detail,
			}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tEVENT\tUSER\tCLIENT\tIP\tDETAIL")
	for _, ev := range events {
		who := ev.Username
		if who == "" {
			who = ev.UserID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ev.Time.UTC().Format(time.RFC3339), printable(ev.Type),
			printable(who), printable(ev.ClientID), printable(ev.ClientIP), printable(ev.Detail))
	}
	return tw.Flush()
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("--since %q: use RFC 3339 (2026-11-28T10:00:00Z), a date (2026-11-28) or a duration (24h)", s)
}
