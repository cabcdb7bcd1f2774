package authserver

import (
	"net/http"
)

// metadata is the RFC 8414 authorization server metadata document, also
// served as OpenID Connect discovery (the fields OIDC requires are included).
type metadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	RegistrationEndpoint                       string   `json:"registration_endpoint,omitempty"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported"`
	// OpenID Connect Discovery §3 REQUIRED fields.
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
}

func (s *Server) metadata() *metadata {
	e := s.issuer
	m := &metadata{
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
		SubjectTypesSupported:                      []string{"public"},
		IDTokenSigningAlgValuesSupported:           []string{s.cfg.SigningAlg},
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
