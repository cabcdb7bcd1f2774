package authserver

import "testing"

// releasedSince sees a release of the key (or of its shard) after the
// mark, and nothing before it or for other shards.
func TestKeyedMutexReleasedSince(t *testing.T) {
	var k keyedMutex
	a, b := "grant-a", "grant-b"
	for keyedShard(b) == keyedShard(a) {
		b += "x"
	}
	k.lock(a)() // before the mark
	mark := k.mark()
	if k.releasedSince(a, mark) || k.releasedSince(b, mark) {
		t.Fatal("a release before the mark counted")
	}
	unlock := k.lock(a)
	if k.releasedSince(a, mark) {
		t.Error("a lock still held counted as released")
	}
	unlock()
	if !k.releasedSince(a, mark) {
		t.Error("a release after the mark was missed")
	}
	if k.releasedSince(b, mark) {
		t.Error("a release of another shard counted")
	}
	if len(k.m) != 0 {
		t.Errorf("%d entries left after every unlock", len(k.m))
	}
}
