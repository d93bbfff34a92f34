package plans

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// secretAfter applies a merge patch's annotations and data to a Secret, as
// the API server would for these flat maps (null deletes).
func secretAfter(t *testing.T, s *corev1.Secret, patch []byte) *corev1.Secret {
	t.Helper()
	var p struct {
		Metadata struct {
			Annotations map[string]*string `json:"annotations"`
		} `json:"metadata"`
		Data map[string][]byte `json:"data"`
	}
	require.NoError(t, json.Unmarshal(patch, &p))
	out := s.DeepCopy()
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	for k, v := range p.Metadata.Annotations {
		if v == nil {
			delete(out.Annotations, k)
		} else {
			out.Annotations[k] = *v
		}
	}
	for k, v := range p.Data {
		out.Data[k] = v
	}
	return out
}

func gzRecord(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	require.NoError(t, w.Close())
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestVerify(t *testing.T) {
	mi := &elementalv1.MachineInventory{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "m", UID: "u"}}
	fresh := NewSecret(mi)
	bootstrap := []byte(`{"instructions":[{"name":"install","command":"sh"}]}`)
	written := secretAfter(t, fresh, Patch(bootstrap, elementalv1.PlanTypeBootstrap))
	edited := written.DeepCopy()
	edited.Data[KeyPlan] = []byte(`{"instructions":[{"name":"evil","command":"sh"}]}`)
	legacy := fresh.DeepCopy()
	legacy.Annotations = map[string]string{elementalv1.PlanTypeAnnotation: elementalv1.PlanTypeEmpty}
	noCopy := edited.DeepCopy()
	delete(noCopy.Annotations, elementalv1.PlanRecordAnnotation)
	forged := edited.DeepCopy()
	forged.Annotations[elementalv1.PlanRecordAnnotation] = gzRecord(t, []byte(`{"not":"the recorded plan"}`))
	garbage := edited.DeepCopy()
	garbage.Annotations[elementalv1.PlanRecordAnnotation] = "%%%"
	notGzip := edited.DeepCopy()
	notGzip.Annotations[elementalv1.PlanRecordAnnotation] = base64.StdEncoding.EncodeToString([]byte("plain"))
	huge := edited.DeepCopy()
	huge.Annotations[elementalv1.PlanRecordAnnotation] = strings.Repeat("A", maxRecord+4)
	bomb := edited.DeepCopy()
	bomb.Annotations[elementalv1.PlanRecordAnnotation] = gzRecord(t, make([]byte, maxPlan+10))

	for _, tc := range []struct {
		name    string
		secret  *corev1.Secret
		want    Integrity
		restore []byte
		err     string
	}{
		{"a new Secret", fresh, Intact, nil, ""},
		{"a plan written with Patch", written, Intact, nil, ""},
		{"data.plan edited", edited, Tampered, bootstrap, ""},
		{"older operator: no record", legacy, Unrecorded, nil, ""},
		{"record without a copy", noCopy, Tampered, nil, "no copy"},
		{"copy that is not the recorded plan", forged, Tampered, nil, "does not match"},
		{"copy that is not base64", garbage, Tampered, nil, "not base64"},
		{"copy that is not gzip", notGzip, Tampered, nil, "not gzip"},
		{"copy over the limit", huge, Tampered, nil, "over"},
		{"copy that decompresses past a Secret's size", bomb, Tampered, nil, "over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Verify(tc.secret)
			assert.Equal(t, tc.want, c.Integrity)
			assert.Equal(t, Checksum(tc.secret.Data[KeyPlan]), c.Found)
			assert.Equal(t, tc.restore, c.Plan)
			if tc.err == "" {
				assert.NoError(t, c.RecordErr)
			} else {
				assert.ErrorContains(t, c.RecordErr, tc.err)
			}
		})
	}

	t.Run("restore puts the recorded bytes back", func(t *testing.T) {
		c := Verify(edited)
		restored := secretAfter(t, edited, RestorePatch(c.Plan, "42"))
		assert.Equal(t, bootstrap, restored.Data[KeyPlan])
		assert.Equal(t, Intact, Verify(restored).Integrity)
		assert.Contains(t, string(RestorePatch(c.Plan, "42")), `"resourceVersion":"42"`)
	})
	t.Run("adopting records what is there, and only that", func(t *testing.T) {
		adopted := secretAfter(t, legacy, AdoptPatch(legacy.Data[KeyPlan], "7"))
		assert.Equal(t, Intact, Verify(adopted).Integrity)
		assert.Equal(t, legacy.Data, adopted.Data)
		assert.NotContains(t, string(AdoptPatch(Empty, "7")), `"data"`)
	})
	t.Run("a plan too large for a copy drops an older copy", func(t *testing.T) {
		big := make([]byte, maxRecord)
		_, _ = rand.NewChaCha8([32]byte{1}).Read(big) // incompressible, fixed seed
		_, ok := EncodeRecord(big)
		require.False(t, ok)
		after := secretAfter(t, written, Patch(big, elementalv1.PlanTypeBootstrap))
		assert.NotContains(t, after.Annotations, elementalv1.PlanRecordAnnotation)
		assert.Equal(t, Intact, Verify(after).Integrity)
	})
}
