package server

import "encoding/pem"

// pemDecode returns the next PEM block re-encoded canonically, and the rest.
func pemDecode(in []byte) ([]byte, []byte) {
	block, rest := pem.Decode(in)
	if block == nil {
		return nil, nil
	}
	return pem.EncodeToMemory(block), rest
}
