package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	_ "modernc.org/sqlite" // the driver mcpgate's SQLite store uses
)

// floorServer is "floor-normal", the yardstick of the token endpoint: the
// least an authorization server must do per grant. It parses the form,
// signs one ES256 JWT and inserts one row in one SQLite transaction (WAL,
// synchronous=NORMAL, one writer connection, the statement prepared once),
// with the SQLite driver and JOSE library mcpgate uses. It checks nothing:
// codes and refresh tokens are not looked up, so exchange and refresh cost
// the same.
type floorServer struct {
	db     *sql.DB
	insert *sql.Stmt
	signer jose.Signer
}

func newFloorServer(ctx context.Context, path string) (*floorServer, error) {
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS tokens (
		k TEXT PRIMARY KEY, client_id TEXT NOT NULL, subject TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)`); err != nil {
		db.Close()
		return nil, err
	}
	ins, err := db.PrepareContext(ctx, `INSERT INTO tokens (k, client_id, subject, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		db.Close()
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		db.Close()
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "floor"}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		db.Close()
		return nil, err
	}
	return &floorServer{db: db, insert: ins, signer: signer}, nil
}

func (f *floorServer) Close() error { return f.db.Close() }

func (f *floorServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code", "refresh_token":
	default:
		http.Error(w, "unsupported grant_type", http.StatusBadRequest)
		return
	}
	clientID := r.PostForm.Get("client_id")
	now := time.Now()
	var b [32]byte
	rand.Read(b[:])
	jti := hex.EncodeToString(b[:16])
	claims, _ := json.Marshal(map[string]any{
		"iss": "http://floor", "sub": "bench", "aud": "http://floor/mcp", "client_id": clientID, "scope": "mcp",
		"jti": jti, "iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(),
	})
	jws, err := f.signer.Sign(claims)
	if err != nil {
		http.Error(w, "sign", http.StatusInternalServerError)
		return
	}
	at, err := jws.CompactSerialize()
	if err != nil {
		http.Error(w, "sign", http.StatusInternalServerError)
		return
	}
	rt := hex.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(rt))
	tx, err := f.db.BeginTx(r.Context(), nil)
	if err == nil {
		if _, err = tx.StmtContext(r.Context(), f.insert).ExecContext(r.Context(),
			hex.EncodeToString(sum[:]), clientID, "bench", now.UnixMicro(), now.Add(24*time.Hour).UnixMicro()); err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
	}
	if err != nil {
		http.Error(w, fmt.Sprint("store: ", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": at, "token_type": "Bearer", "expires_in": 900, "refresh_token": rt, "scope": "mcp",
	})
}
