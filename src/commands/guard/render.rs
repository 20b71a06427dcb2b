//! The text `guard on`, `off` and `status` print. Pure: no I/O.

use comfy_table::{Table, presets};

use super::off::Lifted;
use super::plan::Guarded;
use super::probe::confirmation;
use super::status::StatusReport;
use crate::output::count;

/// The columns of `guard on` and `guard status`.
pub const COLUMNS: [&str; 6] = ["NAMESPACE", "WORKLOAD", "REPLICAS", "FLOOR", "MODE", "AUTOSCALER"];

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    let mut out = String::new();
    for line in table.to_string().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn autoscaler_or_none(autoscaler: Option<String>) -> String {
    autoscaler.unwrap_or_else(|| "<none>".into())
}

pub fn render_on(guarded: &[Guarded]) -> String {
    let mut out = table(&COLUMNS, on_rows(guarded));
    out.push('\n');
    out.push_str(&on_notes(guarded));
    out
}

/// The table rows of `guard on`, one per guarded workload.
pub fn on_rows(guarded: &[Guarded]) -> Vec<Vec<String>> {
    guarded
        .iter()
        .map(|g| {
            vec![
                g.namespace.clone(),
                g.target(),
                count(g.replicas),
                g.floor.to_string(),
                g.mode.as_str().to_string(),
                autoscaler_or_none(g.autoscaler.clone()),
            ]
        })
        .collect()
}

/// What `guard on` says below its table: how each guard was proven active.
pub fn on_notes(guarded: &[Guarded]) -> String {
    let mut out = String::new();
    for g in guarded {
        out.push_str(&format!(
            "guarded {}/{}: {} ({:.1} s after the policy was written)\n",
            g.namespace,
            g.target(),
            confirmation(g.mode, g.floor),
            g.active_after.as_secs_f64()
        ));
    }
    out
}

pub fn render_off(lifted: &Lifted) -> String {
    let mut out = String::new();
    for name in &lifted.unguarded {
        out.push_str(&format!("unguarded {name}\n"));
    }
    for name in &lifted.not_guarded {
        out.push_str(&format!("{name} was not guarded\n"));
    }
    for name in &lifted.removed {
        out.push_str(&format!("removed {name}\n"));
    }
    out
}

pub fn render_status(report: &StatusReport) -> String {
    let mut out = String::new();
    if report.workloads.is_empty() {
        out.push_str(NOTHING_GUARDED);
    } else {
        out.push_str(&table(&COLUMNS, status_rows(report)));
    }
    out.push('\n');
    out.push_str(&status_notes(report));
    out
}

pub const NOTHING_GUARDED: &str = "No guarded workloads in scope.\n";

/// The table rows of `guard status`, one per guarded workload.
pub fn status_rows(report: &StatusReport) -> Vec<Vec<String>> {
    report
        .workloads
        .iter()
        .map(|w| {
            let (floor, mode, autoscaler) = match (&w.enforced, &w.mark) {
                (Some(e), _) => (e.floor.to_string(), e.mode.as_str().to_string(), e.autoscaler.clone()),
                (None, Some(m)) => {
                    ("-".to_string(), format!("{} (not enforced)", m.mode.as_str()), m.autoscaler.clone())
                }
                (None, None) => ("-".to_string(), "-".to_string(), None),
            };
            vec![
                w.namespace.clone(),
                format!("{}/{}", w.kind.command_name(), w.name),
                count(w.replicas),
                floor,
                mode,
                autoscaler_or_none(autoscaler),
            ]
        })
        .collect()
}

/// What `guard status` says below its table: the policies' state and the problems.
pub fn status_notes(report: &StatusReport) -> String {
    let mut out = String::new();
    for w in &report.workloads {
        if let Some(pinned) = w.mark.as_ref().and_then(|m| m.pinned.as_ref()) {
            out.push_str(&format!("{}/{}/{}: {}\n", w.namespace, w.kind.command_name(), w.name, pinned.describe()));
        }
    }
    for p in &report.policies {
        let state = match (p.installed, p.bound) {
            (false, _) => "not installed".to_string(),
            (true, bound) => {
                format!(
                    "installed{}, guards {} workload(s) cluster-wide",
                    if bound { " and bound" } else { " but NOT bound" },
                    p.guarded
                )
            }
        };
        out.push_str(&format!("policy {}: {state}\n", p.name));
        for warning in &p.warnings {
            out.push_str(&format!("  type-checking warning: {warning}\n"));
        }
    }
    for problem in &report.problems {
        out.push_str(&format!("problem: {problem}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::plan::{plan_guards, tests::web};
    use super::super::status::tests::shop_report;
    use super::*;
    use crate::core::guard::{Mark, Mode, Pinned};

    #[test]
    fn guard_on_shows_each_guard_and_how_soon_the_api_server_enforced_it() {
        let web = web();
        let mut plans = plan_guards(std::slice::from_ref(&web), None, Mode::Deny).unwrap();
        plans.extend(plan_guards(std::slice::from_ref(&web), Some(2), Mode::Warn).unwrap());
        plans[0].active_after = Duration::from_millis(340);
        plans[1].autoscaler = None;
        let ns = &web.namespace;
        let table = [
            " NAMESPACE          WORKLOAD        REPLICAS  FLOOR  MODE  AUTOSCALER",
            " hpa-owns-0-768036  deployment/web  3         3      deny  hpa/web",
            " hpa-owns-0-768036  deployment/web  3         2      warn  <none>",
        ];
        let lines = [
            format!(
                "guarded {ns}/deployment/web: a server-side dry run setting 2 replicas was refused (0.3 s after the policy was written)"
            ),
            format!(
                "guarded {ns}/deployment/web: a server-side dry run setting 1 replicas was let through with the guard's warning (0.0 s after the policy was written)"
            ),
        ];
        assert_eq!(render_on(&plans), format!("{}\n\n{}\n", table.join("\n"), lines.join("\n")));
    }

    #[test]
    fn guard_off_lists_what_it_unguarded_then_what_was_not_guarded_then_what_it_removed() {
        let lifted = Lifted {
            unguarded: vec!["shop/deployment/web".into()],
            not_guarded: vec!["shop/statefulset/db".into()],
            removed: vec!["hpa-migrate-guard-v1-deployments-deny".into()],
            warnings: vec!["not printed here".into()],
        };
        assert_eq!(
            render_off(&lifted),
            "unguarded shop/deployment/web\nshop/statefulset/db was not guarded\nremoved hpa-migrate-guard-v1-deployments-deny\n"
        );
        assert_eq!(render_off(&Lifted::default()), "");
    }

    #[test]
    fn guard_status_shows_what_is_enforced_the_policies_and_the_problems() {
        let mut report = shop_report();
        report.policies[0].warnings.push("spec.validations[0].expression: a warning".into());
        let expected = [
            " NAMESPACE  WORKLOAD        REPLICAS  FLOOR  MODE                 AUTOSCALER",
            " shop       deployment/api  -         2      deny                 hpa/web",
            " shop       deployment/old  5         -      deny (not enforced)  hpa/web",
            " shop       deployment/web  5         3      deny                 hpa/web",
            " shop       statefulset/db  5         3      deny                 hpa/web",
            "",
            "policy hpa-migrate-guard-v1-deployments-deny: installed and bound, guards 3 workload(s) cluster-wide",
            "  type-checking warning: spec.validations[0].expression: a warning",
            "policy hpa-migrate-guard-v1-deployments-warn: not installed",
            "policy hpa-migrate-guard-v1-statefulsets-deny: installed but NOT bound, guards 1 workload(s) cluster-wide",
            "policy hpa-migrate-guard-v1-statefulsets-warn: not installed",
            "problem: hpa-migrate-guard-v1-statefulsets-deny has no binding, so it refuses nothing; run guard on again",
            "problem: shop/deployment/old is marked, but no guard policy lists it: it is not guarded",
            "problem: shop/deployment/api is guarded, but its mark is gone (check does not show it)",
            "problem: shop/statefulset/db: the mark says warn >= 2 but the policy enforces deny >= 3",
        ];
        assert_eq!(render_status(&report), expected.join("\n") + "\n");
    }

    #[test]
    fn guard_status_names_the_last_write_pin_kept_under_the_table() {
        let mut report = shop_report();
        report.workloads.truncate(1);
        report.problems.clear();
        report.policies.clear();
        let mark = report.workloads[0].mark.get_or_insert(Mark {
            mode: Mode::Pin,
            floor: Some(2),
            autoscaler: None,
            pinned: None,
        });
        mark.pinned = Some(Pinned { replicas: 5, at: Some("2026-12-03T15:48:54Z".into()) });
        let text = render_status(&report);
        assert!(
            text.contains("\nshop/deployment/api: a deploy without replicas (or below the floor) was pinned at 5 at 2026-12-03T15:48:54Z\n"),
            "{text}"
        );
    }

    #[test]
    fn guard_status_with_nothing_guarded_says_so() {
        let mut report = shop_report();
        report.workloads.clear();
        report.problems.clear();
        report.policies.truncate(1);
        assert_eq!(
            render_status(&report),
            "No guarded workloads in scope.\n\npolicy hpa-migrate-guard-v1-deployments-deny: installed and bound, guards 3 workload(s) cluster-wide\n"
        );
    }
}
