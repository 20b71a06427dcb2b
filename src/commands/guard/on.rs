//! `guard on`: writes the planned guards, confirms each is enforced, and rolls back otherwise.

use std::collections::BTreeSet;
use std::time::Instant;

use kube::Client;

use super::mark::{apply_mark, unmark};
use super::plan::{Guarded, entries_restored, entries_with, modes_touched, plan_guards};
use super::policy::{check_rights, read_entries, update_entries};
use super::probe::confirm_active;
use crate::core::guard::{self, Entry, Mark, Mode};
use crate::core::verdict::Assessment;
use crate::core::workload::AppsKind;
use crate::error::Result;

/// Guards the assessed workloads: checks every one first (nothing is written unless all can be
/// guarded), adds them to the policy of their kind and mode, marks them, and waits until the API
/// server answers a drop of each as the mode says (refused, warned about, or, for pin, a write
/// without replicas back with the live count). If one does not become active, what was written
/// is rolled back.
pub async fn protect(
    client: &Client,
    assessments: &[Assessment],
    floor: Option<i64>,
    mode: Mode,
) -> Result<Vec<Guarded>> {
    let mut plans = plan_guards(assessments, floor, mode)?;
    let modes = modes_touched(&plans);
    check_rights(client, &plans, &modes).await?;

    let kinds: BTreeSet<AppsKind> = plans.iter().map(|p| p.kind).collect();
    let mut before: Vec<(AppsKind, Mode, Vec<Entry>)> = Vec::new();
    for kind in &kinds {
        for m in &modes {
            before.push((*kind, *m, read_entries(client, *kind, *m).await?));
        }
    }
    if let Err(error) = write_guards(client, &kinds, &modes, &mut plans).await {
        roll_back(client, &plans, &before).await;
        return Err(error);
    }
    Ok(plans)
}

/// Writes the planned guards: the policies' entries, then the marks, then waits for each to be
/// answered by the API server as its mode says.
async fn write_guards(
    client: &Client,
    kinds: &BTreeSet<AppsKind>,
    modes: &[Mode],
    plans: &mut [Guarded],
) -> Result<()> {
    for kind in kinds {
        for m in modes {
            update_entries(client, *kind, *m, |entries| entries_with(entries, plans, *kind, *m)).await?;
        }
    }
    let written_at = Instant::now();
    for plan in plans.iter() {
        let body = guard::mark_body(plan.kind, &plan.name, plan.mode, plan.floor, plan.autoscaler.as_deref());
        apply_mark(client, plan.kind, &plan.namespace, &plan.name, &body).await?;
    }
    for plan in plans.iter_mut() {
        confirm_active(client, plan).await?;
        plan.active_after = written_at.elapsed();
    }
    Ok(())
}

/// Puts back what a failed `guard on` wrote: the entries of the workloads it guarded, then their
/// marks. Best effort: the error that caused it is what is reported.
async fn roll_back(client: &Client, plans: &[Guarded], before: &[(AppsKind, Mode, Vec<Entry>)]) {
    for (kind, mode, entries) in before {
        let restored = update_entries(client, *kind, *mode, |now| entries_restored(now, plans, *kind, entries)).await;
        if let Err(error) = restored {
            tracing::warn!("rolling back {}: {error}", kind.policy_name(*mode));
        }
    }
    for plan in plans {
        let result = match &plan.previous {
            Some(Mark { mode, floor: Some(floor), autoscaler, .. }) => {
                let body = guard::mark_body(plan.kind, &plan.name, *mode, *floor, autoscaler.as_deref());
                apply_mark(client, plan.kind, &plan.namespace, &plan.name, &body).await
            }
            _ => unmark(client, plan.kind, &plan.namespace, &plan.name).await.map(|_| ()),
        };
        if let Err(error) = result {
            tracing::warn!("rolling back the mark of {}/{}: {error}", plan.namespace, plan.target());
        }
    }
}
