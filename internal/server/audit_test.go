package server_test

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/demo"
)

// TestAuditRecordsEveryRequest: audit is the outermost layer, so 401s,
// denials and allowed calls all produce records with the caller's identity,
// and the file's hash chain verifies.
func TestAuditRecordsEveryRequest(t *testing.T) {
	env := startGateway(t, "", demo.Options{})
	reader := env.idp.token(t, env.url, map[string]any{"groups": []string{"mcp-readers"}, "email": "bob@example.test"})
	do(t, "POST", env.url, "", initBody, nil) // 401
	do(t, "POST", env.url, reader, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"delete_vm","arguments":{"vm_name":"web-1","password":"hunter2"}}}`, nil)
	r := do(t, "POST", env.url, reader, initBody, nil)
	if r.status != 200 {
		t.Fatalf("initialize: %d", r.status)
	}
	do(t, "POST", env.url, reader, initBody, map[string]string{"Host": "rebind.example.com"}) // DNS rebinding

	rep, err := audit.VerifyFiles([]string{env.auditPath}, audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("audit chain does not verify: %v", err)
	}
	if rep.Records < 5 { // start checkpoint + 4 requests
		t.Errorf("records = %d", rep.Records)
	}
	f, err := os.Open(env.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got, forward []audit.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec audit.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		switch rec.Event {
		case audit.EventCheckpoint:
		case audit.EventForward:
			forward = append(forward, rec)
		default:
			got = append(got, rec)
		}
	}
	if len(got) != 4 {
		t.Fatalf("got %d request records, want 4: %+v", len(got), got)
	}
	// Only the forwarded request (initialize) has a decision record written
	// before the backend saw it, and its outcome record follows.
	if len(forward) != 1 || forward[0].RequestID != got[2].RequestID || forward[0].Seq >= got[2].Seq ||
		forward[0].Decision != audit.DecisionAllow || forward[0].Status != 0 || forward[0].Subject != "alice" {
		t.Errorf("FORWARD records = %+v", forward)
	}
	if r := got[3]; r.Status != 403 || r.Event != "FORBIDDEN_HOST" || r.Decision != audit.DecisionDeny {
		t.Errorf("foreign Host record = %+v", r)
	}
	if r := got[0]; r.Status != 401 || r.Event != audit.EventAuthFailed || r.Decision != audit.DecisionDeny {
		t.Errorf("401 record = %+v", r)
	}
	deny := got[1]
	if deny.Status != 403 || deny.Decision != audit.DecisionDeny || deny.Tool != "delete_vm" || deny.Subject != "alice" ||
		deny.Issuer != env.idp.srv.URL || deny.Email != "bob@example.test" || deny.Rule == "" || deny.Reason == "" {
		t.Errorf("deny record = %+v", deny)
	}
	if strings.Contains(string(deny.Args), "hunter2") || !strings.Contains(string(deny.Args), "web-1") {
		t.Errorf("args not redacted as expected: %s", deny.Args)
	}
	if r := got[2]; r.Status != 200 || r.Decision != audit.DecisionAllow || r.Method != "initialize" || r.Result != audit.ResultSuccess {
		t.Errorf("allow record = %+v", r)
	}
}
