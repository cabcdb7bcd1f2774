package mcp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWriteError(t *testing.T) {
	tests := []struct {
		name    string
		id      json.RawMessage
		message string
		wantID  string
	}{
		{"number id", raw(`7`), "bad", `7`},
		{"string id", raw(`"a\"b"`), "bad", `"a\"b"`},
		{"no id is null", nil, "bad", `null`},
		{"invalid id is null", raw(`{`), "bad", `null`},
		// %q would write \x01 and \xff, which are not JSON escapes.
		{"control and invalid UTF-8", raw(`1`), "a\x01b\xffc \"q\" é \u2028", `1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			WriteError(rec, http.StatusBadGateway, tt.id, CodeInternalError, tt.message)
			if rec.Code != http.StatusBadGateway {
				t.Errorf("status = %d", rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q", cc)
			}
			var got struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q is not JSON: %v", rec.Body.String(), err)
			}
			if got.JSONRPC != "2.0" || string(got.ID) != tt.wantID || got.Error.Code != CodeInternalError {
				t.Errorf("body = %s", rec.Body.String())
			}
			// Invalid UTF-8 becomes U+FFFD; everything else survives.
			want := string([]rune(tt.message))
			if got.Error.Message != want {
				t.Errorf("message = %q, want %q", got.Error.Message, want)
			}
		})
	}
}

func TestWriteErrorData(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteErrorData(rec, http.StatusOK, nil, -32042, "link", map[string]any{"elicitations": []string{"x"}})
	if got, want := rec.Body.String(), `{"jsonrpc":"2.0","id":null,"error":{"code":-32042,"message":"link","data":{"elicitations":["x"]}}}`; got != want {
		t.Errorf("body = %s\nwant %s", got, want)
	}
	if rec.Code != http.StatusOK || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("status %d, headers %v", rec.Code, rec.Header())
	}
}
