//! Tasks: deferred internal requests an app queues for itself (design §11), as they are named,
//! stored and shown. The queue itself is the runtime's (`silver_runtime::tasks`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A task's id: 13 hex digits of its creation time in milliseconds, then 12 random ones, so
/// ids sort by age and name a file under the app's queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

/// Why a string is not a task id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a task id is 25 lowercase hex digits, as `silver tasks` shows them")]
pub struct NotATaskId;

impl TaskId {
    pub const LEN: usize = 25;

    /// A new id for a task made at `now`, its random part from `random` (hex digits).
    pub fn new(now: DateTime<Utc>, random: &str) -> TaskId {
        let ms = now.timestamp_millis().max(0) as u64;
        let tail: String = random.chars().take(12).collect();
        TaskId(format!("{ms:013x}{tail:0>12}"))
    }

    pub fn parse(given: &str) -> Result<TaskId, NotATaskId> {
        // Blocks: a path that walks out of the queue directory (`../`, `/`), hidden files,
        // and names the queue never made.
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if given.len() == Self::LEN && given.chars().all(hex) {
            Ok(TaskId(given.to_string()))
        } else {
            Err(NotATaskId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TaskId {
    type Err = NotATaskId;
    fn from_str(s: &str) -> Result<TaskId, NotATaskId> {
        TaskId::parse(s)
    }
}

impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TaskId, D::Error> {
        let s = String::deserialize(d)?;
        TaskId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Waiting for its time, or for a free slot.
    Queued,
    /// A request for it is under way.
    Running,
    /// It failed as many times as `task_attempts` allows; it waits for `silver tasks retry`
    /// or `drop`.
    Dead,
}

/// A task as `silver tasks` shows it (its body is not shown: it may hold anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub id: TaskId,
    pub state: TaskState,
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub created: DateTime<Utc>,
    /// When it runs next (queued), or ran last (dead).
    pub due: DateTime<Utc>,
    /// Attempts that failed so far.
    pub attempts: u32,
    /// What the last failed attempt came to: a status, a timeout, no web process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub body_bytes: u64,
}

/// An app's queue, as `silver tasks APP` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskList {
    pub queued: u64,
    pub running: u64,
    pub dead: u64,
    /// Tasks run to a 2xx since the agent started.
    pub done: u64,
    /// Where the queue lives: `node` or `postgresql`.
    pub store: String,
    /// `task_queue_size`: tasks held at most (queued, running and dead).
    pub limit: u64,
    /// Every dead task, then the next queued ones (at most 100), soonest first.
    pub tasks: Vec<TaskInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_refuse_paths() {
        let a = TaskId::new(
            DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            "0a1b2c3d4e5f",
        );
        let b = TaskId::new(
            DateTime::from_timestamp(1_700_000_001, 0).unwrap(),
            "000000000000",
        );
        assert!(a < b);
        assert_eq!(TaskId::parse(a.as_str()), Ok(a.clone()));
        for bad in [
            "",
            "../../etc/passwd",
            "0000000000000000000000000A",
            "x",
            &"0".repeat(26),
        ] {
            assert_eq!(TaskId::parse(bad), Err(NotATaskId), "{bad}");
        }
    }
}
