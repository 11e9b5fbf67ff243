package storage

import "time"

// SigningKeyAt returns the key of keys that signs at time at: the one with
// the latest activation at or before at (zero counts as its creation)
// that is not retired at at. ok is false when there is none.
func SigningKeyAt(keys []SigningKey, at time.Time) (k SigningKey, ok bool) {
	var best time.Time
	for _, c := range keys {
		activation := c.ActivatesAt
		if activation.IsZero() {
			activation = c.CreatedAt
		}
		if activation.After(at) || !c.RetiredAt.IsZero() && !c.RetiredAt.After(at) {
			continue
		}
		if !ok || activation.After(best) {
			k, best, ok = c, activation, true
		}
	}
	return k, ok
}
