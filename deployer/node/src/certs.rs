//! The front door's certificates at run time: loaded from the store at start, added by the
//! operator, and ordered and renewed from ACME for every host the node's locations name.
//!
//! ACME runs in one task. It wakes when the routing table changes (a deploy adds a host), when
//! a certificate is due (two thirds into its life) and when a failed host's backoff ends. A
//! failure keeps the old certificate serving, doubles the backoff (up to a day) and tries the
//! other challenge next time, as Caddy learns which one a network lets through.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use silver_acme::{AcmeConfig, Answer, Cert, CertHost, Challenge};
use silver_runtime::router::Routes;
use silver_runtime::tls::Certs;
use silver_types::Hint;
use silver_wire::api::{CertView, CertsView};

use crate::store::certs::{self as stored, AcmeState, Source};
use crate::store::Layout;

/// ACME as the agent runs it.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub config: AcmeConfig,
    /// The challenge a new host is tried with first.
    pub first: Challenge,
    /// The first wait after a failure; each further failure doubles it, up to [`MAX_BACKOFF`].
    pub retry_base: Duration,
}

/// The longest one order may take, from the account to the chain.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest wait between attempts for one host (Caddy's too).
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);

/// Certificates on disk and in the front door, and ACME's per-host state.
pub struct Certificates {
    pub live: Arc<Certs>,
    layout: Layout,
    acme: Option<AcmeSettings>,
    https: Option<SocketAddr>,
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
}

struct Inner {
    stored: BTreeMap<(CertHost, Source), Cert>,
    state: BTreeMap<CertHost, AcmeState>,
}

impl Inner {
    /// Whether the operator or the fleet gave `host` a certificate: the node orders none then.
    fn given(&self, host: &CertHost) -> bool {
        [Source::Operator, Source::Fleet]
            .iter()
            .any(|s| self.stored.contains_key(&(host.clone(), *s)))
    }
}

impl Certificates {
    /// Loads what the store holds and serves it at once: a restart keeps every certificate.
    pub fn load(
        layout: Layout,
        acme: Option<AcmeSettings>,
        https: Option<SocketAddr>,
    ) -> Certificates {
        let stored = stored::load_all(&layout);
        let state = stored::load_state(&layout);
        let certs = Certificates {
            live: Arc::default(),
            layout,
            acme,
            https,
            inner: Mutex::new(Inner { stored, state }),
            wake: tokio::sync::Notify::new(),
        };
        let hosts: Vec<CertHost> = certs.lock().stored.keys().map(|(h, _)| h.clone()).collect();
        for host in hosts {
            certs.serve_best(&host);
        }
        certs
    }

    /// Adds a certificate for `host`: the operator's (a wildcard, an internal CA's) or the
    /// fleet's; either wins over the node's own ACME certificate from the next handshake on.
    pub fn add(&self, host: &CertHost, source: Source, cert: Cert) -> Result<(), crate::Error> {
        stored::save(&self.layout, host, source, &cert)
            .map_err(|e| crate::Error::io(&self.layout.tls(), e))?;
        self.lock().stored.insert((host.clone(), source), cert);
        self.serve_best(host);
        Ok(())
    }

    /// Removes the certificate served for `host` (the operator's, else the fleet's, else
    /// ACME's); false if there was none. ACME orders a new one if a location still names it.
    pub fn remove(&self, host: &CertHost) -> Result<bool, crate::Error> {
        let source = Source::BY_PREFERENCE
            .into_iter()
            .find(|s| self.lock().stored.contains_key(&(host.clone(), *s)));
        let Some(source) = source else {
            return Ok(false);
        };
        stored::remove(&self.layout, host, source)
            .map_err(|e| crate::Error::io(&self.layout.tls(), e))?;
        self.lock().stored.remove(&(host.clone(), source));
        self.serve_best(host);
        self.wake.notify_one();
        Ok(true)
    }

    /// What `silver certs` shows: every host the locations name, and every stored certificate.
    pub fn view(&self, routes: &Routes) -> CertsView {
        let wanted = routes.hosts();
        let inner = self.lock();
        let mut hosts: BTreeMap<String, CertView> = BTreeMap::new();
        for (name, apps) in &wanted {
            let mut view = empty_view(name);
            view.apps = apps.iter().map(|a| a.to_string()).collect();
            if let Some(why) = CertHost::parse(name).err().map(|e| e.to_string()) {
                view.error = Some(why);
            }
            hosts.insert(name.clone(), view);
        }
        // Reversed: the most preferred source of a host comes first.
        for ((host, source), cert) in inner.stored.iter().rev() {
            let view = hosts
                .entry(host.to_string())
                .or_insert_with(|| empty_view(host.as_str()));
            if view.source.is_some() {
                continue; // the operator's, seen first, is the one served
            }
            view.source = Some(source.as_str().into());
            view.names = cert.names.clone();
            view.not_after_unix = Some(cert.not_after_unix());
            view.renew_at_unix = (*source != Source::Operator).then(|| unix(cert.renew_at()));
        }
        for (host, view) in hosts.iter_mut() {
            let Ok(host) = CertHost::parse(host) else {
                continue;
            };
            if let Some(state) = inner.state.get(&host) {
                view.challenge = state.challenge.map(|c| c.to_string());
                view.failures = state.failures;
                view.error = state.error.clone();
                view.hint = state.hint.clone();
                view.next_attempt_unix = state.next_attempt_unix;
            }
            if view.source.is_none() && view.error.is_none() && self.https.is_none() {
                view.error = Some("this node serves no HTTPS".into());
                view.hint =
                    Some("start the agent with --https ADDR (a node uses 0.0.0.0:443)".into());
            }
            if view.source.is_none() && view.error.is_none() {
                let (error, hint) = why_not(&host, self.acme.is_some());
                view.error = error;
                view.hint = hint;
            }
        }
        CertsView {
            https: self.https.map(|a| a.to_string()),
            acme_directory: self.acme.as_ref().map(|a| a.config.directory.clone()),
            hosts: hosts.into_values().collect(),
        }
    }

    /// Orders and renews certificates until the agent stops. Returns at once without ACME.
    pub async fn run_acme(self: Arc<Self>, routes: Routes) {
        let Some(settings) = self.acme.clone() else {
            return;
        };
        let mut changed = routes.watch();
        let mut account = None;
        loop {
            for host in self.due(&routes) {
                self.attempt(&settings, &mut account, &host).await;
            }
            let next = self.next_wake(&routes);
            let wait = next.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = changed.changed() => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Hosts to order for now: named by a location, ACME can issue for them, no operator or
    /// fleet certificate, and ACME's missing or due, and no backoff running.
    fn due(&self, routes: &Routes) -> Vec<CertHost> {
        let now = SystemTime::now();
        let inner = self.lock();
        acme_hosts(routes)
            .into_iter()
            .filter(|host| !inner.given(host))
            .filter(
                |host| match inner.stored.get(&(host.clone(), Source::Acme)) {
                    Some(cert) => cert.renew_at() <= now,
                    None => true,
                },
            )
            .filter(|host| {
                inner
                    .state
                    .get(host)
                    .and_then(|s| s.next_attempt_unix)
                    .is_none_or(|t| t <= unix(now))
            })
            .collect()
    }

    /// The soonest renewal or retry among the hosts ACME serves; a day away if none.
    fn next_wake(&self, routes: &Routes) -> SystemTime {
        let inner = self.lock();
        let mut next = SystemTime::now() + MAX_BACKOFF;
        for host in acme_hosts(routes) {
            if inner.given(&host) {
                continue;
            }
            let retry = inner
                .state
                .get(&host)
                .and_then(|s| s.next_attempt_unix)
                .map(at);
            let renew = inner
                .stored
                .get(&(host.clone(), Source::Acme))
                .map(Cert::renew_at);
            for t in [retry, renew].into_iter().flatten() {
                next = next.min(t);
            }
        }
        next
    }

    #[tracing::instrument(skip_all, fields(host = %host))]
    async fn attempt(
        &self,
        settings: &AcmeSettings,
        account: &mut Option<silver_acme::Account>,
        host: &CertHost,
    ) {
        let challenge = self.state(host).challenge.unwrap_or(settings.first);
        // A CA that takes the connection and never answers must not stall every other host.
        let ordered = self.order(settings, account, host, challenge);
        let issued = match tokio::time::timeout(ORDER_TIMEOUT, ordered).await {
            Ok(issued) => issued,
            Err(_) => Err(silver_acme::Error::Acme {
                directory: settings.config.directory.clone(),
                doing: "ordering",
                said: silver_types::Said::new(
                    &format!("no answer within {} s", ORDER_TIMEOUT.as_secs()),
                    &[],
                ),
            }),
        };
        let mut state = self.state(host);
        match issued {
            Ok(cert) => {
                tracing::info!(challenge = %challenge, serial = %cert.serial, "certificate issued");
                state = AcmeState {
                    challenge: Some(challenge),
                    ..AcmeState::default()
                };
            }
            Err(e) => {
                state.failures += 1;
                let wait = backoff(settings.retry_base, state.failures);
                tracing::warn!(challenge = %challenge, failures = state.failures, retry_in_secs = wait.as_secs(), error = %e, "certificate order failed; the old certificate, if any, keeps serving");
                // The other challenge only when this one failed validation: a CA that cannot
                // be reached says nothing about which challenge a network lets through.
                state.challenge = Some(match e.failed_validation() {
                    true => challenge.other(),
                    false => challenge,
                });
                state.error = Some(e.to_string());
                state.hint = e.hint();
                state.next_attempt_unix = Some(unix(SystemTime::now() + wait));
            }
        }
        let mut inner = self.lock();
        inner.state.insert(host.clone(), state);
        if let Err(e) = stored::save_state(&self.layout, &inner.state) {
            tracing::error!(error = %e, "cannot save ACME state");
        }
    }

    /// One order, stored and served on success.
    async fn order(
        &self,
        settings: &AcmeSettings,
        account: &mut Option<silver_acme::Account>,
        host: &CertHost,
        challenge: Challenge,
    ) -> Result<Cert, silver_acme::Error> {
        if account.is_none() {
            let tls = self.layout.tls();
            safefs::ensure_private_dir(&tls).map_err(|source| silver_acme::Error::Io {
                path: tls.clone(),
                source,
            })?;
            let dir = stored::accounts(&self.layout);
            *account = Some(silver_acme::load_or_create_account(&settings.config, &dir).await?);
        }
        let account = account.as_ref().expect("set above");
        let responder = Responder(&self.live);
        let directory = &settings.config.directory;
        let cert = silver_acme::issue(account, directory, host, challenge, &responder).await?;
        let key = silver_runtime::tls::certified_key(host.as_str(), &cert.chain_pem, &cert.key_pem)
            .map_err(|e| silver_acme::Error::BadCert {
                what: e.what,
                said: e.said,
            })?;
        stored::save(&self.layout, host, Source::Acme, &cert).map_err(|source| {
            silver_acme::Error::Io {
                path: self.layout.tls(),
                source,
            }
        })?;
        let mut inner = self.lock();
        inner
            .stored
            .insert((host.clone(), Source::Acme), cert.clone());
        if !inner.given(host) {
            self.live.install(host.as_str(), key);
        }
        Ok(cert)
    }

    fn state(&self, host: &CertHost) -> AcmeState {
        self.lock().state.get(host).cloned().unwrap_or_default()
    }

    /// Serves the operator's certificate for `host` if there is one, else ACME's, else none.
    fn serve_best(&self, host: &CertHost) {
        let best = {
            let inner = self.lock();
            Source::BY_PREFERENCE
                .into_iter()
                .find_map(|s| inner.stored.get(&(host.clone(), s)).cloned())
        };
        let Some(cert) = best else {
            self.live.remove(host.as_str());
            return;
        };
        match silver_runtime::tls::certified_key(host.as_str(), &cert.chain_pem, &cert.key_pem) {
            Ok(key) => self.live.install(host.as_str(), key),
            Err(e) => tracing::error!(%host, error = %e, "a stored certificate cannot be served"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The node's own router answers: HTTP-01 on the front door, TLS-ALPN-01 on the TLS port.
struct Responder<'a>(&'a Certs);

impl silver_acme::Responder for Responder<'_> {
    async fn present(&self, answer: &Answer) -> Result<(), silver_acme::Error> {
        match answer {
            Answer::Http01 {
                token,
                key_authorization,
                ..
            } => self.0.set_http01(token, key_authorization),
            Answer::TlsAlpn01 { host, digest } => {
                let c = silver_acme::alpn_challenge_cert(host, digest)?;
                self.0.set_alpn(host, c.cert_der, c.key_der).map_err(|e| {
                    silver_acme::Error::Answer {
                        host: host.clone(),
                        challenge: Challenge::TlsAlpn01,
                        said: e.said,
                    }
                })?;
            }
        }
        Ok(())
    }

    async fn withdraw(&self, answer: &Answer) {
        match answer {
            Answer::Http01 { token, .. } => self.0.clear_http01(token),
            Answer::TlsAlpn01 { host, .. } => self.0.clear_alpn(host),
        }
    }
}

/// Hosts named by a location that a public ACME CA can issue for.
fn acme_hosts(routes: &Routes) -> Vec<CertHost> {
    routes
        .hosts()
        .keys()
        .filter_map(|h| CertHost::parse(h).ok())
        .filter(|h| why_not(h, true).0.is_none())
        .collect()
}

/// Why ACME will not order for `host` (with a hint), or (None, None) if it will.
fn why_not(host: &CertHost, acme: bool) -> (Option<String>, Option<String>) {
    let add = || Some(format!("add one: silver certs add '{host}' CERT KEY"));
    if let Some(refusal) = host.acme_refusal() {
        return (Some(refusal), add());
    }
    if !acme {
        return (
            Some("no certificate, and ACME is off on this node".into()),
            add(),
        );
    }
    (None, None)
}

fn empty_view(host: &str) -> CertView {
    CertView {
        host: host.to_string(),
        apps: Vec::new(),
        source: None,
        names: Vec::new(),
        not_after_unix: None,
        renew_at_unix: None,
        challenge: None,
        error: None,
        hint: None,
        failures: 0,
        next_attempt_unix: None,
    }
}

fn backoff(base: Duration, failures: u32) -> Duration {
    base.saturating_mul(1 << failures.saturating_sub(1).min(20))
        .min(MAX_BACKOFF)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn at(unix: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_day() {
        let base = Duration::from_secs(60);
        assert_eq!(backoff(base, 1), base);
        assert_eq!(backoff(base, 2), base * 2);
        assert_eq!(backoff(base, 5), base * 16);
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }
}
