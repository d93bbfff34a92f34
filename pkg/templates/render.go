// Package templates renders MachineRegistration templates (machineName, label
// and annotation templates, client label values) and sanitizes the results
// (docs/contracts.md, elemental-register).
package templates

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/google/uuid"
)

// ErrNotFound means a variable did not resolve to a string: the caller skips
// the value (or falls back to a random name) instead of failing.
var ErrNotFound = errors.New("template variable not found")

// Render replaces every ${path/to/key} in tmpl with the string found at that
// path in data. Random/… variables are generated. A ${ without a closing }
// leaves the rest of the string literal.
func Render(tmpl string, data map[string]interface{}) (string, error) {
	var out strings.Builder
	rest := tmpl
	for {
		start := strings.Index(rest, "${")
		if start < 0 {
			out.WriteString(rest)
			return out.String(), nil
		}
		end := strings.Index(rest[start+2:], "}")
		if end < 0 {
			out.WriteString(rest)
			return out.String(), nil
		}
		out.WriteString(rest[:start])
		v, err := lookup(rest[start+2:start+2+end], data)
		if err != nil {
			return "", err
		}
		out.WriteString(v)
		rest = rest[start+2+end+1:]
	}
}

func lookup(variable string, data map[string]interface{}) (string, error) {
	path := strings.Split(variable, "/")
	// Random is built in and always wins over client data (it is added last).
	if path[0] == "Random" {
		return random(variable, path[1:])
	}
	var cur interface{} = data
	for _, seg := range path {
		m, ok := cur.(map[string]interface{})
		if !ok {
			return "", fmt.Errorf("%w: ${%s}", ErrNotFound, variable)
		}
		if cur, ok = m[seg]; !ok {
			return "", fmt.Errorf("%w: ${%s}", ErrNotFound, variable)
		}
	}
	s, ok := cur.(string)
	if !ok {
		return "", fmt.Errorf("%w: ${%s}", ErrNotFound, variable)
	}
	return s, nil
}

func random(variable string, args []string) (string, error) {
	bad := fmt.Errorf("invalid template variable ${%s}", variable)
	switch {
	case len(args) == 1 && args[0] == "UUID":
		return uuid.NewString(), nil
	case len(args) == 2 && args[0] == "Hex":
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 || n > 32 {
			return "", bad
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)[:n], nil
	case len(args) == 2 && args[0] == "Int":
		max, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || max < 1 {
			return "", bad
		}
		v, err := rand.Int(rand.Reader, big.NewInt(max))
		if err != nil {
			return "", err
		}
		return v.String(), nil
	}
	return "", bad
}

// HasRandom reports whether a template uses Random values, which are rendered
// only once per inventory so they stay stable across re-registrations.
func HasRandom(tmpl string) bool { return strings.Contains(tmpl, "${Random") }

// Merge adds src into dst at the top level (a later top-level key replaces an
// earlier one), in arrival order.
func Merge(dst, src map[string]interface{}) {
	for k, v := range src {
		dst[k] = v
	}
}
