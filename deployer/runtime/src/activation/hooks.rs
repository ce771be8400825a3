//! The hooks a candidate runs before the switch: Silver Lining's `config.checker`, and
//! `update_fetch` (each URL requested as the router would, each `script:` run as the app).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use silver_types::appconfig::UpdateFetch;

use super::candidate::Candidate;
use super::probe::{fetch, Probe};
use crate::error::{Cause, Failure, Step};
use crate::logs::LogSink;
use crate::supervise::Spec;

/// Silver Lining's `config.checker = module:function`, called with the configuration
/// directory; only when the candidate runs its update (not when an agent restarts it).
pub async fn config_checker(
    c: &Candidate,
    env: &BTreeMap<String, String>,
    log: &LogSink,
) -> Result<(), Failure> {
    let (true, Some(checker)) = (c.update_fetch, c.config.config_value("checker")) else {
        return Ok(());
    };
    let command = format!(
        "python3 -c 'import importlib, os, sys; m, _, f = sys.argv[1].partition(\":\"); getattr(importlib.import_module(m), f)(os.environ.get(\"SILVER_APP_CONFIG\"))' {}",
        crate::environment::shell_quote(checker)
    );
    let step = Step::ConfigChecker(checker.to_string());
    script(c, step.clone(), &command, env, log.clone())
        .await
        .map(|_| ())
        .map_err(|reason| {
            Failure::new(
                step,
                Cause::App(format!("it refused the configuration: {reason}")),
            )
        })
}

/// Runs the candidate's `update_fetch` steps in order: each URL as an internal request to its
/// web process (`addr`), each script as the app. Returns their output, each line
/// `<step> | <line>`, which also goes to whoever watches as it comes.
pub async fn update_fetch(
    c: &Candidate,
    addr: Option<SocketAddr>,
    env: &BTreeMap<String, String>,
    client: &reqwest::Client,
    log: &LogSink,
) -> Result<Vec<String>, Failure> {
    let mut output = Vec::new();
    if !c.update_fetch {
        return Ok(output);
    }
    for step in &c.config.update_fetch {
        let outcome = match step {
            UpdateFetch::Url(path) => match addr {
                Some(addr) => {
                    let probe = Probe {
                        path,
                        below: 400,
                        update: true,
                    };
                    fetch(client, c, addr, &probe, Duration::from_secs(300))
                        .await
                        .map(|body| body.lines().map(String::from).collect())
                }
                None => Err("there is no web process to request it from".into()),
            },
            UpdateFetch::Script(command) => {
                let step = Step::UpdateFetch(step.clone());
                script(c, step, command, env, log.clone()).await
            }
        };
        let is_url = matches!(step, UpdateFetch::Url(_));
        let step = Step::UpdateFetch(step.clone());
        let lines: Vec<String> = outcome
            .map_err(|reason| Failure::new(step.clone(), Cause::App(reason)))?
            .into_iter()
            .map(|l| format!("{step} | {l}"))
            .collect();
        if is_url {
            // A URL's answer arrives whole; a script's lines went out as they came.
            lines.iter().for_each(|l| c.report(l));
        }
        output.extend(lines);
    }
    Ok(output)
}

/// Runs one `script:` line in the release, as the app, logging to the `update` log.
pub async fn script(
    c: &Candidate,
    step: Step,
    script: &str,
    env: &BTreeMap<String, String>,
    log: LogSink,
) -> Result<Vec<String>, String> {
    let mut cmd = crate::supervise::command(&Spec {
        name: "update".into(),
        release: c.label.clone(),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: env.clone(),
        cwd: c.dir.clone(),
        user: c.user.clone(),
        log: log.clone(),
        stop_signal: nix::sys::signal::Signal::SIGTERM,
    });
    let run = async {
        let mut child = cmd.spawn().map_err(|e| format!("could not start: {e}"))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        forward_lines(child.stdout.take(), tx.clone());
        forward_lines(child.stderr.take(), tx);
        // Each line is logged as it comes, with its own time, and kept for the deployer.
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            log.line(&c.label, &line);
            c.report(&format!("{step} | {line}"));
            if lines.len() < MAX_UPDATE_LINES {
                lines.push(line);
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| format!("could not wait for it: {e}"))?;
        if status.success() {
            return Ok(lines);
        }
        // A deployer that watched saw every line as it came: said once, not again here.
        if c.progress.is_some() {
            return Err(describe_status(status));
        }
        let tail = &lines[lines.len().saturating_sub(20)..];
        Err(format!("{}\n{}", describe_status(status), tail.join("\n")))
    };
    tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .unwrap_or_else(|_| Err("did not finish within 600 s".into()))
}

/// The most lines of `update_fetch` output handed back to the deployer (the log keeps all).
const MAX_UPDATE_LINES: usize = 2000;

/// Sends each line `pipe` yields to `tx`, as it comes.
fn forward_lines<R>(pipe: Option<R>, tx: tokio::sync::mpsc::UnboundedSender<String>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    use tokio::io::AsyncBufReadExt;
    let Some(pipe) = pipe else { return };
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".into(),
    }
}
