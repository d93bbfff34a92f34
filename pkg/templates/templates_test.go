package templates

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var data = map[string]interface{}{
	"System Information": map[string]interface{}{"UUID": "fd95324a-c26b-4e28-8727-1dcec293a0ec", "Characteristics": []interface{}{"a"}},
	"CPU":                map[string]interface{}{"TotalCores": "4", "Processor": map[string]interface{}{"Model": "QEMU"}},
	"Runtime":            map[string]interface{}{"Hostname": "host-1"},
	"Number":             float64(3),
	"Random":             map[string]interface{}{"UUID": "client-sent"},
}

func TestRender(t *testing.T) {
	for tmpl, want := range map[string]string{
		"plain":                        "plain",
		"m-${System Information/UUID}": "m-fd95324a-c26b-4e28-8727-1dcec293a0ec",
		"${CPU/TotalCores}x${CPU/Processor/Model}": "4xQEMU",
		"open ${Runtime/Hostname":                  "open ${Runtime/Hostname",
		"${Runtime/Hostname}-${":                   "host-1-${",
		"$Runtime}":                                "$Runtime}",
	} {
		got, err := Render(tmpl, data)
		require.NoError(t, err, tmpl)
		assert.Equal(t, want, got, tmpl)
	}
	for _, tmpl := range []string{"${Missing}", "${CPU}", "${Number}", "${System Information/Characteristics}", "${cpu/TotalCores}", "${ Runtime/Hostname}", "${}"} {
		_, err := Render(tmpl, data)
		assert.True(t, errors.Is(err, ErrNotFound), tmpl)
	}
}

func TestRandom(t *testing.T) {
	got, err := Render("${Random/UUID}", data)
	require.NoError(t, err)
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, got)
	got, err = Render("n-${Random/Hex/6}", nil)
	require.NoError(t, err)
	assert.Regexp(t, `^n-[0-9a-f]{6}$`, got)
	got, err = Render("${Random/Hex/32}", nil)
	require.NoError(t, err)
	assert.Len(t, got, 32)
	got, err = Render("${Random/Int/3}", nil)
	require.NoError(t, err)
	assert.Contains(t, []string{"0", "1", "2"}, got)
	for _, bad := range []string{"${Random/Hex/0}", "${Random/Hex/33}", "${Random/UUID/x}", "${Random/Int/0}", "${Random/Int/x}", "${Random}", "${Random/Other}"} {
		_, err := Render(bad, nil)
		require.Error(t, err, bad)
		assert.False(t, errors.Is(err, ErrNotFound), bad)
	}
	assert.True(t, HasRandom("a-${Random/Hex/4}"))
	assert.False(t, HasRandom("a-${CPU/TotalCores}"))
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"this:needs--sanitizing!":      "this-needs-sanitizing",
		"fe80::1":                      "fe80-1",
		"--__..":                       "",
		"a_b.c":                        "a_b.c",
		strings.Repeat("a", 57) + "-b": strings.Repeat("a", 57), // op#306: no trailing "-"
		"_x_":                          "x",
	} {
		got := LabelValue(in)
		assert.Equal(t, want, got, in)
		assert.True(t, ValidLabelValue(got), in)
	}
}

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"Fire_Node 1":           "fire-node-1",
		"a..b":                  "a.b",
		"a-.b.-c":               "a.b.c",
		"m-FD95324A":            "m-fd95324a",
		"-x-":                   "x",
		strings.Repeat("b", 70): strings.Repeat("b", 58),
	} {
		got, err := Name(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "---", "!!!"} {
		_, err := Name(bad)
		assert.Error(t, err, bad)
	}
}

func TestAnnotationValueAndKeys(t *testing.T) {
	assert.Equal(t, "ab<c>", AnnotationValue("a\r\nb<c>"))
	assert.Len(t, AnnotationValue(strings.Repeat("x", 5000)), MaxAnnotationValue)
	assert.True(t, ValidLabelKey("elemental.cattle.io/site"))
	assert.True(t, ValidLabelKey("site"))
	assert.False(t, ValidLabelKey("elemental.cattle.io/a/b"))
	assert.False(t, ValidLabelKey("bad key"))
}

var dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func FuzzRender(f *testing.F) {
	for _, s := range []string{"m-${System Information/UUID}", "${Random/Hex/6}", "${", "${}}", "a${CPU/TotalCores}b${Random/Int/10}", "x:y!z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tmpl string) {
		out, err := Render(tmpl, data)
		if err == nil && !strings.Contains(tmpl, "${") && out != tmpl {
			t.Fatalf("literal text changed: %q → %q", tmpl, out)
		}
		if v := LabelValue(out + tmpl); !ValidLabelValue(v) {
			t.Fatalf("invalid label value %q", v)
		}
		if n, err := Name(tmpl); err == nil && (len(n) > MaxValue || !dns1123.MatchString(n)) {
			t.Fatalf("invalid name %q", n)
		}
		if a := AnnotationValue(tmpl); strings.ContainsAny(a, "\r\n") || len(a) > MaxAnnotationValue {
			t.Fatalf("bad annotation value %q", a)
		}
	})
}
