//! The Helm CLI: its manager, and what Helm 4 does to its own client-side entries when a
//! release switches to server-side apply. Its release records are [`crate::core::helm`].

/// The Helm CLI writes as the base name of its binary (`helm`), Helm 3 as an Update, Helm 4 as
/// an Apply when the release applies server-side and as an Update when it does not (helm v4.3.1
/// `pkg/kube/client.go` `getManagedFieldsManager`).
pub const MANAGER: &str = "helm";

/// The release's `apply_method` under which Helm 4 applies server-side; a release Helm 3
/// installed has none and counts as client-side.
pub const SERVER_SIDE_APPLY_METHOD: &str = "ssa";

/// Whether Helm 4's `helm upgrade --server-side=true` of a release recorded with `apply_method`
/// migrates its client-side entries first: it does when the release applied client-side (`csa`,
/// or no method: installed by Helm 3). helm v4.3.1 `pkg/action/upgrade.go` then calls
/// `csaupgrade.UpgradeManagedFieldsPatch(object, {helm}, helm)` before its apply
/// (`pkg/kube/client.go` `upgradeClientSideFieldManager`): `helm`'s Update entries become its
/// Apply entry, so the apply removes a field they owned and the chart leaves out.
pub fn switch_migrates(apply_method: Option<&str>) -> bool {
    apply_method != Some(SERVER_SIDE_APPLY_METHOD)
}
