package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/inventory"
	"github.com/elemental-operator/elemental-operator/pkg/templates"
)

// maxPreApprovedEntries bounds how many entries of the pre-approved
// identities Secret are read (a Secret is at most 1 MiB anyway).
const maxPreApprovedEntries = 100000

// approvalAnnotations adds the approval gate's annotations a registration
// writes (docs/contracts.md, elemental-register): under approval: Manual a
// new inventory is stamped approval=Manual, and a host in the pre-approved
// list is approved, on its first registration or a later one while still
// pending. Nothing is ever removed: an admin's approval or cordon stays.
func (s *Server) approvalAnnotations(ctx context.Context, mr *elementalv1.MachineRegistration, c *conversation,
	existing *elementalv1.MachineInventory, annotations map[string]string) {
	if mr.Spec.Approval != elementalv1.ApprovalManual {
		return
	}
	if existing == nil {
		annotations[elementalv1.ApprovalAnnotation] = string(elementalv1.ApprovalManual)
	} else if !inventory.PendingApproval(existing) {
		return
	}
	name := mr.Spec.PreApprovedIdentitiesSecretName
	if name == "" {
		return
	}
	secret, err := s.k8s.CoreV1().Secrets(mr.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		logrus.WithError(err).WithFields(logrus.Fields{"registration": mr.Namespace + "/" + mr.Name, "secret": name}).
			Warn("reading the pre-approved identities Secret failed; the host waits for approval")
		return
	}
	if preApproved(secret.Data, c.id, c.data) {
		annotations[elementalv1.ApprovedAnnotation] = "true"
	}
}

// preApproved reports whether the host is in the pre-approved identities
// (see MachineRegistrationSpec.PreApprovedIdentitiesSecretName). A TPM host
// matches only by its attested tpmHash: its reported MACs and UUID are its
// own word and must not weaken the TPM. A mac or sys-uuid host matches by
// its identifier (compared through the machine hash) or by a MAC or UUID it
// reports: no weaker than that authentication itself.
func preApproved(data map[string][]byte, id identity, facts map[string]interface{}) bool {
	if id.tpm {
		return entries(data[elementalv1.PreApprovedTPMHashesKey])[strings.ToLower(id.hash)]
	}
	listed := entries(data[elementalv1.PreApprovedMACsKey])
	for k := range entries(data[elementalv1.PreApprovedUUIDsKey]) {
		listed[k] = true
	}
	for entry := range listed {
		for _, form := range []string{entry, strings.ToUpper(entry)} {
			sum := sha256.Sum256([]byte(form))
			if hex.EncodeToString(sum[:]) == id.hash {
				return true
			}
		}
	}
	for _, v := range reportedIdentifiers(facts) {
		if listed[strings.ToLower(v)] {
			return true
		}
	}
	return false
}

// entries splits a list on whitespace and commas, lowercased, skipping
// comment lines and anything past maxPreApprovedEntries.
func entries(raw []byte) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' }) {
			if len(out) >= maxPreApprovedEntries {
				return out
			}
			out[strings.ToLower(f)] = true
		}
	}
	return out
}

// reportedIdentifiers are the MACs and SMBIOS UUID the host reported.
func reportedIdentifiers(facts map[string]interface{}) []string {
	var out []string
	for _, src := range []string{"${Product/UUID}", "${System Information/UUID}"} {
		if v, err := templates.Render(src, facts); err == nil && v != "" {
			out = append(out, v)
		}
	}
	for _, tree := range [][]string{{"Network", "NICs"}, {"System Data", "Network"}} {
		var node interface{} = facts
		for _, k := range tree {
			m, _ := node.(map[string]interface{})
			node = m[k]
		}
		nics, _ := node.(map[string]interface{})
		for _, nic := range nics {
			if m, ok := nic.(map[string]interface{}); ok {
				if mac, ok := m["MacAddress"].(string); ok && mac != "" {
					out = append(out, mac)
				}
			}
		}
	}
	return out
}
