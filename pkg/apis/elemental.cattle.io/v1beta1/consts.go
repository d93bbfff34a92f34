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
	// RotateCredentialAnnotation (Extension), set by an admin on a
	// MachineInventory: any new value revokes every agent token issued
	// before it; the host gets a new one when it next registers.
	RotateCredentialAnnotation = Prefix + "rotate-credential"
	// CredentialRotationAnnotation (Extension), on an agent ServiceAccount:
	// the rotate-credential value it was created for. A different value on
	// the inventory replaces the account, revoking its tokens.
	CredentialRotationAnnotation = Prefix + "credential-rotation"
	// PlanChecksumAnnotation and PlanRecordAnnotation (Extension) are the
	// operator's record of the plan it wrote into a plan Secret: the sha256 of
	// data.plan and the plan itself (base64 of gzip), written with the plan in
	// one patch (docs/contracts.md, Plan Secret).
	PlanChecksumAnnotation = Prefix + "plan.checksum"
	PlanRecordAnnotation   = Prefix + "plan.record"

	// ApprovalAnnotation (Extension) is stamped "Manual" by the registration
	// server on an inventory created under spec.approval: Manual; such an
	// inventory is never claimed until ApprovedAnnotation is "true".
	ApprovalAnnotation = Prefix + "approval"
	// ApprovedAnnotation (Extension) is set to "true" by an admin (or by the
	// server for a pre-approved identity) to release the approval gate.
	ApprovedAnnotation = Prefix + "approved"
	// CordonedAnnotation (Extension): any non-empty value (the reason) keeps
	// the inventory from being claimed; an existing claim is untouched.
	CordonedAnnotation = Prefix + "cordoned"

	// Hardware facts the registration server sets as labels at every
	// registration (upstream's names), read for a template's status.capacity.
	TotalMemoryLabel     = Prefix + "TotalMemory"
	CPUTotalCoresLabel   = Prefix + "CpuTotalCores"
	CPUTotalThreadsLabel = Prefix + "CpuTotalThreads"
	CPUVendorLabel       = Prefix + "CpuVendor"

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
	PlanChecksumAnnotation:        true,
	PlanRecordAnnotation:          true,
	ManagedLabel:                  true,
	MachineRegistrationAnnotation: true,
	ReleasePolicyAnnotation:       true,
	ReleaseAnnotation:             true,
	SkipResetAnnotation:           true,
	IdentityHashLabel:             true,
	RotateCredentialAnnotation:    true,
	ApprovalAnnotation:            true,
	ApprovedAnnotation:            true,
	CordonedAnnotation:            true,
}

// GateKeys are the keys that decide whether an inventory may be claimed. No
// registration may set them: not a host (ReservedKeys) and not a
// MachineRegistration's label or annotation templates, whose values hosts
// influence. Only the server's own approval stamps and admins write them.
var GateKeys = map[string]bool{
	ApprovalAnnotation: true,
	ApprovedAnnotation: true,
	CordonedAnnotation: true,
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
	// ConditionPlanTampered (Extension): True once data.plan was found
	// different from the operator's record, until the operator writes
	// another plan.
	ConditionPlanTampered = "PlanTampered"
	// ConditionApproved (Extension) is set on inventories created under
	// spec.approval: Manual only.
	ConditionApproved = "Approved"
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
	ReasonPlanRestored             = "PlanRestored"
	ReasonPlanNotRestored          = "PlanNotRestored"
	ReasonPlanIntact               = "PlanIntact"
	ReasonPendingApproval          = "PendingApproval"
	ReasonApproved                 = "Approved"

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
