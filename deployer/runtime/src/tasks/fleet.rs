//! The fleet's task queue, in the app's shared PostgreSQL (`shared_database`): a task any node's
//! app adds is run by whichever node claims it first (`FOR UPDATE SKIP LOCKED`), under a lease
//! that a node renews by finishing: a node that dies with a task running loses it to the others
//! when the lease runs out, so a dead node loses none. The database is the engine; silver adds
//! none of its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use silver_types::task::{TaskId, TaskInfo, TaskState};
use tokio_postgres::Client;

use super::store::Header;
use super::{Added, LISTED};
use crate::error::{Error, TaskProblem};
use crate::shared::SharedDb;

/// One app's queue in the shared database, over one session (reopened if it drops).
pub struct Fleet {
    db: SharedDb,
    /// The app's name, as the tables key it.
    app: String,
    name: silver_types::AppName,
    session: tokio::sync::Mutex<Option<Client>>,
}

/// A task claimed for a run.
pub struct Claimed {
    pub id: TaskId,
    pub header: Header,
    pub body: Vec<u8>,
}

/// The queue's counts and the tasks `silver tasks` shows.
pub struct Listing {
    pub queued: u64,
    pub running: u64,
    pub dead: u64,
    pub tasks: Vec<TaskInfo>,
}

const COLUMNS: &str =
    "id, method, path, key, content_type, created, due, attempts, last_error, length(body)::bigint";

impl Fleet {
    pub fn new(db: SharedDb, app: &silver_types::AppName) -> Fleet {
        Fleet {
            db,
            app: app.to_string(),
            name: app.clone(),
            session: Default::default(),
        }
    }

    pub fn shown(&self) -> &str {
        &self.db.shown
    }

    /// Adds a task, committed (so durable) before this returns; the key deduplicates across
    /// the fleet, and the limit holds across it (adds of one app are serialised by a lock).
    pub async fn add(
        &self,
        id: &TaskId,
        h: &Header,
        body: &[u8],
        limit: u64,
    ) -> Result<Added, Error> {
        let mut session = self.session().await?;
        let client = session.as_mut().ok_or_else(|| self.gone())?;
        let fail = |e| self.db.failed(e);
        let tx = client.transaction().await.map_err(fail)?;
        let lock = crate::shared::lock_key(&["tasks", &self.app]);
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
            .await
            .map_err(fail)?;
        if let Some(key) = &h.key {
            let found = tx
                .query_opt(
                    "SELECT id FROM silver_task_keys WHERE app = $1 AND key = $2 \
                     AND at > now() - interval '1 day'",
                    &[&self.app, key],
                )
                .await
                .map_err(fail)?;
            if let Some(row) = found {
                let id = TaskId::parse(row.get::<_, &str>(0)).map_err(|_| self.gone())?;
                return Ok(Added {
                    id,
                    duplicate: true,
                });
            }
        }
        let count: i64 = tx
            .query_one(
                "SELECT count(*) FROM silver_tasks WHERE app = $1",
                &[&self.app],
            )
            .await
            .map_err(fail)?
            .get(0);
        if count as u64 >= limit {
            return Err(Error::Task {
                app: self.app_name(),
                problem: TaskProblem::Full { limit },
            });
        }
        tx.execute(
            "INSERT INTO silver_tasks (app, id, method, path, key, content_type, body, created, due) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[&self.app, &id.as_str(), &h.method, &h.path, &h.key, &h.content_type, &body, &h.created, &h.due],
        )
        .await
        .map_err(fail)?;
        if let Some(key) = &h.key {
            tx.execute(
                "INSERT INTO silver_task_keys (app, key, id, at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (app, key) DO UPDATE SET id = $3, at = $4",
                &[&self.app, key, &id.as_str(), &h.created],
            )
            .await
            .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(Added {
            id: id.clone(),
            duplicate: false,
        })
    }

    /// The task due first that no node runs now, leased to `node` for `lease`.
    pub async fn claim(&self, node: &str, lease: Duration) -> Result<Option<Claimed>, Error> {
        let session = self.session().await?;
        let client = session.as_ref().ok_or_else(|| self.gone())?;
        let sql = format!(
            "UPDATE silver_tasks SET lease_until = now() + make_interval(secs => $2), node = $3 \
             WHERE app = $1 AND id = (SELECT id FROM silver_tasks WHERE app = $1 AND NOT dead \
               AND due <= now() AND (lease_until IS NULL OR lease_until < now()) \
               ORDER BY due LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING {COLUMNS}, body"
        );
        let secs = lease.as_secs_f64();
        let row = client
            .query_opt(&sql, &[&self.app, &secs, &node])
            .await
            .map_err(|e| self.db.failed(e))?;
        Ok(row.map(|row| {
            let (id, header) = header_of(&row);
            Claimed {
                id,
                header,
                body: row.get(10),
            }
        }))
    }

    /// When the next task not running is due, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, Error> {
        let session = self.session().await?;
        let client = session.as_ref().ok_or_else(|| self.gone())?;
        let row = client
            .query_one(
                "SELECT min(greatest(due, coalesce(lease_until, due))) FROM silver_tasks \
                 WHERE app = $1 AND NOT dead",
                &[&self.app],
            )
            .await
            .map_err(|e| self.db.failed(e))?;
        Ok(row.get(0))
    }

    /// A run got its 2xx: the task is done.
    pub async fn done(&self, id: &TaskId) -> Result<(), Error> {
        self.execute(
            "DELETE FROM silver_tasks WHERE app = $1 AND id = $2",
            id,
            &[],
        )
        .await
    }

    /// A run failed: the task waits for its retry (`h.due`), or is dead.
    pub async fn failed(&self, id: &TaskId, h: &Header, dead: bool) -> Result<(), Error> {
        let attempts = h.attempts as i32;
        self.execute(
            "UPDATE silver_tasks SET attempts = $3, last_error = $4, due = $5, dead = $6, \
             lease_until = NULL WHERE app = $1 AND id = $2",
            id,
            &[&attempts, &h.last_error, &h.due, &dead],
        )
        .await
    }

    pub async fn list(&self) -> Result<Listing, Error> {
        let session = self.session().await?;
        let client = session.as_ref().ok_or_else(|| self.gone())?;
        let fail = |e| self.db.failed(e);
        let counts = client
            .query_one(
                "SELECT count(*) FILTER (WHERE dead), \
                 count(*) FILTER (WHERE NOT dead AND lease_until > now()), \
                 count(*) FILTER (WHERE NOT dead AND (lease_until IS NULL OR lease_until <= now())) \
                 FROM silver_tasks WHERE app = $1",
                &[&self.app],
            )
            .await
            .map_err(fail)?;
        let sql = format!(
            "(SELECT {COLUMNS}, 'dead' FROM silver_tasks WHERE app = $1 AND dead ORDER BY id) \
             UNION ALL (SELECT {COLUMNS}, CASE WHEN lease_until > now() THEN 'running' ELSE 'queued' END \
               FROM silver_tasks WHERE app = $1 AND NOT dead ORDER BY due LIMIT {LISTED})"
        );
        let rows = client.query(&sql, &[&self.app]).await.map_err(fail)?;
        let tasks = rows.iter().map(|row| {
            let (id, h) = header_of(row);
            let state = match row.get::<_, &str>(10) {
                "dead" => TaskState::Dead,
                "running" => TaskState::Running,
                _ => TaskState::Queued,
            };
            super::info(&id, &h, state)
        });
        let n = |i: usize| counts.get::<_, i64>(i) as u64;
        Ok(Listing {
            dead: n(0),
            running: n(1),
            queued: n(2),
            tasks: tasks.collect(),
        })
    }

    /// Queues dead tasks again; `None`: every dead one. Answers with those it found.
    pub async fn retry(&self, ids: Option<&[TaskId]>) -> Result<Vec<TaskId>, Error> {
        self.change(
            "UPDATE silver_tasks SET dead = false, attempts = 0, due = now(), lease_until = NULL \
             WHERE app = $1 AND dead AND ($2::text[] IS NULL OR id = ANY($2)) RETURNING id",
            ids,
        )
        .await
    }

    /// Drops tasks, queued or dead but not running; `None`: every dead one.
    pub async fn drop_tasks(&self, ids: Option<&[TaskId]>) -> Result<Vec<TaskId>, Error> {
        let sql = match ids {
            None => "DELETE FROM silver_tasks WHERE app = $1 AND dead AND $2::text[] IS NULL RETURNING id",
            Some(_) => {
                "DELETE FROM silver_tasks WHERE app = $1 AND id = ANY($2) \
                 AND (dead OR lease_until IS NULL OR lease_until <= now()) RETURNING id"
            }
        };
        self.change(sql, ids).await
    }

    async fn change(&self, sql: &str, ids: Option<&[TaskId]>) -> Result<Vec<TaskId>, Error> {
        let session = self.session().await?;
        let client = session.as_ref().ok_or_else(|| self.gone())?;
        let ids: Option<Vec<&str>> = ids.map(|ids| ids.iter().map(TaskId::as_str).collect());
        let rows = client
            .query(sql, &[&self.app, &ids])
            .await
            .map_err(|e| self.db.failed(e))?;
        Ok(rows
            .iter()
            .filter_map(|r| TaskId::parse(r.get::<_, &str>(0)).ok())
            .collect())
    }

    async fn execute(
        &self,
        sql: &str,
        id: &TaskId,
        more: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), Error> {
        let session = self.session().await?;
        let client = session.as_ref().ok_or_else(|| self.gone())?;
        let id = id.as_str();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&self.app, &id];
        params.extend_from_slice(more);
        client
            .execute(sql, &params)
            .await
            .map_err(|e| self.db.failed(e))?;
        Ok(())
    }

    /// The session, opened (again) if it is not open.
    async fn session(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, Error> {
        let mut session = self.session.lock().await;
        if session.as_ref().is_none_or(Client::is_closed) {
            *session = Some(self.db.connect().await?);
        }
        Ok(session)
    }

    fn gone(&self) -> Error {
        Error::Task {
            app: self.app_name(),
            problem: TaskProblem::NotOpen,
        }
    }

    fn app_name(&self) -> silver_types::AppName {
        self.name.clone()
    }
}

fn header_of(row: &tokio_postgres::Row) -> (TaskId, Header) {
    let id = TaskId::parse(row.get::<_, &str>(0)).unwrap_or_else(|_| TaskId::new(Utc::now(), "0"));
    let header = Header {
        method: row.get(1),
        path: row.get(2),
        key: row.get(3),
        content_type: row.get(4),
        created: row.get(5),
        due: row.get(6),
        attempts: row.get::<_, i32>(7).max(0) as u32,
        last_error: row.get(8),
        body_bytes: row.get::<_, i64>(9).max(0) as u64,
    };
    (id, header)
}
