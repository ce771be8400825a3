//! Fleet deploys (design §9): one deploy id, four phases over every host of an environment.
//!
//! 1. **Prepare**, every host at once (the one that migrates first, alone, when migrations
//!    run once): the artifact goes to the node (uploaded, or pulled from a registry), then it
//!    is staged, started beside the live release and health-checked, with no traffic.
//! 2. **Commit**: every router flips, in one window or in batches; the flip skew is reported.
//! 3. **Observe**: each node's new release is compared with the one it replaced (5xx rate,
//!    p99) for a window.
//! 4. **Confirm**: the old releases drain.
//!
//! Any failure before confirm aborts: every node goes back to its previous release, which is
//! still running. Each node also reverts by itself when no confirmation comes in time, so a
//! coordinator that dies never leaves the fleet mixed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use silver_types::{AppName, IdPrefix};
use silver_wire::api::*;

use crate::deploy::{DeployOptions, Node};
use crate::error::Error;

/// An inventory file: environments, their hosts, where tokens come from, and the rollout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub environments: std::collections::BTreeMap<String, Environment>,
}

/// An environment: its hosts, where their token comes from, and how a deploy rolls out over
/// them. The rollout's keys sit in the environment's own table, each where its line is named
/// when it is wrong.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub hosts: Vec<Host>,
    /// A file holding the agents' token (mode 0600), for hosts that name none.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the agents' token, for hosts that name none.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Hosts flipped at once: `N` or `"N%"` (default `"100%"`: every router in one window).
    #[serde(default = "all", deserialize_with = "number_or_text")]
    pub batch: String,
    /// Seconds between batches.
    #[serde(default)]
    pub wait: u64,
    /// Seconds the new release is watched after the last flip before it is confirmed.
    #[serde(default = "sixty")]
    pub observe: u64,
    /// Seconds a committed node waits for its confirmation before it reverts by itself.
    #[serde(default)]
    pub confirm_within: Option<u64>,
    /// Abort when the new release's 5xx share is this much above the old one's (0.01: one
    /// percentage point).
    #[serde(default = "one_percent")]
    pub max_5xx_increase: f64,
    /// Abort when the new release's p99 is over this many times the old one's.
    #[serde(default = "two")]
    pub max_p99_factor: f64,
    /// Requests a node's new release must have answered before its numbers count.
    #[serde(default = "twenty")]
    pub min_requests: u64,
    /// `once`: `update_fetch` runs on the first host only (the hosts share their database);
    /// `each`: on every host (each has its own).
    #[serde(default)]
    pub migrate: Migrate,
}

impl Environment {
    pub fn rollout(&self) -> Rollout {
        Rollout {
            batch: self.batch.clone(),
            wait: self.wait,
            observe: self.observe,
            confirm_within: self.confirm_within,
            max_5xx_increase: self.max_5xx_increase,
            max_p99_factor: self.max_p99_factor,
            min_requests: self.min_requests,
            migrate: self.migrate,
        }
    }
}

/// A host: its agent's URL, or a table with the URL and its own token file.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Host {
    Url(String),
    Table {
        url: String,
        #[serde(default)]
        token_file: Option<PathBuf>,
    },
}

impl Host {
    pub fn url(&self) -> &str {
        match self {
            Host::Url(url) | Host::Table { url, .. } => url,
        }
    }

    pub fn token_file(&self) -> Option<&Path> {
        match self {
            Host::Url(_) => None,
            Host::Table { token_file, .. } => token_file.as_deref(),
        }
    }
}

/// How a deploy rolls out over the hosts (the environment's keys of the same names).
#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    /// Hosts flipped at once: `N` or `"N%"` (default `"100%"`: every router in one window).
    pub batch: String,
    /// Seconds between batches.
    pub wait: u64,
    /// Seconds the new release is watched after the last flip before it is confirmed.
    pub observe: u64,
    /// Seconds a committed node waits for its confirmation before it reverts by itself.
    pub confirm_within: Option<u64>,
    /// Abort when the new release's 5xx share is this much above the old one's (0.01: one
    /// percentage point).
    pub max_5xx_increase: f64,
    /// Abort when the new release's p99 is over this many times the old one's.
    pub max_p99_factor: f64,
    /// Requests a node's new release must have answered before its numbers count.
    pub min_requests: u64,
    /// Where `update_fetch` runs (see [`Migrate`]).
    pub migrate: Migrate,
}

/// Where a fleet deploy runs `update_fetch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Migrate {
    /// On every host, each with its checkpoint: the services silver provisions are each
    /// node's own (a database is named for its node, even on a shared PostgreSQL server).
    #[default]
    Each,
    /// On the first host only, before the others prepare: the hosts share the database the
    /// migrations change (one the app reaches through its config, outside silver's services).
    Once,
}

/// `batch = 2` and `batch = "2"` both mean two hosts.
fn number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::Number(n) => n.to_string(),
        Either::Text(t) => t,
    })
}

fn all() -> String {
    "100%".into()
}
fn sixty() -> u64 {
    60
}
fn one_percent() -> f64 {
    0.01
}
fn two() -> f64 {
    2.0
}
fn twenty() -> u64 {
    20
}

impl Inventory {
    pub fn parse(text: &str, path: &Path) -> Result<Inventory, Error> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map_or(0, |s| text[..s.start].matches('\n').count() + 1);
            Error::Inventory {
                path: path.to_path_buf(),
                line,
                why: e.message().to_string(),
            }
        })
    }

    pub fn environment(&self, name: &str, path: &Path) -> Result<&Environment, Error> {
        self.environments
            .get(name)
            .ok_or_else(|| Error::NoEnvironment {
                path: path.to_path_buf(),
                environment: name.to_string(),
                known: self
                    .environments
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl Rollout {
    /// The batch size for `hosts` hosts.
    pub fn batch_size(&self, hosts: usize) -> Result<usize, Error> {
        let bad = || Error::Rollout {
            why: format!("batch = \"{}\" is not N or N%", self.batch),
        };
        let size = match self.batch.strip_suffix('%') {
            Some(percent) => {
                let p: usize = percent.trim().parse().map_err(|_| bad())?;
                (hosts * p).div_ceil(100)
            }
            None => self.batch.trim().parse().map_err(|_| bad())?,
        };
        Ok(size.clamp(1, hosts.max(1)))
    }

    pub fn confirm_within(&self) -> u64 {
        self.confirm_within.unwrap_or(self.observe + 60)
    }
}

/// Where the nodes get the artifact.
#[derive(Debug, Clone)]
pub enum Artifact {
    /// Uploaded from this machine to each node.
    Archive(PathBuf),
    /// Pulled by each node: `REGISTRY/REPO@DIGEST`.
    Registry(String),
}

/// A fleet deploy to run.
pub struct FleetPlan {
    pub deploy: String,
    pub artifact: Artifact,
    pub id: Option<IdPrefix>,
    pub options: DeployOptions,
    pub rollout: Rollout,
}

/// One host's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    pub phase: Option<FleetPhase>,
    pub committed_ms: Option<u64>,
    pub error: Option<String>,
}

/// What `silver fleet deploy --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub deploy: String,
    pub app: AppName,
    pub id: Option<String>,
    /// `confirmed`, or `aborted` with the reason.
    pub outcome: String,
    pub reason: Option<String>,
    /// Milliseconds between the first flip and the last.
    pub skew_ms: Option<u64>,
    pub hosts: Vec<HostReport>,
    pub phases_ms: FleetPhases,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetPhases {
    pub prepare: u128,
    pub commit: u128,
    pub observe: u128,
    pub confirm: u128,
}

/// What the coordinator tells the user as it goes: a host and what happened there.
pub type OnEvent = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Runs a fleet deploy over `nodes` (in inventory order). Returns the report whether it was
/// confirmed or aborted; an error only when the fleet may be left in an unknown state.
pub async fn fleet_deploy(nodes: &[Node], plan: &FleetPlan, on_event: OnEvent) -> FleetReport {
    let mut report = FleetReport {
        deploy: plan.deploy.clone(),
        app: plan.options.app.clone(),
        id: None,
        outcome: "aborted".into(),
        reason: None,
        skew_ms: None,
        hosts: nodes
            .iter()
            .map(|n| HostReport {
                host: n.url().to_string(),
                phase: None,
                committed_ms: None,
                error: None,
            })
            .collect(),
        phases_ms: FleetPhases::default(),
    };
    let t = std::time::Instant::now();
    let prepared = prepare_all(nodes, plan, &mut report, &on_event).await;
    report.phases_ms.prepare = t.elapsed().as_millis();
    if let Err(reason) = prepared {
        return abort_all(nodes, plan, report, reason, &on_event).await;
    }
    run_from_commit(nodes, plan, report, on_event).await
}

/// Commit, observe and confirm: the rest of a deploy, also what `resume` runs when every node
/// is prepared (or some already committed).
pub async fn run_from_commit(
    nodes: &[Node],
    plan: &FleetPlan,
    mut report: FleetReport,
    on_event: OnEvent,
) -> FleetReport {
    let t = std::time::Instant::now();
    let committed = commit_all(nodes, plan, &mut report, &on_event).await;
    report.phases_ms.commit = t.elapsed().as_millis();
    report.skew_ms = skew(&report.hosts);
    if let Err(reason) = committed {
        return abort_all(nodes, plan, report, reason, &on_event).await;
    }
    let t = std::time::Instant::now();
    let observed = observe(nodes, plan, &on_event).await;
    report.phases_ms.observe = t.elapsed().as_millis();
    if let Err(reason) = observed {
        return abort_all(nodes, plan, report, reason, &on_event).await;
    }
    let t = std::time::Instant::now();
    confirm_all(nodes, plan, &mut report, &on_event).await;
    report.phases_ms.confirm = t.elapsed().as_millis();
    report
}

async fn prepare_all(
    nodes: &[Node],
    plan: &FleetPlan,
    report: &mut FleetReport,
    on_event: &OnEvent,
) -> Result<(), String> {
    // Migrations that run once go first, alone: the others start on the migrated schema.
    let first = match plan.rollout.migrate {
        Migrate::Once => 1.min(nodes.len()),
        Migrate::Each => 0,
    };
    let (head, rest) = nodes.split_at(first);
    let mut results = Vec::new();
    for node in head {
        results.push(prepare_one(node, plan, true, on_event).await);
    }
    let migrate_rest = plan.rollout.migrate == Migrate::Each;
    results.extend(
        join_all(
            rest.iter()
                .map(|n| prepare_one(n, plan, migrate_rest, on_event)),
        )
        .await,
    );
    let mut failure = None;
    for (host, result) in report.hosts.iter_mut().zip(results) {
        match result {
            Ok(status) => {
                host.phase = Some(status.phase);
                report.id.get_or_insert(status.id.to_string());
            }
            Err(e) => {
                let message = crate::error::chain(&e);
                failure.get_or_insert(format!("{} failed to prepare: {message}", host.host));
                host.error = Some(message);
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

async fn prepare_one(
    node: &Node,
    plan: &FleetPlan,
    migrate: bool,
    on_event: &OnEvent,
) -> Result<FleetStatus, Error> {
    let mut records = plan.options.records.clone();
    let id: IdPrefix = match (&plan.artifact, &plan.id) {
        (Artifact::Archive(path), _) => {
            let progress = Arc::new(packer::NoProgress);
            let sent = crate::deploy::send_artifact(node, path, &plan.options, progress).await?;
            on_event(
                node.url(),
                &format!("sent {} ({} bytes)", sent.manifest.id, sent.bytes_sent),
            );
            sent.manifest.id.into()
        }
        (Artifact::Registry(reference), _) => {
            let pulled = node.pull(reference).await?;
            on_event(
                node.url(),
                &format!("pulled {} ({} bytes)", pulled.id, pulled.bytes_fetched),
            );
            records.extend(pulled.records);
            pulled.id.into()
        }
    };
    let request = FleetPrepare {
        deploy: plan.deploy.clone(),
        id,
        who: plan.options.who.clone(),
        locations: plan.options.locations.clone(),
        records,
        migrate,
        confirm_within_secs: plan.rollout.confirm_within(),
    };
    let status: FleetStatus = node
        .post(
            &format!("/v1/apps/{}/fleet/prepare", plan.options.app),
            &request,
        )
        .await?;
    on_event(
        node.url(),
        "prepared: started and healthy beside the live release, no traffic",
    );
    Ok(status)
}

async fn commit_all(
    nodes: &[Node],
    plan: &FleetPlan,
    report: &mut FleetReport,
    on_event: &OnEvent,
) -> Result<(), String> {
    let size = plan
        .rollout
        .batch_size(nodes.len())
        .map_err(|e| e.to_string())?;
    let indexed: Vec<usize> = (0..nodes.len()).collect();
    for (i, batch) in indexed.chunks(size).enumerate() {
        if i > 0 && plan.rollout.wait > 0 {
            tokio::time::sleep(Duration::from_secs(plan.rollout.wait)).await;
        }
        let results = join_all(batch.iter().map(|&i| step(&nodes[i], plan, "commit", None))).await;
        let mut failure = None;
        for (&i, result) in batch.iter().zip(results) {
            let host = &mut report.hosts[i];
            match result {
                Ok(status) => {
                    host.phase = Some(status.phase);
                    host.committed_ms = status.committed_ms;
                    on_event(&host.host, "committed: the router serves the new release");
                }
                Err(e) => {
                    let message = crate::error::chain(&e);
                    failure.get_or_insert(format!("{} failed to commit: {message}", host.host));
                    host.error = Some(message);
                }
            }
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
    }
    Ok(())
}

/// Watches every node for the observe window: a node that reverted or stopped answering, or
/// whose new release answers worse than the old one did, fails the deploy.
async fn observe(nodes: &[Node], plan: &FleetPlan, on_event: &OnEvent) -> Result<(), String> {
    let until = std::time::Instant::now() + Duration::from_secs(plan.rollout.observe);
    loop {
        let statuses = join_all(nodes.iter().map(|n| n.fleet_status(&plan.options.app))).await;
        for (node, status) in nodes.iter().zip(statuses) {
            let status = status.map_err(|e| {
                format!(
                    "{} stopped answering: {}",
                    node.url(),
                    crate::error::chain(&e)
                )
            })?;
            verdict(&status, &plan.rollout).map_err(|why| format!("{}: {why}", node.url()))?;
        }
        if std::time::Instant::now() >= until {
            on_event(
                "fleet",
                "observed: every node's new release answers as well as the old one did",
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1).min(until - std::time::Instant::now())).await;
    }
}

/// Whether one node's new release answers as well as the one it replaced.
pub fn verdict(status: &FleetStatus, rollout: &Rollout) -> Result<(), String> {
    if status.phase != FleetPhase::Committed {
        return Err(format!(
            "it is {:?}, not committed{}",
            status.phase,
            status
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    let (Some(new), old) = (status.new, status.old.unwrap_or_default()) else {
        return Ok(());
    };
    if new.requests < rollout.min_requests {
        return Ok(());
    }
    let rate = |s: ReleaseStats| match s.requests {
        0 => 0.0,
        n => s.server_errors as f64 / n as f64,
    };
    let (new_rate, old_rate) = (rate(new), rate(old));
    if new_rate > old_rate + rollout.max_5xx_increase {
        return Err(format!(
            "its new release answered {:.1}% of {} requests with 5xx, against {:.1}% for the old one",
            new_rate * 100.0,
            new.requests,
            old_rate * 100.0
        ));
    }
    if let (Some(new_p99), Some(old_p99)) = (new.p99_ms, old.p99_ms) {
        if old.requests >= rollout.min_requests
            && new_p99 as f64 > old_p99 as f64 * rollout.max_p99_factor
            && new_p99 > 50
        {
            return Err(format!(
                "its new release's p99 is {new_p99} ms, against {old_p99} ms for the old one"
            ));
        }
    }
    Ok(())
}

async fn confirm_all(
    nodes: &[Node],
    plan: &FleetPlan,
    report: &mut FleetReport,
    on_event: &OnEvent,
) {
    let results = join_all(nodes.iter().map(|n| confirm_retrying(n, plan))).await;
    let mut failed = Vec::new();
    for (host, result) in report.hosts.iter_mut().zip(results) {
        match result {
            Ok(status) => {
                host.phase = Some(status.phase);
                on_event(&host.host, "confirmed: the old release drains");
            }
            Err(e) => {
                host.error = Some(crate::error::chain(&e));
                failed.push(host.host.clone());
            }
        }
    }
    if failed.is_empty() {
        report.outcome = "confirmed".into();
    } else {
        // They revert by themselves at their deadline: the fleet is mixed until an operator
        // looks. Said loudly; never hidden.
        report.outcome = "mixed".into();
        report.reason = Some(format!(
            "{} did not take the confirmation and will revert by themselves: run `silver fleet status`",
            failed.join(", ")
        ));
    }
}

/// A confirmation lost to a network blip must not become a revert: it is sent again until the
/// node's own deadline.
async fn confirm_retrying(node: &Node, plan: &FleetPlan) -> Result<FleetStatus, Error> {
    let until = std::time::Instant::now()
        + Duration::from_secs(
            plan.rollout
                .confirm_within()
                .saturating_sub(plan.rollout.observe)
                .max(5),
        );
    loop {
        match step(node, plan, "confirm", None).await {
            Ok(status) => return Ok(status),
            Err(Error::Connect { .. } | Error::Api { status: 500.., .. })
                if std::time::Instant::now() < until =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            Err(e) => return Err(e),
        }
    }
}

async fn abort_all(
    nodes: &[Node],
    plan: &FleetPlan,
    mut report: FleetReport,
    reason: String,
    on_event: &OnEvent,
) -> FleetReport {
    on_event("fleet", &format!("aborting: {reason}"));
    let results = join_all(nodes.iter().map(|n| step(n, plan, "abort", Some(&reason)))).await;
    for (host, result) in report.hosts.iter_mut().zip(results) {
        match result {
            Ok(status) => {
                host.phase = Some(status.phase);
                on_event(&host.host, "aborted: the previous release serves");
            }
            // Never prepared (or already reverted by itself): nothing to undo there.
            Err(Error::Api { status: 404, .. }) => {}
            Err(e) => {
                let message = crate::error::chain(&e);
                on_event(
                    &host.host,
                    &format!("cannot abort: {message}; it reverts by itself at its deadline"),
                );
                host.error.get_or_insert(message);
            }
        }
    }
    report.outcome = "aborted".into();
    report.reason = Some(reason);
    report
}

async fn step(
    node: &Node,
    plan: &FleetPlan,
    what: &str,
    reason: Option<&str>,
) -> Result<FleetStatus, Error> {
    let request = FleetStep {
        deploy: plan.deploy.clone(),
        who: plan.options.who.clone(),
        reason: reason.map(String::from),
    };
    node.post(
        &format!("/v1/apps/{}/fleet/{what}", plan.options.app),
        &request,
    )
    .await
}

fn skew(hosts: &[HostReport]) -> Option<u64> {
    let flips: Vec<u64> = hosts.iter().filter_map(|h| h.committed_ms).collect();
    Some(flips.iter().max()? - flips.iter().min()?)
}

/// A fresh fleet deploy id: time-ordered and unique enough to name in a lock.
pub fn new_deploy_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("fd-{}-{:04x}", now.as_secs(), now.subsec_nanos() & 0xffff)
}

/// Every node's last fleet deploy of `app`, in order.
pub async fn statuses(nodes: &[Node], app: &AppName) -> Vec<Result<FleetStatus, Error>> {
    join_all(nodes.iter().map(|n| n.fleet_status(app))).await
}

/// Aborts `deploy` of `app` on every node, in order.
pub async fn abort_everywhere(
    nodes: &[Node],
    app: &AppName,
    deploy: &str,
    who: &str,
    reason: &str,
) -> Vec<Result<FleetStatus, Error>> {
    join_all(
        nodes
            .iter()
            .map(|n| n.fleet_abort(app, deploy, who, reason)),
    )
    .await
}

impl Node {
    /// The app's last fleet deploy on this node.
    pub async fn fleet_status(&self, app: &AppName) -> Result<FleetStatus, Error> {
        let req = self.authed(
            self.http
                .get(self.endpoint(&format!("/v1/apps/{app}/fleet"))),
        );
        self.call(req).await
    }

    /// Aborts the app's fleet deploy `deploy` on this node.
    pub async fn fleet_abort(
        &self,
        app: &AppName,
        deploy: &str,
        who: &str,
        reason: &str,
    ) -> Result<FleetStatus, Error> {
        let request = FleetStep {
            deploy: deploy.into(),
            who: who.into(),
            reason: Some(reason.into()),
        };
        self.post(&format!("/v1/apps/{app}/fleet/abort"), &request)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout() -> Rollout {
        Inventory::parse("[environments.p]\nhosts = [\"http://a\"]\n", Path::new("f"))
            .unwrap()
            .environments["p"]
            .rollout()
    }

    #[test]
    fn batches() {
        let check = |batch: &str, hosts: usize, expected: Result<usize, ()>| {
            let r = Rollout {
                batch: batch.into(),
                ..rollout()
            };
            assert_eq!(
                r.batch_size(hosts).map_err(|_| ()),
                expected,
                "{batch} of {hosts}"
            );
        };
        check("100%", 20, Ok(20));
        check("25%", 10, Ok(3));
        check("1", 20, Ok(1));
        check("50", 3, Ok(3));
        check("0%", 4, Ok(1));
        check("x", 4, Err(()));
    }

    #[test]
    fn inventories_are_refused_naming_the_line() {
        let parse = |text: &str| Inventory::parse(text, Path::new("fleet.toml"));
        let e = parse("[environments.p]\nhosts = [\"http://a\"]\nbatchh = 2\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("fleet.toml line 3") && e.contains("batchh"),
            "{e}"
        );
        let e = parse("[environments.p]\nhosts = [\"http://a\"]\nobserve = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fleet.toml line 3"), "{e}");
        let ok = parse("[environments.p]\nhosts = [\"http://a\"]\nbatch = 2\n").unwrap();
        assert_eq!(ok.environments["p"].rollout().batch, "2");
    }

    #[test]
    fn verdicts_compare_the_new_release_with_the_old() {
        let status = |new: (u64, u64, u64), old: (u64, u64, u64)| FleetStatus {
            app: AppName::parse("a").unwrap(),
            deploy: "d".into(),
            phase: FleetPhase::Committed,
            id: silver_types::ArtifactId::parse(&format!("b3:{}", "a".repeat(64))).unwrap(),
            previous: None,
            previous_locations: vec![],
            who: "w".into(),
            committed_ms: None,
            deadline: None,
            reason: None,
            update_output: vec![],
            new: Some(ReleaseStats {
                requests: new.0,
                server_errors: new.1,
                p99_ms: Some(new.2),
            }),
            old: Some(ReleaseStats {
                requests: old.0,
                server_errors: old.1,
                p99_ms: Some(old.2),
            }),
        };
        let r = rollout();
        assert!(verdict(&status((100, 0, 20), (1000, 0, 20)), &r).is_ok());
        assert!(
            verdict(&status((10, 10, 20), (1000, 0, 20)), &r).is_ok(),
            "too few requests to judge"
        );
        let e = verdict(&status((100, 5, 20), (1000, 0, 20)), &r).unwrap_err();
        assert!(e.contains("5.0% of 100 requests with 5xx"), "{e}");
        let e = verdict(&status((100, 0, 500), (1000, 0, 100)), &r).unwrap_err();
        assert!(e.contains("p99 is 500 ms"), "{e}");
        let mut reverted = status((0, 0, 0), (0, 0, 0));
        reverted.phase = FleetPhase::Aborted;
        assert!(verdict(&reverted, &r).unwrap_err().contains("Aborted"));
    }
}
