package mail

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/totp-idp/idp/op/pages"
	"github.com/totp-idp/idp/op/seal"
	"github.com/totp-idp/idp/storage"
	"github.com/totp-idp/idp/storage/sqlite"
)

// BenchmarkNotice measures what a notification adds to the event that
// causes it, on SQLite: the event's audit row alone, and the same row
// with its notice (the user read, the catalogue's text and HTML, the
// seal, the outbox insert in the row's transaction). The difference is
// what a sign-in pays for mail (issue 13: nothing about mail may slow a
// sign-in; `make bench`'s mail section measures the whole login).
func BenchmarkNotice(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "idp.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	sealer, err := seal.New(make([]byte, 32), "")
	if err != nil {
		b.Fatal(err)
	}
	p, err := pages.New("Bench IdP", nil)
	if err != nil {
		b.Fatal(err)
	}
	const users = 1000
	for i := range users {
		if err := st.CreateUser(ctx, storage.User{ID: fmt.Sprintf("u%d", i), Username: fmt.Sprintf("user%d", i), Name: "User",
			Email: fmt.Sprintf("user%d@example.com", i), EmailVerified: true, CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	n := &Notifier{Store: st, Sealer: sealer, Text: p.Text, Product: "Bench IdP"}
	event := func(ctx context.Context, i int) error {
		return st.AppendAudit(ctx, storage.AuditEvent{Time: time.Now(), Type: "login_completed", UserID: fmt.Sprintf("u%d", i%users), Detail: "amr=pwd,otp,mfa"})
	}
	b.Run("event-alone", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := event(ctx, i); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("event-with-notice", func(b *testing.B) {
		before, _ := st.Mails(ctx, storage.MailFilter{Pending: true, Limit: 1 << 30})
		count := 0
		for i := 0; b.Loop(); i++ {
			if err := event(n.With(ctx, fmt.Sprintf("u%d", i%users), NewDevice, "Mozilla/5.0 (X11; Linux x86_64)", "192.0.2.1"), i); err != nil {
				b.Fatal(err)
			}
			count++
		}
		after, _ := st.Mails(ctx, storage.MailFilter{Pending: true, Limit: 1 << 30})
		if len(after)-len(before) != count {
			b.Fatalf("%d events queued %d notices", count, len(after)-len(before))
		}
	})
}
