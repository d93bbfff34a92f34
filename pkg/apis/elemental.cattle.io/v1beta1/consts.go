package v1beta1

// Well-known keys. The reserved ones (see ReservedKeys) may never be set by a
// registering client, whatever its label prefix.
const (
	Prefix = "elemental.cattle.io/"

	// ManagedLabel marks every Secret, ServiceAccount, Role and RoleBinding we create.
	ManagedLabel = Prefix + "managed"
	// IdentityHashLabel (Extension) holds the first 32 hex chars of tpmHash or machineHash.
	IdentityHashLabel = Prefix + "identity-hash"

	ResettableAnnotation          = Prefix + "resettable"
	OSUnmanagedAnnotation         = Prefix + "os.unmanaged"
	MachineRegistrationAnnotation = Prefix + "machine-registration"
	ReleasePolicyAnnotation       = Prefix + "release-policy"
	ReleaseAnnotation             = Prefix + "release"
	SkipResetAnnotation           = Prefix + "skip-reset"
	PlanTypeAnnotation            = Prefix + "plan.type"
	// CordonedAnnotation (Extension): any non-empty value keeps the inventory
	// from being claimed; the operator sets "quarantined: ..." on a host
	// whose bootstrap plan kept failing.
	CordonedAnnotation = Prefix + "cordoned"

	ExternalIPLabel = Prefix + "ExternalIP"
	InternalIPLabel = Prefix + "InternalIP"
	HostnameLabel   = Prefix + "Hostname"

	MachineInventoryFinalizer         = "machineinventory.elemental.cattle.io"
	MachineInventorySelectorFinalizer = "machineinventoryselector.elemental.cattle.io"

	// PlanSecretType is the type of every inventory plan Secret.
	PlanSecretType = "elemental.cattle.io/plan"

	PlanTypeEmpty     = "empty"
	PlanTypeBootstrap = "bootstrap"
	PlanTypeReset     = "reset"
	PlanTypeRelease   = "release"
)

// ReservedKeys are label/annotation keys a client may never set.
var ReservedKeys = map[string]bool{
	ResettableAnnotation:          true,
	PlanTypeAnnotation:            true,
	ManagedLabel:                  true,
	MachineRegistrationAnnotation: true,
	ReleasePolicyAnnotation:       true,
	ReleaseAnnotation:             true,
	SkipResetAnnotation:           true,
	IdentityHashLabel:             true,
	CordonedAnnotation:            true,
}

// Condition types.
const (
	ConditionReady              = "Ready"
	ConditionPlanReady          = "PlanReady"
	ConditionAdoptionReady      = "AdoptionReady"
	ConditionNetworkConfigReady = "NetworkConfigReady"
	ConditionInventoryReady     = "InventoryReady"
	ConditionBootstrapReady     = "BootstrapReady"
	ConditionPaused             = "Paused"
	// ConditionReleasedHostCleaned (Extension, selectors): a host this
	// selector gave up (quarantined) has applied the cleanup plan.
	ConditionReleasedHostCleaned = "ReleasedHostCleaned"
)

// Condition reasons, grouped by the object that carries them (docs/contracts.md, Our CRDs).
const (
	// MachineRegistration
	ReasonSuccessfullyCreated      = "SuccessfullyCreated"
	ReasonMissingTokenOrServerURL  = "MissingTokenOrServerURL"
	ReasonDuplicateToken           = "DuplicateToken"
	ReasonRbacCreationFailure      = "RbacCreationFailure"
	ReasonInvalidConfiguration     = "InvalidConfiguration"
	ReasonUnsupportedNetworkConfig = "UnsupportedNetworkConfig"

	// MachineInventory
	ReasonPlanSuccessfullyApplied  = "PlanSuccessfullyApplied"
	ReasonWaitingForPlan           = "WaitingForPlan"
	ReasonPlanFailure              = "PlanFailure"
	ReasonPlanCreationFailure      = "PlanCreationFailureReason"
	ReasonReleasing                = "Releasing"
	ReasonReleaseFailed            = "ReleaseFailed"
	ReasonResetPending             = "ResetPending"
	ReasonResetTimedOut            = "ResetTimedOut"
	ReasonWaitingToBeAdopted       = "WaitingToBeAdopted"
	ReasonValidatingAdoption       = "ValidatingAdoption"
	ReasonSuccessfullyAdopted      = "SuccessfullyAdopted"
	ReasonAdoptionFailure          = "AdoptionFailure"
	ReasonReconcilingNetworkConfig = "ReconcilingNetworkConfig"

	// MachineInventorySelector
	ReasonWaitingForInventory          = "WaitingForInventory"
	ReasonSuccessfullyAdoptedInventory = "SuccessfullyAdoptedInventory"
	ReasonFailedToAdoptInventory       = "FailedToAdoptInventory"
	ReasonInvalidSelector              = "InvalidSelector"
	ReasonWaitingForBootstrapData      = "WaitingForBootstrapData"
	ReasonWaitingForBootstrapPlan      = "WaitingForBootstrapPlan"
	ReasonBootstrapPlanFailed          = "BootstrapPlanFailed"
	ReasonBootstrapPlanApplied         = "BootstrapPlanApplied"
	ReasonSuccessfullyUpdatedPlan      = "SuccessfullyUpdatedPlan"
	ReasonFailedToUpdatePlan           = "FailedToUpdatePlan"
	ReasonInventoryDeleted             = "InventoryDeleted"
	ReasonSelectorReady                = "SelectorReady"
	ReasonPaused                       = "Paused"
	ReasonNotPaused                    = "NotPaused"
	ReasonInventoryQuarantined         = "InventoryQuarantined"
	ReasonWaitingForCleanup            = "WaitingForCleanup"
	ReasonCleanedUp                    = "CleanedUp"
)
