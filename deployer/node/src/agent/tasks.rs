//! An app's task queue on this node (`silver tasks`): what is queued, running and dead, and
//! retrying or dropping tasks.

use axum::extract::State;
use axum::Json;
use silver_types::task::{TaskId, TaskList};
use silver_wire::api::TasksRequest;

use super::extract::{App, JsonBody};
use super::{AgentState, ApiErr};
use crate::error::Error;
use silver_types::AppName;

pub(super) async fn list(
    State(state): State<AgentState>,
    App(app): App,
) -> Result<Json<TaskList>, ApiErr> {
    let queue = queue(&state, app).await?;
    Ok(Json(queue.list().await.map_err(Error::from)?))
}

/// Queues dead tasks again (the ones named, or every dead one), attempts from zero.
pub(super) async fn retry(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(TasksRequest { ids }): JsonBody<TasksRequest>,
) -> Result<Json<Vec<TaskId>>, ApiErr> {
    let queue = queue(&state, app).await?;
    Ok(Json(queue.retry(ids).await.map_err(Error::from)?))
}

/// Drops tasks, queued or dead (the ones named, or every dead one).
pub(super) async fn drop(
    State(state): State<AgentState>,
    App(app): App,
    JsonBody(TasksRequest { ids }): JsonBody<TasksRequest>,
) -> Result<Json<Vec<TaskId>>, ApiErr> {
    let queue = queue(&state, app).await?;
    Ok(Json(queue.drop_tasks(ids).await.map_err(Error::from)?))
}

async fn queue(
    state: &AgentState,
    app: AppName,
) -> Result<std::sync::Arc<silver_runtime::tasks::Queue>, Error> {
    match state.runtime.tasks(&app).await {
        Some(queue) => Ok(queue),
        None => Err(silver_runtime::Error::Task {
            app,
            problem: silver_runtime::TaskProblem::NotOpen,
        }
        .into()),
    }
}
