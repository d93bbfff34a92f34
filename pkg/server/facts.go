package server

import (
	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
	"github.com/elemental-operator/elemental-operator/pkg/templates"
)

// hardwareFacts are the labels the server sets from the host's SystemDataV2
// at every registration, under upstream's names (its server set them too):
// selectors can match them, and templates read them for status.capacity.
// Each is looked up in the current families first, then in the legacy
// "System Data" tree.
var hardwareFacts = []struct {
	label   string
	sources []string
	count   bool // a count: only a positive integer is kept (ghw reports 0 for some ARM CPUs)
}{
	{elementalv1.TotalMemoryLabel, []string{"${Memory/TotalPhysicalBytes}", "${System Data/Memory/Total Physical Bytes}"}, true},
	{elementalv1.CPUTotalCoresLabel, []string{"${CPU/TotalCores}", "${System Data/CPU/Total Cores}"}, true},
	{elementalv1.CPUTotalThreadsLabel, []string{"${CPU/TotalThreads}", "${System Data/CPU/Total Threads}"}, true},
	{elementalv1.CPUVendorLabel, []string{"${CPU/Processor/Vendor}", "${System Data/CPU/Vendor}"}, false},
}

// hardwareLabels returns the fact labels the host's data provides.
func hardwareLabels(data map[string]interface{}) map[string]string {
	out := map[string]string{}
	for _, f := range hardwareFacts {
		for _, src := range f.sources {
			v, err := templates.Render(src, data)
			if err != nil { // not reported, or not a plain value
				continue
			}
			if f.count && !positiveInteger(v) {
				continue
			}
			if v = templates.LabelValue(v); v == "" {
				continue
			}
			out[f.label] = v
			break
		}
	}
	return out
}

func positiveInteger(s string) bool {
	if s == "" || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
