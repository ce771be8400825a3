//! `silver serve`: an app directory served locally through the same router, environment and
//! static rules as on a node, and reloaded (health-gated, like a deploy) when its files change.
//!
//! Nothing is packed and nothing is written into the app directory: the app's data, logs and
//! caches go to a state directory outside it.

use silver_types::AppName;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use silver_types::appconfig::Location;

use crate::error::Error;
use crate::live::{release_config, Candidate, Runtime, RuntimeConfig};
use crate::router::Routes;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub app_dir: PathBuf,
    pub app: AppName,
    pub listen: SocketAddr,
    /// Where the app's data/, logs/, run/ and cache/ go.
    pub state_dir: PathBuf,
    pub runtime: RuntimeConfig,
}

/// What the dev server tells its user.
pub enum Event {
    Listening(SocketAddr, String),
    Reloading(Vec<PathBuf>),
    Serving(String),
    Failed(Error),
}

/// Serves until SIGINT or SIGTERM; a release that fails to start leaves the last good one up.
pub async fn serve(config: ServeConfig, events: impl Fn(Event) + Send + Sync) -> Result<(), Error> {
    let runtime = Runtime::new(config.runtime.clone(), Routes::default());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io(&config.app_dir, e))?;
    let front = crate::router::front(runtime.routes().clone(), None);
    let server = tokio::spawn(crate::front_door::serve(
        listener,
        front,
        config.runtime.front.clone(),
        std::future::pending(),
    ));
    let (watcher, mut changes) = watch(&config.app_dir)?;

    let mut generation = 1u32;
    let first = start(&runtime, &config, generation).await;
    let path = first.as_ref().ok().cloned().unwrap_or_default();
    events(Event::Listening(addr, path));
    match first {
        Ok(label) => events(Event::Serving(label)),
        Err(e) => events(Event::Failed(e)),
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io(&config.app_dir, e))?;
    // A change that arrived while a reload was starting: it starts the next reload at once.
    let mut carried: Option<PathBuf> = None;
    loop {
        let first_change = match carried.take() {
            Some(path) => Some(path),
            None => tokio::select! {
                change = next_change(&mut changes, &config.app_dir) => change,
                _ = tokio::signal::ctrl_c() => None,
                _ = term.recv() => None,
            },
        };
        let Some(first_change) = first_change else {
            break;
        };
        // Editors write in bursts: gather what changes within a moment into one reload.
        let mut changed = vec![first_change];
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok(more) = changes.try_recv() {
            changed.push(more);
        }
        changed.retain(|p| !ignored(&config.app_dir, p));
        changed.sort();
        changed.dedup();
        events(Event::Reloading(changed));
        generation += 1;
        // A newer edit makes this start moot: drop it (its processes stop) and start the newer.
        tokio::select! {
            outcome = start(&runtime, &config, generation) => match outcome {
                Ok(label) => events(Event::Serving(label)),
                Err(e) => events(Event::Failed(e)),
            },
            change = next_change(&mut changes, &config.app_dir) => carried = change,
        }
    }
    drop(watcher);
    server.abort();
    runtime.shutdown().await;
    Ok(())
}

/// Watches the app directory; each path whose content changes arrives on the channel.
fn watch(
    app_dir: &Path,
) -> Result<
    (
        notify::RecommendedWatcher,
        tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
    ),
    Error,
> {
    let (tx, changes) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        use notify::event::{EventKind, ModifyKind};
        // Only what changes content: opening and reading files (ours, the app's) are events too,
        // and reloading on them would never end.
        let Ok(event) = res else { return };
        let content = matches!(
            event.kind,
            EventKind::Create(_)
                | EventKind::Remove(_)
                | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
        );
        if content {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })
    .map_err(|source| Error::Watch {
        path: app_dir.to_path_buf(),
        source,
    })?;
    notify::Watcher::watch(&mut watcher, app_dir, notify::RecursiveMode::Recursive).map_err(
        |source| Error::Watch {
            path: app_dir.to_path_buf(),
            source,
        },
    )?;

    Ok((watcher, changes))
}

/// The next change worth a reload (the app's own bytecode and editors' files are not).
async fn next_change(
    changes: &mut tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
    app_dir: &Path,
) -> Option<PathBuf> {
    loop {
        let path = changes.recv().await?;
        if !ignored(app_dir, &path) {
            return Some(path);
        }
    }
}

/// Starts the app as it is on disk now, as release `dev<N>`; returns the path it answers at.
async fn start(runtime: &Runtime, config: &ServeConfig, generation: u32) -> Result<String, Error> {
    let dir = config.app_dir.clone();
    let app_config = tokio::task::spawn_blocking(move || release_config(&dir))
        .await
        .map_err(|source| Error::Worker {
            doing: "reading app.ini",
            source,
        })??;
    // Any host, at the path the app would have on a node.
    let path = app_config
        .default_location
        .as_ref()
        .map_or_else(|| "/".to_string(), |l| l.path.clone());
    let candidate = Candidate {
        app: config.app.clone(),
        release: "dev".into(),
        label: format!("dev{generation}"),
        dir: config.app_dir.clone(),
        paths: crate::AppPaths::new(config.state_dir.clone()),
        config: app_config,
        locations: vec![Location {
            host: "*".into(),
            path: path.clone(),
        }],
        update_fetch: false,
        services: vec![],
        user: None,
        progress: None,
        settings: Default::default(),
        app_config: None,
        single_process: false,
    };
    runtime.activate(candidate, || Ok::<(), Error>(())).await?;
    Ok(path)
}

/// Changes that do not warrant a reload: VCS metadata, bytecode, editor droppings, artifacts.
fn ignored(app_dir: &Path, path: &Path) -> bool {
    let rel = path.strip_prefix(app_dir).unwrap_or(path);
    // The directory itself: its own metadata changed, which says nothing about the code.
    if rel.as_os_str().is_empty() {
        return true;
    }
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    rel.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        c.starts_with('.') || c == "__pycache__" || c == "node_modules"
    }) || [".pyc", ".pyo", ".swp", ".swx", "~", ".silver", ".tmp"]
        .iter()
        .any(|s| name.ends_with(s))
        || name.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_does_not_reload() {
        let app = Path::new("/src/app");
        let check =
            |p: &str, expected: bool| assert_eq!(ignored(app, &app.join(p)), expected, "{p}");
        check("app.py", false);
        check("static/css/site.css", false);
        check("app.ini", false);
        check(".git/index", true);
        check("lib/__pycache__/x.cpython-311.pyc", true);
        check("app.py~", true);
        check(".app.py.swp", true);
        check("hello-abc.silver", true);
    }
}
