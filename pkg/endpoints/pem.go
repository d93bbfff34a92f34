package endpoints

import (
	"encoding/pem"
	"strings"
)

// bundle concatenates PEM bundles, dropping duplicate certificates and
// anything that is not a PEM block.
func bundle(bundles ...string) string {
	seen := map[string]bool{}
	var out strings.Builder
	for _, b := range bundles {
		rest := []byte(b)
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			enc := pem.EncodeToMemory(block)
			if seen[string(enc)] {
				continue
			}
			seen[string(enc)] = true
			out.Write(enc)
		}
	}
	return out.String()
}
