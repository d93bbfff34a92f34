package main

import (
	"flag"
	"fmt"
	"strconv"

	elementalv1 "github.com/elemental-operator/elemental-operator/pkg/apis/elemental.cattle.io/v1beta1"
)

// spreadZones is how many zones -spread labels the inventories with.
const spreadZones = 3

var spread = flag.Bool("spread", false, "label inventories with "+spreadZoneLabel+" (3 zones) and give every selector a topology spread over it (maxSkew 1, DoNotSchedule)")

const spreadZoneLabel = "topology.kubernetes.io/zone"

// spreadLabels adds inventory i's zone to labels under -spread.
func spreadLabels(i int, labels map[string]string) map[string]string {
	if *spread {
		labels[spreadZoneLabel] = "zone-" + strconv.Itoa(i%spreadZones)
	}
	return labels
}

// spreadConstraint is the selectors' topology spread under -spread, else nil.
func spreadConstraint() *elementalv1.TopologySpread {
	if !*spread {
		return nil
	}
	return &elementalv1.TopologySpread{TopologyKey: spreadZoneLabel, MaxSkew: 1, WhenUnsatisfiable: elementalv1.DoNotSchedule}
}

// spreadReport prints the claimed inventories per zone under -spread.
func spreadReport(invs []*elementalv1.MachineInventory) {
	if !*spread {
		return
	}
	per := map[string]int{}
	for _, mi := range invs {
		if len(mi.OwnerReferences) > 0 {
			per[mi.Labels[spreadZoneLabel]]++
		}
	}
	fmt.Printf("  claims per zone (topology spread, maxSkew 1): %v\n", per)
}
