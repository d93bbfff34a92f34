package machineinventory

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// GzipOutput encodes instruction output the way the agent does (exported
// for this package's external tests too).
func GzipOutput(t *testing.T, outputs map[string]string) []byte {
	t.Helper()
	enc := map[string]string{}
	for k, v := range outputs {
		enc[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	js, err := json.Marshal(enc)
	require.NoError(t, err)
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(js)
	require.NoError(t, w.Close())
	return buf.Bytes()
}
