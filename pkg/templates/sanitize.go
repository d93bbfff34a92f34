package templates

import (
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// MaxValue is the length labels and names are truncated to (upstream's 58).
const MaxValue = 58

// MaxAnnotationValue caps annotation values from clients and templates.
const MaxAnnotationValue = 4096

var (
	labelInvalid = regexp.MustCompile(`[^0-9A-Za-z._]`)
	nameInvalid  = regexp.MustCompile(`[^0-9A-Za-z.]`)
	dashes       = regexp.MustCompile(`-+`)
	dots         = regexp.MustCompile(`\.+`)
)

func isAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func trim(s string) string {
	i, j := 0, len(s)
	for i < j && !isAlnum(s[i]) {
		i++
	}
	for j > i && !isAlnum(s[j-1]) {
		j--
	}
	return s[i:j]
}

// LabelValue sanitizes a rendered label value. Trimming is re-applied
// after truncation, so the result is always a valid label value (op#306).
func LabelValue(s string) string {
	s = labelInvalid.ReplaceAllString(s, "-")
	s = dashes.ReplaceAllString(s, "-")
	s = trim(s)
	if len(s) > MaxValue {
		s = s[:MaxValue]
	}
	return trim(s)
}

// Name sanitizes a rendered machineName and checks it is a DNS-1123
// subdomain (so also a valid host and node name).
func Name(s string) (string, error) {
	raw := s
	s = nameInvalid.ReplaceAllString(s, "-")
	s = dashes.ReplaceAllString(s, "-")
	s = trim(s)
	if len(s) > MaxValue {
		s = s[:MaxValue]
	}
	s = strings.ToLower(s)
	s = dots.ReplaceAllString(s, ".")
	for strings.Contains(s, "-.") || strings.Contains(s, ".-") {
		s = strings.NewReplacer("-.", ".", ".-", ".").Replace(s)
	}
	s = trim(s)
	if s == "" || len(validation.IsDNS1123Subdomain(s)) > 0 {
		return "", fmt.Errorf("invalid MachineInventory name %q rendered from spec.machineName", raw)
	}
	return s, nil
}

// AnnotationValue removes CR and LF and caps the length; nothing else changes.
func AnnotationValue(s string) string {
	s = strings.NewReplacer("\r", "", "\n", "").Replace(s)
	if len(s) > MaxAnnotationValue {
		s = s[:MaxAnnotationValue]
	}
	return s
}

// ValidLabelKey reports whether k is a qualified name with an optional DNS prefix.
func ValidLabelKey(k string) bool { return len(validation.IsQualifiedName(k)) == 0 }

// ValidLabelValue reports whether v is a valid label value.
func ValidLabelValue(v string) bool { return len(validation.IsValidLabelValue(v)) == 0 }
