package main

import (
	"container/list"
	"sync"
	"time"
)

// ttlStore is a small in-memory map with a fixed time-to-live per entry and
// a cap on the number of entries. When the cap is reached the oldest entry
// is evicted. Because every entry gets the same TTL when it is inserted and
// entries are never extended, insertion order is also expiry order, so
// expired entries are always at the front of the list.
type ttlStore[V any] struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	now   func() time.Time
	items map[string]*list.Element
	order *list.List // of *ttlEntry[V]; front = oldest
}

type ttlEntry[V any] struct {
	key     string
	val     V
	expires time.Time
}

func newTTLStore[V any](ttl time.Duration, max int, now func() time.Time) *ttlStore[V] {
	if max < 1 {
		max = 1
	}
	if now == nil {
		now = time.Now
	}
	return &ttlStore[V]{
		ttl:   ttl,
		max:   max,
		now:   now,
		items: make(map[string]*list.Element),
		order: list.New(),
	}
}

// put stores v under key (replacing any previous value and restarting its
// TTL) and returns the number of live entries evicted to make room.
func (s *ttlStore[V]) put(key string, v V) (evicted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.pruneLocked(now)
	if el, ok := s.items[key]; ok {
		s.order.Remove(el)
		delete(s.items, key)
	}
	for s.order.Len() >= s.max {
		s.removeLocked(s.order.Front())
		evicted++
	}
	s.items[key] = s.order.PushBack(&ttlEntry[V]{key: key, val: v, expires: now.Add(s.ttl)})
	return evicted
}

// get returns the value stored under key if it exists and has not expired.
func (s *ttlStore[V]) get(key string) (V, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.liveLocked(key)
	if !ok {
		var zero V
		return zero, false
	}
	return e.val, true
}

// take returns and removes the value stored under key. At most one caller
// can ever take a given entry.
func (s *ttlStore[V]) take(key string) (V, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.liveLocked(key)
	if !ok {
		var zero V
		return zero, false
	}
	s.removeLocked(s.items[key])
	return e.val, true
}

// update replaces the value of a live entry, keeping its expiry. It reports
// whether the entry existed.
func (s *ttlStore[V]) update(key string, fn func(*V)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.liveLocked(key)
	if !ok {
		return false
	}
	fn(&e.val)
	return true
}

func (s *ttlStore[V]) remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.items[key]; ok {
		s.removeLocked(el)
	}
}

func (s *ttlStore[V]) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(s.now())
	return s.order.Len()
}

func (s *ttlStore[V]) liveLocked(key string) (*ttlEntry[V], bool) {
	el, ok := s.items[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*ttlEntry[V])
	if !s.now().Before(e.expires) {
		s.removeLocked(el)
		return nil, false
	}
	return e, true
}

func (s *ttlStore[V]) pruneLocked(now time.Time) {
	for el := s.order.Front(); el != nil; el = s.order.Front() {
		if now.Before(el.Value.(*ttlEntry[V]).expires) {
			return
		}
		s.removeLocked(el)
	}
}

func (s *ttlStore[V]) removeLocked(el *list.Element) {
	e := s.order.Remove(el).(*ttlEntry[V])
	delete(s.items, e.key)
}
