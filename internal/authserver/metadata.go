package authserver

import (
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// metadata is the RFC 8414 authorization server metadata document
// (go-sdk's oauthex.AuthServerMeta), also served as OpenID Connect discovery:
// the two fields OIDC Discovery §3 requires beyond RFC 8414 ride along.
// oauthex omits empty fields, so client_id_metadata_document_supported is
// absent rather than false when CIMD is off (its default is false).
type metadata struct {
	oauthex.AuthServerMeta
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
}

func (s *Server) metadata() *metadata {
	e := s.issuer
	m := &metadata{AuthServerMeta: oauthex.AuthServerMeta{
		Issuer:                e,
		AuthorizationEndpoint: e + "/authorize",
		TokenEndpoint:         e + "/token",
		JWKSURI:               e + "/jwks",
		RevocationEndpoint:    e + "/revoke",
		IntrospectionEndpoint: e + "/introspect",
		// MCP 2026-07-28: offline_access is accepted but not advertised.
		ScopesSupported:                            s.cfg.Scopes,
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{grantCode, grantRT},
		TokenEndpointAuthMethodsSupported:          []string{authNone, authBasic, authPost},
		RevocationEndpointAuthMethodsSupported:     []string{authNone, authBasic, authPost},
		IntrospectionEndpointAuthMethodsSupported:  []string{authBasic, authPost},
		CodeChallengeMethodsSupported:              []string{"S256"},
		AuthorizationResponseIssParameterSupported: true,
		ClientIDMetadataDocumentSupported:          s.cimd != nil,
	},
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: []string{s.cfg.SigningAlg},
	}
	if s.cfg.Registration.Mode != RegistrationClosed {
		m.RegistrationEndpoint = e + "/register"
	}
	return m
}

func (s *Server) handleMetadata(w http.ResponseWriter, _ *http.Request) {
	writeCacheableJSON(w, s.metadata())
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	set, err := s.signer.JWKS(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeCacheableJSON(w, set)
}

// writeCacheableJSON serves public documents; a short max-age lets key
// rotation (which publishes the next key ahead of use) propagate quickly.
func writeCacheableJSON(w http.ResponseWriter, v any) {
	writeJSONCache(w, http.StatusOK, v, "public, max-age=300")
}
