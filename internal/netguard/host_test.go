package netguard

import (
	"net/netip"
	"testing"
)

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

func TestIsPrivateHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.8.9.10": true, "::1": true, "10.1.2.3": true, "172.16.0.1": true,
		"172.31.255.255": true, "192.168.1.1": true, "fc00::1": true, "fd12:3456::1": true,
		"localhost": true, "LOCALHOST.": true, "idp.localhost": true, "169.254.169.254": true,
		"0.0.0.0": true, "::ffff:10.0.0.1": true,
		"172.32.0.1": false, "8.8.8.8": false, "2001:db8::1": false, "auth.example.com": false,
		"localhost.example.com": false,
	} {
		if got := IsPrivateHost(host); got != want {
			t.Errorf("IsPrivateHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestIsPublicAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "2606:4700::1111": true,
		"127.0.0.1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "100.64.0.1": false, "0.0.0.0": false, "::1": false, "::": false,
		"fe80::1": false, "fc00::1": false, "::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false,
		"64:ff9b::a00:1": false, "2002:a00:1::": false, "224.0.0.1": false, "255.255.255.255": false,
	} {
		if got := IsPublicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("IsPublicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}
