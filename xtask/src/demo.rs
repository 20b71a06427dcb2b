//! `cargo xtask demo`: the failure the tool exists for and the migration it enables, told in the
//! terminal on the local control plane with the real kubectl and the real plugin.
//!
//! A Mimir-shaped namespace (`demo/mimir/`) is committed to a local Git (`flux::LocalGit`) and
//! deployed by the real Flux kustomize-controller, with HPAs and a ScaledObject that the real
//! KEDA operator turns into its HPA. The ruler then loses `replicas` in a commit without the
//! tool and drops to 1; side by side, the same commit for the distributor, guarded (`guard on`),
//! is refused by the API server and changes nothing, which holds back the whole commit. Beside
//! it, the query-scheduler, deployed from its own repository by its own Kustomization, is pinned
//! (`guard on --pin`) and its commit without `replicas` is applied with the count kept in every
//! stored version; `verify` names the pin and `guard off` leaves nothing. The other workloads and
//! the distributor go through `strip --pause-flux`, the commit without `replicas`, `resume`, a
//! reconcile and `verify`, and keep their counts; `guard off` lifts the guard. The demo fails
//! unless exactly that happened.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::cluster::{self, Paths};
use crate::workspace_root;

const NAMESPACE: &str = "mimir-demo";
const MANIFESTS: &str = "demo/mimir";
const OUT_DIR: &str = "target/demo";
/// Where the GitRepository and the Kustomization (demo/mimir/flux.yaml) live.
const FLUX_NAMESPACE: &str = "flux-system";
const FLUX_NAME: &str = "mimir";
/// The pinned workload's own GitRepository and Kustomization (also in demo/mimir/flux.yaml).
const PINNED_FLUX_NAME: &str = "mimir-query-scheduler";
/// The HPA minReplicas of every autoscaler in demo/mimir/autoscalers.yaml.
const HPA_MIN: i64 = 2;

struct Workload {
    /// As kubectl and the plugin take it: `deploy/ruler`, `sts/ingester`.
    target: &'static str,
    replicas: i64,
}

impl Workload {
    fn kind(&self) -> &'static str {
        if self.target.starts_with("sts/") { "statefulset" } else { "deployment" }
    }

    fn name(&self) -> &'static str {
        self.target.split_once('/').map_or(self.target, |(_, name)| name)
    }

    fn label(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }
}

/// The one that loses `replicas` without the tool.
const RULER: Workload = Workload { target: "deploy/ruler", replicas: 3 };
/// The one guarded before the same commit, which the API server refuses for it.
const GUARDED: &Workload = &MIGRATED[0];
/// The one pinned (`guard on --pin`) before the same commit in its own Kustomization, which
/// applies it with the count kept. Its manifest is demo/mimir/query-scheduler.yaml.
const PINNED: Workload = Workload { target: "deploy/query-scheduler", replicas: 4 };
/// The ones migrated with the tool. The querier is scaled through the ScaledObject.
const MIGRATED: [Workload; 4] = [
    Workload { target: "deploy/distributor", replicas: 5 },
    Workload { target: "deploy/querier", replicas: 4 },
    Workload { target: "deploy/query-frontend", replicas: 3 },
    Workload { target: "sts/ingester", replicas: 3 },
];

pub fn demo(paths: &Paths, keep: bool) -> Result<()> {
    let started = Instant::now();
    let started_here = cluster::up(paths)?;
    let result = crate::cargo(&["build", "--locked", "--bin", "kubectl-hpa_migrate"], &[])
        .and_then(|()| Demo::new(paths)?.run());
    if keep {
        explore(paths);
    } else {
        // The Kustomization prunes what it applied, the namespace included.
        let _ = cluster::kubectl(
            paths,
            &[
                "delete",
                "kustomization,gitrepository",
                FLUX_NAME,
                PINNED_FLUX_NAME,
                "-n",
                FLUX_NAMESPACE,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
        let _ =
            cluster::kubectl(paths, &["delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false"], None);
        if started_here {
            cluster::down(paths)?;
        }
    }
    result?;
    eprintln!("xtask: demo passed in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn explore(paths: &Paths) {
    let root = workspace_root();
    println!(
        "\nThe control plane and namespace {NAMESPACE} are left running. To explore:\n\n  \
         export KUBECONFIG={kubeconfig}\n  \
         export PATH={debug}:{bin}:$PATH   # kubectl, and kubectl-hpa_migrate for `kubectl hpa-migrate`\n  \
         kubectl get deploy,sts,hpa,scaledobjects -n {NAMESPACE}\n  \
         kubectl hpa-migrate check -n {NAMESPACE}\n  \
         kubectl hpa-migrate verify -n {NAMESPACE} deploy/ruler --since 1h\n  \
         kubectl get deploy ruler -n {NAMESPACE} -o yaml --show-managed-fields   # who owns what now\n  \
         kubectl get kustomization,gitrepository -n {FLUX_NAMESPACE}   # Flux's view (its log: {flux_log})\n\n\
         The local Git server stopped with the demo: Flux keeps what it applied, and a reconcile now\n\
         fails to download the last commit. The strip's backups: {backups}\n\
         When done: kubectl delete kustomization -n {FLUX_NAMESPACE} {FLUX_NAME} {PINNED_FLUX_NAME} (they prune {NAMESPACE});\n\
         `cargo xtask cluster down` stops the plane.",
        kubeconfig = paths.admin_kubeconfig.display(),
        debug = plugin_dir().display(),
        bin = paths.bin.display(),
        flux_log = paths.log_file(crate::flux::COMPONENT).display(),
        backups = root.join(OUT_DIR).join("backups").display(),
    );
}

struct Demo<'a> {
    paths: &'a Paths,
    root: PathBuf,
    /// PATH for the commands shown: the plane's kubectl and the plugin just built come first, so
    /// `kubectl hpa-migrate` runs exactly as a user types it.
    path: OsString,
    styled: bool,
    git: crate::flux::LocalGit,
}

impl<'a> Demo<'a> {
    fn new(paths: &'a Paths) -> Result<Self> {
        let root = workspace_root();
        let mut dirs = vec![plugin_dir(), paths.bin.clone()];
        dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
        let path = std::env::join_paths(dirs).expect("PATH entries without separators");
        let styled = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Ok(Self { paths, root, path, styled, git: crate::flux::LocalGit::start()? })
    }

    fn run(&self) -> Result<()> {
        self.clean_up_previous_run()?;
        self.title("hpa-migrate demo: Flux hands .spec.replicas of a Mimir-shaped namespace to its autoscalers");
        self.say(&format!(
            "The local control plane runs etcd, kube-apiserver and kube-controller-manager (Deployment,\n\
             StatefulSet and HPA controllers), the real Flux kustomize-controller and the real KEDA\n\
             operator, with no scheduler, kubelet or metrics API: Pods are created but never run (READY\n\
             stays 0/N; N is spec.replicas, the count this story is about). Git is local: each commit of\n\
             {MANIFESTS}/ is packed into a tarball that kustomize-controller downloads, as it does from\n\
             source-controller (which does not run here)."
        ));

        self.step("1. Flux deploys Mimir with replicas, and the autoscalers");
        self.deploy_with_replicas()?;

        self.step("2. Can replicas be deleted from Git now?");
        self.expect(1, &["hpa-migrate", "check", "-n", NAMESPACE])?;
        self.say(
            "Exit 1, strip-needed everywhere: each autoscaler is in charge, but kustomize-controller still\n\
             owns .spec.replicas. Delete replicas from Git now and Flux's next apply stops sending a field\n\
             it alone owns: the API server removes it and defaults it to 1.",
        );

        self.step("3. The ruler, without the tool: replicas deleted from its manifest, Flux applies");
        self.ruler_without_the_tool()?;

        self.step("4. The same commit on a guarded workload: the distributor");
        self.guarded_commit_is_refused()?;

        self.step("5. The same commit on a pinned workload: the query-scheduler, in its own Kustomization");
        self.pinned_commit_is_applied()?;

        self.step("6. The others and the distributor, with the tool");
        let targets: Vec<&str> = MIGRATED.iter().map(|w| w.target).collect();
        self.strip_and_commit(&targets)?;
        self.resume_and_verify(&targets)?;

        self.step("7. Summary");
        self.summary()
    }

    /// Empties the output directory and deletes what a previous run left on the plane.
    fn clean_up_previous_run(&self) -> Result<()> {
        let out_dir = self.root.join(OUT_DIR);
        if out_dir.exists() {
            fs::remove_dir_all(&out_dir).with_context(|| format!("removing {}", out_dir.display()))?;
        }
        fs::create_dir_all(&out_dir)?;
        eprintln!("xtask: deleting what a previous run left (its Kustomization prunes namespace {NAMESPACE})");
        self.kubectl(&[
            "delete",
            "kustomization,gitrepository",
            FLUX_NAME,
            PINNED_FLUX_NAME,
            "-n",
            FLUX_NAMESPACE,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ])?;
        self.kubectl(&["delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=120s"])
            .map(|_| ())
    }

    /// Step 1: the first commit, with replicas, and the autoscalers' HPAs.
    fn deploy_with_replicas(&self) -> Result<()> {
        self.expect(0, &["apply", "-f", &format!("{MANIFESTS}/flux.yaml")])?;
        self.commit(
            FLUX_NAME,
            "Mimir with replicas, and its autoscalers",
            &[
                ("mimir.yaml", self.manifest("with-replicas.yaml")?),
                ("autoscalers.yaml", self.manifest("autoscalers.yaml")?),
            ],
        )?;
        self.say(&format!(
            "The query-scheduler comes from its own repository, with its HPA ({MANIFESTS}/query-scheduler.yaml):"
        ));
        self.commit(
            PINNED_FLUX_NAME,
            "query-scheduler with replicas, and its HPA",
            &[("query-scheduler.yaml", self.manifest("query-scheduler.yaml")?)],
        )?;
        self.say(&format!(
            "Every autoscaler has minReplicas {HPA_MIN}, below the current counts, and no metrics to act\n\
             on: the HPA controller leaves the counts as they are. The KEDA operator answered the\n\
             ScaledObject with the HPA keda-hpa-querier (its Prometheus is unreachable here: a TriggerError,\n\
             while its HPA still holds minReplicas and maxReplicas)."
        ));
        // One HPA per workload: five of their own, the querier's through KEDA.
        self.wait_for_hpas(MIGRATED.len() + 2)?;
        self.expect(0, &["get", "hpa", "-n", NAMESPACE])
    }

    /// Step 3: the ruler's commit without replicas, its drop, and verify finding it.
    fn ruler_without_the_tool(&self) -> Result<()> {
        self.say("Watch the ruler while Git loses its replicas and Flux reconciles:");
        self.ruler_drops()?;
        self.expect(1, &["hpa-migrate", "verify", "-n", NAMESPACE, RULER.target, "--since", "10m"])?;
        self.say(&format!(
            "Exit 1: verify found the drop {} -> 1 in the Deployment's events, and that no autoscaler\n\
             ordered it. The HPA then restored its minReplicas, {HPA_MIN}, not the {} the ruler was sized for.",
            RULER.replicas, RULER.replicas
        ));
        Ok(())
    }

    /// Step 5, first half: strip with Flux paused, then the commit without replicas.
    fn strip_and_commit(&self, targets: &[&str]) -> Result<()> {
        self.say(
            "strip takes .spec.replicas out of kustomize-controller's managedFields entry (the diff), after\n\
             a backup, and --pause-flux holds Flux off these objects until Git no longer has replicas:",
        );
        let backups = format!("{OUT_DIR}/backups");
        let mut strip =
            vec!["hpa-migrate", "strip", "-n", NAMESPACE, "--yes", "--pause-flux", "--backup-dir", &backups];
        strip.extend(targets);
        self.expect(0, &strip)?;
        self.say(&format!(
            "Git: replicas deleted from every manifest ({MANIFESTS}/without-replicas.yaml). Flux applies\n\
             the commit but skips the paused objects:"
        ));
        self.commit(
            FLUX_NAME,
            "Hand replicas to the autoscalers",
            &[
                ("mimir.yaml", self.manifest("without-replicas.yaml")?),
                ("autoscalers.yaml", self.manifest("autoscalers.yaml")?),
            ],
        )
    }

    /// Step 5, second half: resume and reconcile, check and verify, and lift the guard.
    fn resume_and_verify(&self, targets: &[&str]) -> Result<()> {
        self.say("Git no longer has replicas: resume Flux on them, and reconcile.");
        let mut resume = vec!["hpa-migrate", "resume", "-n", NAMESPACE];
        resume.extend(targets);
        self.expect(0, &resume)?;
        let revision = self.applied_revision()?;
        self.reconcile(FLUX_NAME, &revision)?;
        self.expect(0, &["get", "deploy,sts", "-n", NAMESPACE])?;
        self.expect(0, &["hpa-migrate", "check", "-n", NAMESPACE])?;
        self.say(
            "Exit 0, safe everywhere: no deploy tool owns replicas any more. The ruler is safe now too: Flux\n\
             lost its claim when the field was dropped, so no deploy can reset it again. But check judges\n\
             the present; verify judges the past:",
        );
        let mut verify = vec!["hpa-migrate", "verify", "-n", NAMESPACE];
        verify.extend(targets);
        verify.extend(["--since", "10m"]);
        self.expect(0, &verify)?;
        self.say("Exit 0: the migrated workloads never dropped.");
        self.say("The migration window is over: lift the guard (its policy goes with the last guarded workload).");
        self.expect(0, &["hpa-migrate", "guard", "off", "-n", NAMESPACE, GUARDED.target])
    }

    /// The ruler's replicas leave its manifest with no strip first. A watch started before the
    /// apply shows every state the Deployment went through, however fast the HPA reacts.
    fn ruler_drops(&self) -> Result<()> {
        self.watching(&["get", RULER.target, "-n", NAMESPACE, "--watch"], |_| {
            self.commit(
                FLUX_NAME,
                "ruler: remove replicas, its HPA has it",
                &[
                    ("mimir.yaml", self.mimir_without(&[&RULER])?),
                    ("autoscalers.yaml", self.manifest("autoscalers.yaml")?),
                ],
            )?;
            wait_until("the HPA to bring the ruler back to its minReplicas", Duration::from_secs(60), || {
                Ok(self.replicas(&RULER)? == Some(HPA_MIN)
                    && self.kubectl(&["get", RULER.target, "-n", NAMESPACE, "-o", "jsonpath={.status.replicas}"])?
                        == HPA_MIN.to_string())
            })?;
            // Let the watch print the last updates before it stops.
            std::thread::sleep(Duration::from_millis(500));
            Ok(())
        })?;
        self.say(&format!(
            "The API server removed the field Flux stopped sending and defaulted it to 1 (READY 0/1). The\n\
             HPA noticed at its next sync (every 2 s on this plane, every 15 s by default) and scaled\n\
             the ruler back up to minReplicas {HPA_MIN}. verify finds the drop afterwards, from the events:"
        ));
        // verify reads the Deployment controller's events, written asynchronously.
        let selector = format!("involvedObject.kind=Deployment,involvedObject.name={}", RULER.name());
        wait_until("the ruler's scaling events", Duration::from_secs(30), || {
            let messages = self.kubectl(&[
                "get",
                "events",
                "-n",
                NAMESPACE,
                "--field-selector",
                &selector,
                "-o",
                "jsonpath={.items[*].message}",
            ])?;
            let down = format!("from {} to 1", RULER.replicas);
            Ok(messages.contains(&down) && messages.contains(&format!("from 1 to {HPA_MIN}")))
        })
    }

    /// The distributor guarded, then the ruler's mistake made for it too: Flux's apply (its
    /// server-side dry run already) is refused, the Kustomization reports the guard's message,
    /// and the distributor keeps its count while the ruler runs at its HPA's minimum.
    fn guarded_commit_is_refused(&self) -> Result<()> {
        self.say(&format!(
            "guard has the API server itself refuse any write that would take a workload below its floor\n\
             (a ValidatingAdmissionPolicy: nothing to run in the cluster). Guard the {} for the migration\n\
             window, with its HPA's minReplicas as the floor:",
            GUARDED.name()
        ));
        self.expect(0, &["hpa-migrate", "guard", "on", "-n", NAMESPACE, GUARDED.target])?;
        self.say(&format!("Git: the ruler's mistake, for the {} too (no strip):", GUARDED.name()));
        let revision = self.git.push(
            self.paths,
            FLUX_NAMESPACE,
            FLUX_NAME,
            &[
                ("mimir.yaml", self.mimir_without(&[&RULER, GUARDED])?),
                ("autoscalers.yaml", self.manifest("autoscalers.yaml")?),
            ],
        )?;
        self.show_commit(&format!("{}: remove replicas, its HPA has it", GUARDED.name()), &revision);
        self.reconcile_expecting(FLUX_NAME, &revision, Reconciled::Refused)?;
        self.expect(0, &["get", RULER.target, GUARDED.target, "-n", NAMESPACE])?;
        let kept = self.replicas(GUARDED)?;
        ensure!(kept == Some(GUARDED.replicas), "the guarded {} has {kept:?} replicas", GUARDED.label());
        self.say(&format!(
            "Side by side: the same change took the unguarded ruler from {} to 1 (its HPA then restored {HPA_MIN});\n\
             for the guarded {} the API server refused it, and it kept {}. Flux retries and keeps\n\
             reporting the refusal until Git sets replicas again or the workload is stripped.",
            RULER.replicas,
            GUARDED.name(),
            GUARDED.replicas
        ));
        Ok(())
    }

    /// Shows `kubectl ARGS &` and runs it, echoing what it prints, while `during` runs; `during`
    /// gets the lines printed after the header and the object as it was, so the watch is
    /// established before it starts and sees every version stored while it runs.
    fn watching(&self, args: &[&str], during: impl FnOnce(&mpsc::Receiver<String>) -> Result<()>) -> Result<()> {
        self.show_command(args, " &");
        let mut watch = self.command(args).stdout(Stdio::piped()).spawn().context("starting kubectl --watch")?;
        let stdout = watch.stdout.take().expect("piped stdout");
        let (lines, printed) = mpsc::channel();
        let echo = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("{line}");
                let _ = lines.send(line);
            }
        });
        let result = (|| -> Result<()> {
            for _ in 0..2 {
                printed.recv_timeout(Duration::from_secs(20)).context("kubectl --watch printed nothing")?;
            }
            during(&printed)
        })();
        let _ = watch.kill();
        let _ = watch.wait();
        let _ = echo.join();
        result
    }

    /// The query-scheduler pinned, then the same mistake committed to its own repository: its
    /// Kustomization applies the commit and stays Ready, every version the API server stores
    /// keeps the count (the watch's rows, checked as they come), the write carries the pin's
    /// stamp, `verify` passes naming the pin, and `guard off` leaves nothing on the workload.
    fn pinned_commit_is_applied(&self) -> Result<()> {
        self.say(&format!(
            "On Kubernetes 1.36 and later, guard --pin has the API server rewrite such a write instead of\n\
             refusing it (a MutatingAdmissionPolicy): a deploy that would take the workload below its floor\n\
             keeps the live count, and the deploy goes through. The {} is deployed from its own\n\
             repository by its own Kustomization ({PINNED_FLUX_NAME}): pin it, floor = its HPA's minReplicas:",
            PINNED.name()
        ));
        self.expect(0, &["hpa-migrate", "guard", "on", "-n", NAMESPACE, PINNED.target, "--pin"])?;
        self.say(&format!(
            "Git: the same mistake for the {} (no strip, no pause). Watch every version the API server\n\
             stores, with the stamp the pin leaves:",
            PINNED.name()
        ));
        let columns = "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas,\
                       PINNED-REPLICAS:.metadata.annotations.hpa-migrate\\.io/pinned-replicas,\
                       PINNED-AT:.metadata.annotations.hpa-migrate\\.io/pinned-at";
        let kept = PINNED.replicas.to_string();
        self.watching(&["get", PINNED.target, "-n", NAMESPACE, "--watch", "-o", columns], |rows| {
            ensure!(
                self.replicas(&PINNED)? == Some(PINNED.replicas),
                "{} lost its count before the commit",
                PINNED.label()
            );
            let without_replicas: String = self
                .manifest("query-scheduler.yaml")?
                .lines()
                .filter(|l| !l.starts_with("  replicas: "))
                .map(|l| format!("{l}\n"))
                .collect();
            self.commit(
                PINNED_FLUX_NAME,
                &format!("{}: remove replicas, its HPA has it", PINNED.name()),
                &[("query-scheduler.yaml", without_replicas)],
            )?;
            // The applied write is the row with the stamp; every row up to it is a stored version.
            loop {
                let row = rows
                    .recv_timeout(Duration::from_secs(30))
                    .context("the watch never showed the pinned write after the Kustomization applied it")?;
                let fields: Vec<&str> = row.split_whitespace().collect();
                ensure!(
                    fields.get(1) == Some(&kept.as_str()),
                    "a stored version of the pinned {} does not have {kept} replicas: {row}",
                    PINNED.label()
                );
                if fields.get(2) == Some(&kept.as_str()) {
                    return Ok(());
                }
            }
        })?;
        self.expect(0, &["get", "kustomization", "-n", FLUX_NAMESPACE, FLUX_NAME, PINNED_FLUX_NAME])?;
        self.say(&format!(
            "Side by side: the {} commit is held back by the distributor's refusal; the {} commit\n\
             is applied (Ready), and the {} kept {} in every stored version. verify judges the past and\n\
             names the pin:",
            FLUX_NAME,
            PINNED_FLUX_NAME,
            PINNED.name(),
            PINNED.replicas
        ));
        let verify = ["hpa-migrate", "verify", "-n", NAMESPACE, PINNED.target, "--since", "10m"];
        let shown = self.expect_output(0, &verify)?;
        let named = format!("pinned at {}", PINNED.replicas);
        ensure!(shown.contains(&named), "verify did not name the pin ({named:?}):\n{shown}");
        self.say("Git no longer has replicas: the pin has done its work. Lift it:");
        self.expect(0, &["hpa-migrate", "guard", "off", "-n", NAMESPACE, PINNED.target])?;
        let object: Value = serde_json::from_str(&self.kubectl(&[
            "get",
            PINNED.target,
            "-n",
            NAMESPACE,
            "-o",
            "json",
            "--show-managed-fields",
        ])?)?;
        let metadata = &object["metadata"];
        let left: Vec<String> = ["labels", "annotations"]
            .iter()
            .flat_map(|map| metadata[map].as_object().into_iter().flatten().map(|(key, _)| key.clone()))
            .chain(
                metadata["managedFields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["manager"].as_str().map(String::from)),
            )
            .filter(|key| key.contains("hpa-migrate"))
            .collect();
        ensure!(left.is_empty(), "guard off left {left:?} on {}", PINNED.label());
        let owners: Vec<&Value> = metadata["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| !e["fieldsV1"]["f:spec"]["f:replicas"].is_null())
            .map(|e| &e["manager"])
            .collect();
        ensure!(owners.is_empty(), "after the pinned apply {owners:?} still own the {}'s replicas", PINNED.name());
        // The policy is shared by every namespace pinned on the plane: only this entry must be gone.
        let listing = self.kubectl(&[
            "get",
            "mutatingadmissionpolicy",
            "hpa-migrate-guard-v1-deployments-pin",
            "--ignore-not-found",
            "-o",
            "jsonpath={.metadata.annotations.hpa-migrate\\.io/guarded}",
        ])?;
        ensure!(!listing.contains(NAMESPACE), "guard off left the pin policy listing {NAMESPACE}: {listing}");
        ensure!(self.replicas(&PINNED)? == Some(PINNED.replicas), "{} lost its count at guard off", PINNED.label());
        self.expect(0, &["hpa-migrate", "check", "-n", NAMESPACE, PINNED.target])?;
        self.say(&format!(
            "Exit 0, safe, OWNERS <none>: the pinned write handed replicas over by itself (Flux's apply\n\
             no longer owns the field), so no later deploy of the {} can drop it; and guard off left\n\
             no policy entry, mark or stamp behind.",
            PINNED.name()
        ));
        Ok(())
    }

    /// `with-replicas.yaml` with the documents of `workloads` taken from `without-replicas.yaml`.
    fn mimir_without(&self, workloads: &[&Workload]) -> Result<String> {
        let without = documents(&self.manifest("without-replicas.yaml")?);
        let mimir = documents(&self.manifest("with-replicas.yaml")?)
            .into_iter()
            .map(|d| match workloads.iter().find(|w| is_workload(&d, w)) {
                Some(w) => without.iter().find(|o| is_workload(o, w)).cloned().unwrap_or(d),
                None => d,
            })
            .collect::<Vec<_>>();
        Ok(mimir.join("---\n"))
    }

    /// The final state, checked: every migrated workload kept its count and never dropped; the
    /// ruler alone dropped.
    fn summary(&self) -> Result<()> {
        let all: Vec<&Workload> = [&RULER, &PINNED].into_iter().chain(&MIGRATED).collect();
        let mut args = vec!["hpa-migrate", "verify", "-n", NAMESPACE, "--since", "10m", "-o", "json"];
        args.extend(all.iter().map(|w| w.target));
        let output = self.command(&args).stderr(Stdio::inherit()).output().context("running verify -o json")?;
        let report: Value = serde_json::from_slice(&output.stdout).context("parsing verify -o json")?;
        let mut table = format!(" {:<26}{:>7}{:>7}  {:<14}HOW\n", "WORKLOAD", "BEFORE", "AFTER", "VERIFY");
        let mut problems = Vec::new();
        for workload in &all {
            let result = report["results"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| {
                    r["name"] == workload.name()
                        && r["kind"].as_str().map(str::to_lowercase) == Some(workload.kind().into())
                })
                .with_context(|| format!("verify reported nothing for {}", workload.label()))?;
            let outcome = result["outcome"].as_str().unwrap_or_default();
            let drops: Vec<String> = result["history"]["drops"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| format!("{} -> {}", d["from"], d["to"]))
                .collect();
            let after = self.replicas(workload)?;
            let migrated = workload.target != RULER.target;
            let how = if workload.target == PINNED.target {
                "pinned: Git without replicas applied, no strip; then guard off"
            } else if workload.target == GUARDED.target {
                "guarded: Git without replicas refused; then strip --pause-flux"
            } else if migrated {
                "strip --pause-flux, then Git without replicas"
            } else {
                "Git without replicas, no strip; the HPA restored its minimum"
            };
            let verdict =
                if drops.is_empty() { outcome.to_string() } else { format!("{outcome} {}", drops.join(", ")) };
            let after_text = after.map_or("-".to_string(), |r| r.to_string());
            let _ =
                writeln!(table, " {:<26}{:>7}{after_text:>7}  {verdict:<14}{how}", workload.label(), workload.replicas);
            if migrated {
                if outcome != "pass" || after != Some(workload.replicas) {
                    problems.push(format!(
                        "{} should have kept {} replicas and passed verify; it has {after_text} and verify says {verdict}",
                        workload.label(),
                        workload.replicas
                    ));
                }
            } else if outcome != "drop"
                || drops.first().map(String::as_str) != Some(&format!("{} -> 1", RULER.replicas))
            {
                problems.push(format!("the ruler should have dropped {} -> 1; verify says {verdict}", RULER.replicas));
            }
        }
        print!("{table}");
        ensure!(problems.is_empty(), "the demo did not end as it should:\n  {}", problems.join("\n  "));
        self.say(
            "Every migrated workload kept its count through the Git change; the ruler alone ran on one pod\n\
             until its HPA reacted, and now runs below the count it was sized for.",
        );
        Ok(())
    }

    fn manifest(&self, file: &str) -> Result<String> {
        let path = self.root.join(MANIFESTS).join(file);
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// A commit to the local Git repository `kustomization` (each Kustomization here has its
    /// GitRepository of the same name), pushed, then a reconcile of the Kustomization.
    fn commit(&self, kustomization: &str, message: &str, files: &[(&str, String)]) -> Result<()> {
        let revision = self.git.push(self.paths, FLUX_NAMESPACE, kustomization, files)?;
        self.show_commit(message, &revision);
        self.reconcile(kustomization, &revision)
    }

    fn show_commit(&self, message: &str, revision: &str) {
        println!("\n{}", self.style("1", &format!("$ git commit -qam {} && git push -q", quote(message))));
        println!("[main {}] {message}", &revision["main@sha1:".len()..][..7]);
    }

    fn reconcile(&self, kustomization: &str, revision: &str) -> Result<()> {
        self.reconcile_expecting(kustomization, revision, Reconciled::Applied)
    }

    /// What `flux reconcile kustomization mimir` does (the flux CLI is not installed here): the
    /// request annotation, then the wait until the controller has applied `revision` (or, for
    /// [`Reconciled::Refused`], has failed to apply it with the guard's refusal).
    fn reconcile_expecting(&self, kustomization: &str, revision: &str, expected: Reconciled) -> Result<()> {
        let requested = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos());
        self.expect(
            0,
            &[
                "annotate",
                "--overwrite",
                "-n",
                FLUX_NAMESPACE,
                &format!("kustomization/{kustomization}"),
                &format!("reconcile.fluxcd.io/requestedAt={requested}"),
            ],
        )?;
        wait_until(&format!("kustomize-controller to apply {revision}"), Duration::from_secs(90), || {
            let object: Value = serde_json::from_str(&self.kubectl(&[
                "get",
                "kustomization",
                kustomization,
                "-n",
                FLUX_NAMESPACE,
                "-o",
                "json",
            ])?)?;
            let status = &object["status"];
            let ready = status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
            let handled = status["lastHandledReconcileAt"] == requested.as_str()
                && status["observedGeneration"] == object["metadata"]["generation"];
            Ok(handled
                && ready.is_some_and(|c| match expected {
                    Reconciled::Applied => c["status"] == "True" && status["lastAppliedRevision"] == revision,
                    Reconciled::Refused => {
                        c["status"] == "False"
                            && status["lastAttemptedRevision"] == revision
                            && c["message"].as_str().is_some_and(|m| m.contains("denied request: hpa-migrate guard: "))
                    }
                }))
        })?;
        self.expect(0, &["get", "kustomization", "-n", FLUX_NAMESPACE, kustomization])
    }

    fn applied_revision(&self) -> Result<String> {
        self.kubectl(&[
            "get",
            "kustomization",
            FLUX_NAME,
            "-n",
            FLUX_NAMESPACE,
            "-o",
            "jsonpath={.status.lastAppliedRevision}",
        ])
    }

    /// Waits until the HPA controller has judged every HPA (the condition `judged` of the
    /// integration tests): before that, `check` reports them as not ready.
    fn wait_for_hpas(&self, expected: usize) -> Result<()> {
        wait_until("the HPA controller to judge every HPA", Duration::from_secs(60), || {
            let list: Value = serde_json::from_str(&self.kubectl(&["get", "hpa", "-n", NAMESPACE, "-o", "json"])?)?;
            let judged = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|hpa| {
                    let conditions = hpa["status"]["conditions"].as_array().cloned().unwrap_or_default();
                    conditions
                        .iter()
                        .any(|c| c["type"] == "ScalingActive" || (c["type"] == "AbleToScale" && c["status"] == "False"))
                })
                .count();
            Ok(judged >= expected)
        })
    }

    fn replicas(&self, workload: &Workload) -> Result<Option<i64>> {
        let text = self.kubectl(&["get", workload.target, "-n", NAMESPACE, "-o", "jsonpath={.spec.replicas}"])?;
        Ok(text.trim().parse().ok())
    }

    /// A query the story does not show.
    fn kubectl(&self, args: &[&str]) -> Result<String> {
        Ok(cluster::kubectl(self.paths, args, None)?.trim().to_string())
    }

    /// A command the story shows: `kubectl ...` as a user types it, run from the repo root with
    /// the admin kubeconfig in KUBECONFIG.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.paths.kubectl());
        command
            .args(args)
            .current_dir(&self.root)
            .env("PATH", &self.path)
            .env("KUBECONFIG", &self.paths.admin_kubeconfig)
            .stdin(Stdio::null());
        command
    }

    fn show_command(&self, args: &[&str], suffix: &str) {
        let line: Vec<String> = args.iter().map(|a| quote(a)).collect();
        let text = format!("$ kubectl {}{suffix}", line.join(" "));
        println!("\n{}", self.style("1", &text));
    }

    /// As [`Self::expect`], and returns what the command printed on stdout (shown too).
    fn expect_output(&self, code: i32, args: &[&str]) -> Result<String> {
        self.show_command(args, "");
        let output = self
            .command(args)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running kubectl {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        print!("{stdout}");
        if output.status.code() != Some(code) {
            bail!("`kubectl {}` exited with {}, expected exit code {code}", args.join(" "), output.status);
        }
        Ok(stdout)
    }

    /// Shows a command, runs it with its real output, and fails unless it exits with `code`.
    fn expect(&self, code: i32, args: &[&str]) -> Result<()> {
        self.show_command(args, "");
        let status = self.command(args).status().with_context(|| format!("running kubectl {}", args.join(" ")))?;
        if status.code() != Some(code) {
            bail!("`kubectl {}` exited with {status}, expected exit code {code}", args.join(" "));
        }
        Ok(())
    }

    fn title(&self, text: &str) {
        println!("{}", self.style("1", text));
    }

    fn step(&self, text: &str) {
        println!("\n\n{}", self.style("1;36", &format!("== {text} ==")));
    }

    fn say(&self, text: &str) {
        println!("\n{text}");
    }

    fn style(&self, sgr: &str, text: &str) -> String {
        if self.styled { format!("\x1b[{sgr}m{text}\x1b[0m") } else { text.to_string() }
    }
}

/// Where `cargo build` put the plugin: CARGO_TARGET_DIR's debug/ when set (a worktree's own),
/// else target/debug.
fn plugin_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from).join("debug")
}

/// Polls `probe` every 250 ms until it holds, or fails after `timeout` naming `what`.
fn wait_until(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if probe()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {}s waiting for {what}", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The documents of a multi-document YAML file.
fn documents(text: &str) -> Vec<String> {
    text.split("\n---\n").map(|d| format!("{}\n", d.trim_end())).collect()
}

fn is_workload(document: &str, workload: &Workload) -> bool {
    let kind = if workload.kind() == "statefulset" { "kind: StatefulSet" } else { "kind: Deployment" };
    document.contains(kind) && document.contains(&format!("\n  name: {}\n", workload.name()))
}

#[derive(Clone, Copy)]
enum Reconciled {
    Applied,
    /// Not applied: the Kustomization's Ready condition carries the guard's refusal.
    Refused,
}

/// Quotes an argument for display the way a shell would need it.
fn quote(arg: &str) -> String {
    if arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:@%+".contains(c)) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
