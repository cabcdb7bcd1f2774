package gotest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// headlessLogin walks an authorization flow the way a user would in a
// browser, over plain HTTP with a cookie jar: it follows redirects, fills
// login forms (username/password) and approves consent forms, until the
// authorization server redirects to redirectURI. It returns that final URL.
func headlessLogin(ctx context.Context, authorizeURL, redirectURI, username, password string) (*url.URL, error) {
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, "GET", authorizeURL, nil)
	if err != nil {
		return nil, err
	}
	for step := 0; step < 20; step++ {
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			next, err := req.URL.Parse(loc)
			if err != nil {
				return nil, err
			}
			if strings.HasPrefix(next.String(), redirectURI) {
				return next, nil
			}
			req, _ = http.NewRequestWithContext(ctx, "GET", next.String(), nil)
			continue
		}
		if resp.StatusCode != 200 && resp.StatusCode != 401 {
			return nil, fmt.Errorf("%s %s: status %d: %.300s", req.Method, req.URL, resp.StatusCode, body)
		}
		form, err := firstForm(body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %.300s", req.URL, err, body)
		}
		if _, ok := form.values["password"]; ok {
			if step > 10 {
				return nil, fmt.Errorf("login rejected at %s", req.URL)
			}
			form.values.Set("username", username)
			form.values.Set("password", password)
		}
		if form.approve != "" {
			form.values.Set(form.approveName, form.approve)
		}
		action, err := req.URL.Parse(form.action)
		if err != nil {
			return nil, err
		}
		req, _ = http.NewRequestWithContext(ctx, "POST", action.String(), strings.NewReader(form.values.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", action.Scheme+"://"+action.Host)
	}
	return nil, fmt.Errorf("too many steps")
}

type parsedForm struct {
	action               string
	values               url.Values
	approveName, approve string
}

// firstForm returns the first form's action, its named inputs, and the
// submit button that approves or logs in (value approve|allow|login|yes).
func firstForm(body []byte) (*parsedForm, error) {
	doc, err := html.Parse(strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	var form *html.Node
	var find func(*html.Node)
	find = func(n *html.Node) {
		if form != nil {
			return
		}
		if n.Type == html.ElementNode && n.Data == "form" {
			form = n
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			find(c)
		}
	}
	find(doc)
	if form == nil {
		return nil, fmt.Errorf("no form on page")
	}
	f := &parsedForm{action: attr(form, "action"), values: url.Values{}}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "input" || n.Data == "button") {
			name, typ, val := attr(n, "name"), strings.ToLower(attr(n, "type")), attr(n, "value")
			switch {
			case name == "":
			case typ == "submit" || n.Data == "button":
				switch strings.ToLower(val) {
				case "approve", "allow", "login", "yes", "accept", "consent":
					if f.approve == "" {
						f.approveName, f.approve = name, val
					}
				}
			default:
				f.values.Set(name, val)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(form)
	return f, nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
