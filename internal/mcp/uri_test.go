package mcp

import "testing"

func TestNormalizeURI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"demo://inventory", "demo://inventory"},
		{"demo://public/readme", "demo://public/readme"},
		// RFC 3986 §5.4.2 abnormal examples and §6.2.2.3.
		{"demo://public/../inventory", "demo://public/inventory"},
		{"demo://public/%2e%2e/inventory", "demo://public/inventory"},
		{"demo://public/%2E%2E/inventory", "demo://public/inventory"},
		{"demo://public/.%2e/inventory", "demo://public/inventory"},
		{"file:///srv/public/../secret", "file:///srv/secret"},
		{"file:///srv/public/../../../etc/passwd", "file:///etc/passwd"},
		{"file:///a/b/c/./../../g", "file:///a/g"},
		{"file:///a/b/..", "file:///a/"},
		{"file:///a/b/.", "file:///a/b/"},
		{"mid/content=5/../6", "mid/6"},
		{"demo:public/../x", "demo:/x"}, // as §5.2.4 computes it
		{"file:///a/.hidden/..x", "file:///a/.hidden/..x"},
		// §6.2.2.1 case, §6.2.2.2 unreserved decoding.
		{"HTTP://Example.COM/A%7eb", "http://example.com/A~b"},
		{"http://User@Example.com/", "http://User@example.com/"},
		{"demo://x/%7E%41%5a%30%2D%5F%2E", "demo://x/~AZ0-_."},
		{"demo://x/a%2fb%3f", "demo://x/a%2Fb%3F"},
		{"demo://x/%c3%a9", "demo://x/%C3%A9"},
		{"demo://x/é", "demo://x/é"},
		// Query and fragment keep their dots.
		{"demo://x/a?p=../b#../c", "demo://x/a?p=../b#../c"},
		{"demo://x/a/../b?q", "demo://x/b?q"},
	}
	for _, tt := range tests {
		got, err := NormalizeURI(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("NormalizeURI(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		// Idempotent.
		if again, _ := NormalizeURI(got); again != got {
			t.Errorf("NormalizeURI(%q) = %q, not idempotent", got, again)
		}
	}
	for _, bad := range []string{"demo://x/%", "demo://x/%2", "demo://x/%zz", "demo://x/%g0"} {
		if got, err := NormalizeURI(bad); err == nil {
			t.Errorf("NormalizeURI(%q) = %q, want an error", bad, got)
		}
	}
}

func FuzzNormalizeURI(f *testing.F) {
	for _, s := range []string{"demo://public/../inventory", "file:///a/%2e%2E/b", "HTTP://X/%7e", "../..", "%", ".///00000A0", "./A:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeURI(s)
		if err != nil {
			return
		}
		if again, err := NormalizeURI(n); err != nil || again != n {
			t.Fatalf("not idempotent: %q → %q → %q (%v)", s, n, again, err)
		}
	})
}
