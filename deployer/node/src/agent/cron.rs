//! An app's `[cron]` jobs on this node: each with its last run, next run and recent failures
//! (`silver cron APP`), and a run now (`silver cron run APP JOB`).

use axum::extract::State;
use axum::Json;
use silver_types::cron::{JobStatus, RunRecord};
use silver_wire::api::CronRunRequest;

use super::extract::{App, JsonBody};
use super::{AgentState, ApiErr};
use crate::error::Error;

pub(super) async fn jobs(
    State(state): State<AgentState>,
    App(app): App,
) -> Result<Json<Vec<JobStatus>>, ApiErr> {
    match state.runtime.cron_jobs(&app).await {
        Some(jobs) => Ok(Json(jobs)),
        None => Err(Error::NoCurrent { app }.into()),
    }
}

/// Runs the job now and answers with its runs (its retries too) once they end.
pub(super) async fn run(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(CronRunRequest { job }): JsonBody<CronRunRequest>,
) -> Result<Json<Vec<RunRecord>>, ApiErr> {
    if state.runtime.live_release(&app).await.is_none() {
        return Err(Error::NoCurrent { app }.into());
    }
    match state.runtime.cron_run(&app, &job).await {
        Some(runs) => Ok(Json(runs)),
        None => Err(Error::NoCronJob { app, job }.into()),
    }
}
