//! The app's shared PostgreSQL (`shared_database` in app.ini): what makes a fleet do a thing
//! once (design §9, §11). A cron tick takes its lease here, from PostgreSQL's own advisory
//! locks, which the server releases when the session holding them ends, so a node that dies
//! mid-run gives its tick up to another node. No consensus of silver's own.
//!
//! For each tick, every node of the fleet that schedules the job:
//! 1. takes the tick's lock (waiting while another node holds it: that node runs the tick, or
//!    dies and lets go);
//! 2. reads the tick's row in `silver_cron_ticks`: finished means another node ran it (done);
//!    started but unfinished means the node that started it died (this one runs it again);
//!    none means no node has (this one claims it);
//! 3. takes the job's lock, held by whichever node runs any tick of the job: if an earlier
//!    tick still runs somewhere, this tick is skipped, as on one node;
//! 4. runs the job, marks the row finished, and lets both locks go.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::error::Error;

/// The shared database, by its URL (which holds a password, so it is never shown: `shown`
/// names its host and database).
#[derive(Clone)]
pub struct SharedDb {
    config: tokio_postgres::Config,
    /// `sslmode=verify-full` (or `verify-ca`): the server's certificate must chain to the
    /// system's roots, or to `sslrootcert`'s.
    verify: Option<Verify>,
    pub shown: String,
}

/// How a server's certificate is checked.
#[derive(Clone)]
pub(crate) enum Verify {
    SystemRoots,
    RootCert(std::path::PathBuf),
}

/// What a node may do about a tick.
pub enum Lease {
    /// Run it; `took_over` when the node that started it died.
    Run { held: Held, took_over: bool },
    /// Another node ran it, to this end.
    RanElsewhere { node: String, ok: bool },
    /// An earlier tick of the job still runs on some node: skipped.
    Overlap,
}

/// A tick this node runs: its locks, held by this session until [`Held::finish`] (or until
/// the node dies, when the server lets them go).
pub struct Held {
    client: Client,
    app: String,
    job: String,
    tick: DateTime<Utc>,
}

impl SharedDb {
    /// Reads a `postgresql://` URL. `sslmode` is libpq's: `disable`, `prefer` (the default) and
    /// `require` encrypt when they do without checking the server's certificate, as libpq
    /// does; `verify-ca` and `verify-full` check it against the system's roots or
    /// `sslrootcert`, and the host name too.
    pub fn parse(url: &str) -> Result<SharedDb, Error> {
        let (url, verify) = tls_mode(url);
        let config: tokio_postgres::Config = url.parse().map_err(|source| Error::SharedDb {
            shown: "(its URL does not parse)".into(),
            source,
        })?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config.get_dbname().unwrap_or("").to_string();
        Ok(SharedDb {
            shown: format!("{host}:{port}/{db}"),
            config,
            verify,
        })
    }

    /// The lease on `tick` of `job`, waiting at most `wait` for a node that holds it.
    pub async fn cron_lease(
        &self,
        app: &str,
        job: &str,
        tick: DateTime<Utc>,
        node: &str,
        wait: Duration,
    ) -> Result<Lease, Error> {
        let client = self.connect().await?;
        let fail = |source| self.failed(source);
        let (tick_key, job_key) = (
            lock_key(&[app, job, &tick.to_rfc3339()]),
            lock_key(&[app, job]),
        );
        let free: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&tick_key])
            .await
            .map_err(fail)?
            .get(0);
        if !free {
            let waited = format!("SET statement_timeout = {}", wait.as_millis().max(1));
            client.batch_execute(&waited).await.map_err(fail)?;
            // A timeout here means the other node still runs it: it is that node's.
            if client
                .query_one("SELECT pg_advisory_lock($1)", &[&tick_key])
                .await
                .is_err()
            {
                return Ok(Lease::RanElsewhere {
                    node: "another node".into(),
                    ok: true,
                });
            }
            client
                .batch_execute("SET statement_timeout = 0")
                .await
                .map_err(fail)?;
        }
        let row = client
            .query_opt(
                "SELECT node, finished IS NOT NULL, coalesce(ok, false) FROM silver_cron_ticks \
                 WHERE app = $1 AND job = $2 AND tick = $3",
                &[&app, &job, &tick],
            )
            .await
            .map_err(fail)?;
        let took_over = match row {
            Some(row) if row.get::<_, bool>(1) => {
                return Ok(Lease::RanElsewhere {
                    node: row.get(0),
                    ok: row.get(2),
                });
            }
            Some(_) => true,
            None => false,
        };
        client
            .execute(
                "INSERT INTO silver_cron_ticks (app, job, tick, node, started) \
                 VALUES ($1, $2, $3, $4, now()) \
                 ON CONFLICT (app, job, tick) DO UPDATE SET node = $4, started = now()",
                &[&app, &job, &tick, &node],
            )
            .await
            .map_err(fail)?;
        let held = Held {
            client,
            app: app.into(),
            job: job.into(),
            tick,
        };
        let job_free: bool = held
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&job_key])
            .await
            .map_err(fail)?
            .get(0);
        if !job_free {
            held.finish(false).await;
            return Ok(Lease::Overlap);
        }
        Ok(Lease::Run { held, took_over })
    }

    /// A new session, with silver's tables made if they are not there yet.
    pub(crate) async fn connect(&self) -> Result<Client, Error> {
        let tls = tls::connector(self.verify.as_ref())
            .map_err(|e| Error::io(std::path::Path::new("sslrootcert"), e))?;
        let (client, connection) = self
            .config
            .connect(tls)
            .await
            .map_err(|source| self.failed(source))?;
        tokio::spawn(connection);
        // Concurrent first uses on several nodes: the lock makes one of them create the table.
        client
            .batch_execute(SCHEMA)
            .await
            .map_err(|source| self.failed(source))?;
        Ok(client)
    }

    pub(crate) fn failed(&self, source: tokio_postgres::Error) -> Error {
        Error::SharedDb {
            shown: self.shown.clone(),
            source,
        }
    }
}

impl Held {
    /// Marks the tick finished and lets its locks go (by ending the session), and forgets
    /// the job's ticks older than a week.
    pub async fn finish(self, ok: bool) {
        let marked = self
            .client
            .execute(
                "UPDATE silver_cron_ticks SET finished = now(), ok = $4 \
                 WHERE app = $1 AND job = $2 AND tick = $3",
                &[&self.app, &self.job, &self.tick, &ok],
            )
            .await;
        if let Err(e) = marked {
            tracing::warn!(app = %self.app, job = %self.job, error = %e, "a cron tick could not be marked finished; another node may run it again");
        }
        let _ = self
            .client
            .execute(
                "DELETE FROM silver_cron_ticks WHERE app = $1 AND job = $2 \
                 AND tick < now() - interval '7 days'",
                &[&self.app, &self.job],
            )
            .await;
        // Dropping the client ends the session, and with it every advisory lock it holds.
    }
}

/// The URL without the `sslmode` and `sslrootcert` that tokio-postgres does not read (libpq's
/// `verify-ca`, `verify-full`), and how they ask for the server to be checked.
fn tls_mode(url: &str) -> (String, Option<Verify>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_string(), None);
    };
    let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let verifying = matches!(get("sslmode").as_deref(), Some("verify-ca" | "verify-full"));
    let root = get("sslrootcert");
    if !verifying && root.is_none() {
        return (url.to_string(), None);
    }
    let kept: Vec<&(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "sslmode" && k != "sslrootcert")
        .collect();
    let mut query = parsed.query_pairs_mut();
    query.clear();
    for (k, v) in kept {
        query.append_pair(k, v);
    }
    query.append_pair("sslmode", "require");
    drop(query);
    let verify = match root {
        Some(path) => Verify::RootCert(path.into()),
        None => Verify::SystemRoots,
    };
    (parsed.to_string(), Some(verify))
}

mod tls {
    //! TLS to the shared database, with rustls (as the rest of silver).

    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    use crate::shared::Verify;

    pub fn connector(
        verify: Option<&Verify>,
    ) -> std::io::Result<tokio_postgres_rustls::MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?;
        let config = match verify {
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
                .with_no_client_auth(),
            Some(verify) => builder
                .with_root_certificates(roots(verify)?)
                .with_no_client_auth(),
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }

    fn roots(verify: &Verify) -> std::io::Result<rustls::RootCertStore> {
        let mut store = rustls::RootCertStore::empty();
        let certs: Vec<CertificateDer<'static>> = match verify {
            Verify::SystemRoots => rustls_native_certs::load_native_certs().certs,
            Verify::RootCert(path) => {
                use rustls::pki_types::pem::PemObject;
                CertificateDer::pem_file_iter(path)
                    .map_err(std::io::Error::other)?
                    .collect::<Result<_, _>>()
                    .map_err(std::io::Error::other)?
            }
        };
        store.add_parsable_certificates(certs);
        Ok(store)
    }

    /// libpq's `sslmode=prefer` and `require`: the session is encrypted, and the server's
    /// certificate is taken as it comes (Debian's PostgreSQL serves a self-signed one). It
    /// blocks eavesdropping, not a server that pretends; `verify-full` blocks both.
    #[derive(Debug)]
    struct Unchecked(Arc<CryptoProvider>);

    impl ServerCertVerifier for Unchecked {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algorithms = &self.0.signature_verification_algorithms;
            rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

/// silver's tables in the shared database: cron ticks, and the fleet's task queue
/// (`tasks::fleet`). Made under a lock, as several nodes may start at once.
const SCHEMA: &str = "BEGIN; SELECT pg_advisory_xact_lock(7262830391257611);
CREATE TABLE IF NOT EXISTS silver_cron_ticks (
  app text NOT NULL, job text NOT NULL, tick timestamptz NOT NULL,
  node text NOT NULL, started timestamptz NOT NULL, finished timestamptz,
  ok boolean, PRIMARY KEY (app, job, tick));
CREATE TABLE IF NOT EXISTS silver_tasks (
  app text NOT NULL, id text NOT NULL, method text NOT NULL, path text NOT NULL,
  key text, content_type text, body bytea NOT NULL, created timestamptz NOT NULL,
  due timestamptz NOT NULL, attempts integer NOT NULL DEFAULT 0, last_error text,
  dead boolean NOT NULL DEFAULT false, lease_until timestamptz, node text,
  PRIMARY KEY (app, id));
CREATE INDEX IF NOT EXISTS silver_tasks_due ON silver_tasks (app, dead, due);
CREATE TABLE IF NOT EXISTS silver_task_keys (
  app text NOT NULL, key text NOT NULL, id text NOT NULL, at timestamptz NOT NULL,
  PRIMARY KEY (app, key));
COMMIT;";

/// An advisory lock's 64-bit key for these parts (hashed: apps and jobs are names, locks are
/// numbers; a collision would only make two jobs wait for each other).
pub(crate) fn lock_key(parts: &[&str]) -> i64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"silver-cron");
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let bytes: [u8; 8] = hasher.finalize().as_bytes()[..8]
        .try_into()
        .unwrap_or_default();
    i64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL as given, against what tokio-postgres is handed and how the server is checked.
    fn check(url: &str, handed: &str, verify: Option<&str>) {
        let (got, how) = tls_mode(url);
        let how = how.map(|v| match v {
            Verify::SystemRoots => "system".to_string(),
            Verify::RootCert(p) => p.display().to_string(),
        });
        assert_eq!((got.as_str(), how.as_deref()), (handed, verify), "{url}");
    }

    #[test]
    fn libpq_ssl_modes_become_a_connector() {
        let plain = "postgresql://u:p@db.internal:5433/app";
        check(plain, plain, None);
        let required = "postgresql://u:p@db.internal/app?sslmode=require";
        check(required, required, None);
        check(
            "postgresql://u:p@db.internal/app?sslmode=verify-full&application_name=x",
            "postgresql://u:p@db.internal/app?application_name=x&sslmode=require",
            Some("system"),
        );
        check(
            "postgresql://u:p@db.internal/app?sslmode=verify-ca&sslrootcert=/etc/ssl/db.pem",
            "postgresql://u:p@db.internal/app?sslmode=require",
            Some("/etc/ssl/db.pem"),
        );
        // The password never shows: only host, port and database do.
        let db = SharedDb::parse("postgresql://u:secret@db.internal:5433/app").unwrap();
        assert_eq!(db.shown, "db.internal:5433/app");
    }
}
