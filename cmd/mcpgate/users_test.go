package main

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestUsersHashPassword(t *testing.T) {
	for name, tc := range map[string]struct {
		in, want string
		wantErr  bool
	}{
		"plain":        {in: "s3cret pass", want: "s3cret pass"},
		"newline":      {in: "s3cret pass\n", want: "s3cret pass"},
		"crlf":         {in: "s3cret pass\r\n", want: "s3cret pass"},
		"inner spaces": {in: " a b ", want: " a b "},
		"empty":        {in: "", wantErr: true},
		"only newline": {in: "\n", wantErr: true},
		"too long":     {in: strings.Repeat("x", 73), wantErr: true},
		"two lines":    {in: "a\nb\n", wantErr: true},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := newUsersCmd()
			var out, errOut bytes.Buffer
			cmd.SetIn(strings.NewReader(tc.in))
			cmd.SetOut(&out)
			cmd.SetErr(&errOut)
			cmd.SetArgs([]string{"hash-password", "--cost", "10"})
			err := cmd.Execute()
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted %q", tc.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h := strings.TrimSpace(out.String())
			if err := bcrypt.CompareHashAndPassword([]byte(h), []byte(tc.want)); err != nil {
				t.Errorf("hash %q does not match %q: %v", h, tc.want, err)
			}
			if strings.Contains(out.String()+errOut.String(), tc.want) && tc.want != "" {
				t.Error("the password was echoed")
			}
		})
	}
	cmd := newUsersCmd()
	cmd.SetIn(strings.NewReader("pw"))
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"hash-password", "--cost", "4"})
	if err := cmd.Execute(); err == nil {
		t.Error("cost 4 accepted")
	}
}
