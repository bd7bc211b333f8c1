package memory

// LimitKeysInUse reports how many limit keys the backend remembers, so that
// tests can see that keys taken from jobs do not pile up.
func (b *Backend) LimitKeysInUse() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.limits)
}
