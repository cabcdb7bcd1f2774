package netguard

import "testing"

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LocalHost": true, "127.0.0.1": true, "127.8.9.10": true,
		"::1": true, "[::1]": true, "::ffff:127.0.0.1": true, "[::ffff:127.0.0.1]": true,
		"": false, "localhost.": false, "idp.localhost": false, "localhost.example.com": false,
		"127.0.0.1.nip.io": false, "128.0.0.1": false, "10.0.0.1": false, "0.0.0.0": false,
		"::": false, "::2": false, "fe80::1%lo": false, "::1%lo": false, "[::1": false,
		"example.com": false, "2130706433": false, "0x7f.0.0.1": false, "127.1": false,
	} {
		if got := IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
