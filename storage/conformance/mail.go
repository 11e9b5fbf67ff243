package conformance

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/totp-idp/idp/storage"
)

func mail(id string, at time.Time) storage.Mail {
	return storage.Mail{ID: id, UserID: "u1", Kind: "password_changed", To: "u1@example.com", Subject: "Your password was changed",
		Body: []byte("sealed:" + id), CreatedAt: at}
}

// testMailQueue: a queued mail is listed as pending with what it was
// given; queueing its ID again changes nothing; a mail without an ID,
// recipient or kind is refused.
func testMailQueue(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ok(t, s.QueueMail(ctx, mail("m1", t0)), "QueueMail")
	again := mail("m1", t0.Add(time.Hour))
	again.Subject = "other"
	ok(t, s.QueueMail(ctx, again), "QueueMail again")
	ms, err := s.Mails(ctx, storage.MailFilter{Pending: true})
	ok(t, err, "Mails")
	if len(ms) != 1 || ms[0].Subject != "Your password was changed" || string(ms[0].Body) != "sealed:m1" || !ms[0].CreatedAt.Equal(t0) ||
		!ms[0].NextAttemptAt.Equal(t0) || ms[0].To != "u1@example.com" || ms[0].Kind != "password_changed" || ms[0].UserID != "u1" {
		t.Fatalf("the queued mail: %+v", ms)
	}
	for _, bad := range []storage.Mail{{To: "a@example.com", Kind: "k"}, {ID: "x", Kind: "k"}, {ID: "x", To: "a@example.com"}} {
		if err := s.QueueMail(ctx, bad); err == nil {
			t.Errorf("QueueMail(%+v) accepted", bad)
		}
	}
}

// testMailWithEvent: a mail carried by a write's context commits with
// that write and only then (storage.WithMail): the event and its
// notification stand or fall together.
func testMailWithEvent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	addUser(t, s, "u1")
	_, err := s.SetDisabled(storage.WithMail(ctx, mail("with-event", t0)), "u1", true, t0)
	ok(t, err, "SetDisabled with a mail")
	_, err = s.SetDisabled(storage.WithMail(ctx, mail("with-failed-event", t0)), "nobody", true, t0)
	isErr(t, err, storage.ErrNotFound, "SetDisabled of an unknown user with a mail")
	ms, err := s.Mails(ctx, storage.MailFilter{})
	ok(t, err, "Mails")
	if len(ms) != 1 || ms[0].ID != "with-event" {
		t.Fatalf("mails after one committed and one failed write: %+v", ms)
	}
}

// testMailDelivery: the sender's life of a mail. A due mail is claimed
// once per lease; a failed attempt is retried when it says; a sent mail is
// never claimed again; a given-up mail waits for the operator's retry.
func testMailDelivery(t *testing.T, s storage.Store) {
	ctx := context.Background()
	ok(t, s.QueueMail(ctx, mail("a", t0)), "QueueMail a")
	later := mail("later", t0)
	later.NextAttemptAt = t0.Add(time.Hour)
	ok(t, s.QueueMail(ctx, later), "QueueMail later")

	got, err := s.ClaimMails(ctx, t0, time.Minute, 10)
	ok(t, err, "ClaimMails")
	if len(got) != 1 || got[0].ID != "a" || got[0].Attempts != 1 || !got[0].NextAttemptAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("the first claim: %+v, want only a, attempt 1, leased a minute", got)
	}
	if got, _ := s.ClaimMails(ctx, t0.Add(30*time.Second), time.Minute, 10); len(got) != 0 {
		t.Fatalf("a claim within the lease: %+v, want none", got)
	}
	// The lease ran out (the sender died): claimed again, attempt 2.
	got, err = s.ClaimMails(ctx, t0.Add(time.Minute), time.Minute, 10)
	ok(t, err, "ClaimMails after the lease")
	if len(got) != 1 || got[0].ID != "a" || got[0].Attempts != 2 {
		t.Fatalf("the claim after the lease: %+v", got)
	}
	ok(t, s.MailRetryAt(ctx, "a", "connection refused", t0.Add(5*time.Minute)), "MailRetryAt")
	if got, _ := s.ClaimMails(ctx, t0.Add(4*time.Minute), time.Minute, 10); len(got) != 0 {
		t.Fatalf("a claim before the retry time: %+v", got)
	}
	got, _ = s.ClaimMails(ctx, t0.Add(5*time.Minute), time.Minute, 10)
	if len(got) != 1 || got[0].LastError != "connection refused" || got[0].Attempts != 3 {
		t.Fatalf("the claim at the retry time: %+v", got)
	}
	ok(t, s.MailSent(ctx, "a", t0.Add(5*time.Minute)), "MailSent")
	isErr(t, s.MailSent(ctx, "a", t0.Add(6*time.Minute)), storage.ErrNotFound, "MailSent twice")
	isErr(t, s.MailRetryAt(ctx, "a", "x", t0), storage.ErrNotFound, "MailRetryAt of a sent mail")
	isErr(t, s.MailSent(ctx, "nobody", t0), storage.ErrNotFound, "MailSent of an unknown mail")
	if got, _ := s.ClaimMails(ctx, t0.Add(time.Hour), time.Minute, 10); len(got) != 1 || got[0].ID != "later" {
		t.Fatalf("the claim an hour on: %+v, want only the later mail", got)
	}
	ok(t, s.MailGaveUp(ctx, "later", "550 no such user", t0.Add(time.Hour)), "MailGaveUp")
	if got, _ := s.ClaimMails(ctx, t0.Add(48*time.Hour), time.Minute, 10); len(got) != 0 {
		t.Fatalf("a given-up mail claimed: %+v", got)
	}
	failed, err := s.Mails(ctx, storage.MailFilter{Failed: true})
	ok(t, err, "Mails failed")
	if len(failed) != 1 || failed[0].ID != "later" || failed[0].LastError != "550 no such user" || failed[0].FailedAt.IsZero() {
		t.Fatalf("the failed list: %+v", failed)
	}
	if pending, _ := s.Mails(ctx, storage.MailFilter{Pending: true}); len(pending) != 0 {
		t.Fatalf("pending mails: %+v, want none", pending)
	}
	n, err := s.RetryFailedMails(ctx, t0.Add(49*time.Hour))
	ok(t, err, "RetryFailedMails")
	if n != 1 {
		t.Fatalf("RetryFailedMails: %d, want 1", n)
	}
	got, _ = s.ClaimMails(ctx, t0.Add(49*time.Hour), time.Minute, 10)
	if len(got) != 1 || got[0].ID != "later" || got[0].Attempts != 1 {
		t.Fatalf("the claim after the operator's retry: %+v", got)
	}
}

// testMailClaimConcurrent: concurrent senders claim every due mail
// exactly once.
func testMailClaimConcurrent(t *testing.T, s storage.Store) {
	claimMailsOnce(t, s, s)
}

// claimMailsOnce queues 24 mails in a and has 6 senders, alternately on a
// and b, claim them at once: each mail goes to one sender.
func claimMailsOnce(t *testing.T, a, b storage.Store) {
	ctx := context.Background()
	const n = 24
	for i := 0; i < n; i++ {
		ok(t, a.QueueMail(ctx, mail(fmt.Sprintf("c%02d", i), t0)), "QueueMail")
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		st := a
		if g%2 == 1 {
			st = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				got, err := st.ClaimMails(ctx, t0, time.Hour, 3)
				if err != nil {
					t.Errorf("ClaimMails: %v", err)
					return
				}
				mu.Lock()
				for _, m := range got {
					seen[m.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d mails claimed, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("mail %s claimed %d times within its lease", id, c)
		}
	}
}

// testReplicaMailClaims: two stores on one database never claim the same
// mail within its lease (several replicas, one sender at a time per mail).
func testReplicaMailClaims(t *testing.T, a, b storage.Store) {
	claimMailsOnce(t, a, b)
}

// testMailOncePer: a mail with OncePer is written only if none of its kind
// to its user was created within OncePer, also when several are written at
// once (at most one "wrong code after your password" mail an hour).
func testMailOncePer(t *testing.T, s storage.Store) {
	ctx := context.Background()
	once := func(id string, at time.Time) storage.Mail {
		m := mail(id, at)
		m.Kind, m.OncePer = "second_factor_failed", time.Hour
		return m
	}
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.QueueMail(ctx, once(fmt.Sprintf("o%d", i), t0)); err != nil {
				t.Errorf("QueueMail: %v", err)
			}
		}()
	}
	wg.Wait()
	ok(t, s.QueueMail(ctx, once("o-59m", t0.Add(59*time.Minute))), "QueueMail 59 minutes on")
	other := once("o-other-user", t0)
	other.UserID = "u2"
	ok(t, s.QueueMail(ctx, other), "QueueMail another user")
	ok(t, s.QueueMail(ctx, mail("o-other-kind", t0)), "QueueMail another kind")
	ok(t, s.QueueMail(ctx, once("o-61m", t0.Add(61*time.Minute))), "QueueMail 61 minutes on")
	ms, err := s.Mails(ctx, storage.MailFilter{})
	ok(t, err, "Mails")
	byKind := map[string]int{}
	for _, m := range ms {
		if m.UserID == "u1" {
			byKind[m.Kind]++
		}
	}
	if byKind["second_factor_failed"] != 2 || byKind["password_changed"] != 1 || len(ms) != 4 {
		t.Fatalf("mails: %v of %d, want 2 once-an-hour mails (t0 and 61 min) to u1, one of another kind, one to u2", byKind, len(ms))
	}
}

// testMailGC: GC deletes mails sent or given up more than MailRetention
// ago, and keeps newer ones and every pending one, however old.
func testMailGC(t *testing.T, s storage.Store) {
	ctx := context.Background()
	now := t0
	old := now.Add(-storage.MailRetention - time.Hour)
	for _, id := range []string{"sent-old", "sent-new", "gave-up-old", "pending-old", "pending-new"} {
		at := old
		if strings.HasSuffix(id, "-new") {
			at = now.Add(-time.Hour)
		}
		ok(t, s.QueueMail(ctx, mail(id, at)), "QueueMail %s", id)
	}
	ok(t, s.MailSent(ctx, "sent-old", old), "MailSent old")
	ok(t, s.MailSent(ctx, "sent-new", now.Add(-time.Hour)), "MailSent new")
	ok(t, s.MailGaveUp(ctx, "gave-up-old", "550", old), "MailGaveUp old")
	n, err := s.GC(ctx, now)
	ok(t, err, "GC")
	if n != 3 {
		t.Errorf("GC deleted %d rows, want the 2 old finished mails and the old pending one", n)
	}
	ms, _ := s.Mails(ctx, storage.MailFilter{})
	left := map[string]bool{}
	for _, m := range ms {
		left[m.ID] = true
	}
	if len(ms) != 2 || !left["sent-new"] || !left["pending-new"] {
		t.Fatalf("mails left after GC: %v, want sent-new and pending-new", left)
	}
}
