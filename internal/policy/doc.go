// Package policy decides, for every JSON-RPC message a client sends through
// the gateway, whether it may pass. One decision function serves calls
// (Decide) and list filtering (Visible), so a listed tool is callable and a
// hidden one is not.
//
// # Inputs
//
// The caller is an identity.Principal: issuer and subject (its identity),
// groups, scopes, email (trusted only when email_verified), username and
// client id. The request is the method, the backend, the name it acts on
// (tool name, prompt name, resource URI) and the arguments.
//
// # Roles
//
// A role grants glob patterns over tool names, prompt names and resource
// URIs, on every backend or under backends.<name> on one backend only; a
// tool or prompt pattern (and a tool_scopes key) written "<backend>/<glob>"
// ("vsphere/*", "k8s/get_pods") is on that backend only too. `*` matches
// any run of characters, `?` one character, `\` quotes the next (`\/` is a
// literal slash); matching is exact and case-sensitive. The policy does not
// know the gateway's backends: configuration validation checks the names it
// uses (CheckBackends). A role may inherit other roles
// (cycles are a configuration error). The caller's roles are the union of
// the roles of each of its groups listed under groups (unknown groups grant
// nothing; no groups grant nothing) and of every users entry that matches
// it, closed under inheritance. users keys are "<issuer>#<subject>"
// (preferred), "sub:<subject>" or a bare subject (any issuer), or
// "email:<address>" (only if the token's email is verified). User entries
// add roles; they never remove any (use a Cedar forbid rule for that).
//
// # Decision procedure
//
// Each message is decided on its own (a batch is decided element by
// element; the gateway rejects the whole batch if one element is denied).
//
//  1. A client response (to a server request) is allowed: it calls nothing.
//  2. A method matching methods.deny is denied.
//  3. tools/call, prompts/get, resources/read, resources/subscribe and
//     resources/unsubscribe (the named methods) are decided as follows,
//     with kind tools, prompts or resources respectively:
//     a. Cedar rules whose scope covers the call are evaluated (principal
//     User::"<iss>#<sub>", action Action::"<method>", resource
//     Tool::"<name>", Prompt::"<name>" or Resource::"<uri>", context
//     {arguments, backend, scopes}). If a forbid rule matches, or fails to
//     evaluate (for example it reads an argument that is absent or of
//     another type), the call is denied: forbid always wins, over roles
//     too, and an error never lets a call through.
//     b. The call is granted if one of the caller's roles has a matching
//     pattern, or a Cedar permit rule matches (which can allow what no
//     role does, e.g. operators may delete_vm when vm_name is "dev-*").
//     A permit rule that fails to evaluate grants nothing.
//     c. Nothing granted: denied ("default-deny"). default: deny is the only
//     supported default.
//     d. Granted tools then need every scope listed under tool_scopes for
//     every pattern matching the tool name. The available scopes are the
//     token's, or fallback_scopes if the token has no scope claim (default
//     none: fail closed). A shortfall denies the call with MissingScopes
//     set, and the gateway answers 403 insufficient_scope so the client can
//     step up. Scopes only take away: they never grant what roles and
//     rules do not.
//     e. Otherwise the call is allowed.
//  4. tools/list, prompts/list, resources/list and resources/templates/list
//     are allowed; the gateway removes from the response every item that
//     Visible rejects.
//  5. Any other method is allowed only if it matches methods.allow, which
//     defaults to DefaultAllowedMethods (initialize, ping, notifications/*,
//     logging/setLevel, completion/complete, server/discover,
//     subscriptions/listen). Everything else, including unknown and
//     misspelt methods ("Tools/Call"; method names are case-sensitive), is
//     denied. methods.allow cannot allow a named or list method.
//     completion/complete is further allowed only if the prompt or resource
//     template it references is visible, and subscriptions/listen only if
//     every URI in resourceSubscriptions passes step 3 as
//     resources/subscribe.
//
// In shadow mode every denial becomes Allow=true with Effect "would_deny"
// (Rule, Reason and MissingScopes are kept), for rolling out a policy
// against live traffic. Visible then shows everything.
//
// # Listing
//
// Visible(p, list method, backend, name) is step 3 for the corresponding
// call method with the arguments unknown: an item is listed when a call
// with some arguments could be allowed. Cedar conditions that read
// context.arguments are treated as satisfiable for permit rules and as
// avoidable for forbid rules (the semantics of cedar-go's batch evaluation
// with the arguments ignored, precomputed per rule); every other condition
// is evaluated. So an item is
// listed if it is role-permitted (or a permit rule could grant it) and not
// unconditionally forbidden. Missing scopes do not hide it: calling it
// answers 403 insufficient_scope, which is how an MCP client learns to step
// up, so hiding it would make step-up unreachable. Resource templates are
// matched by their uriTemplate string.
//
// # Writing argument rules
//
// Arguments reach Cedar as JSON converted to Cedar values (see
// argumentsRecord): strings, booleans, integers (Long), decimals with at
// most four fractional digits, sets (arrays) and records (objects); nulls
// and other numbers are left out. Write rules so that an unexpected call is
// denied: prefer permit rules that require the argument
// (`when { context.arguments.vm_name like "dev-*" }` fails, and so grants
// nothing, when vm_name is missing), or forbid rules of the form
// `forbid (...) unless { context.arguments has vm_name && ... }`. A forbid
// rule guarded by `has` lets a call through when the argument is absent or
// spelt differently ("VM_NAME"), which a lenient backend might still read.
//
// Rules are checked when the policy is compiled: they may name only the
// entity types User, Group, Role, Tool, Prompt, Resource and Action, only
// the actions above, only the principal attributes sub, iss, email,
// username, client_id, groups, roles, and only the context attributes
// arguments, backend, scopes. A rule's id is its @id annotation, else
// "rules[i]" (or "rules[i]:<line>" when the text holds several policies),
// or "<cedar file>:<line>".
//
// # Explaining and testing
//
// Explain returns the roles and where they came from, the matching
// patterns, the scopes, the Cedar rules that applied, the deciding rule,
// and what would change a denial. RunTests runs a table of cases (see
// TestFile) so that a policy is tested beside its source; examples/policies
// holds an example with its table.
package policy
