//! The tasks of a project: list, read with their targets, cancel, pause, resume.

use ecp_core::access::{Permission, ResourceKind};
use ecp_core::audit::Operation;
use ecp_core::task::{Task, TaskTarget, TaskTotals};
use ecp_core::{Page, PageRequest, TaskId};

use super::{ProjectFleet, ops};
use crate::error::Result;

impl ProjectFleet {
    /// The project's tasks, newest first. Needs `view config delivery`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput`, `Backend`.
    pub async fn tasks(&self, page: &PageRequest) -> Result<Page<Task>> {
        self.authorize(Permission::view(ResourceKind::ConfigDelivery))?;
        Ok(self.store().list_tasks(self.project.id(), page).await?)
    }

    /// A task of this project and its counts. Needs `view config delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn task(&self, id: TaskId) -> Result<(Task, TaskTotals)> {
        self.authorize(Permission::view(ResourceKind::ConfigDelivery))?;
        let (task, totals) = self.fleet.inner.engine.progress(id).await?;
        if task.project() != self.project.id() {
            return Err(ecp_core::Error::not_found("task", id).into());
        }
        Ok((task, totals))
    }

    /// A task's targets, in order, from `after_seq`. Needs `view config delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Backend`.
    pub async fn task_targets(&self, id: TaskId, after_seq: Option<u64>, limit: u32) -> Result<Vec<TaskTarget>> {
        self.task(id).await?;
        Ok(self.store().task_targets(id, after_seq, limit).await?)
    }

    async fn steer(&self, id: TaskId, op: Operation) -> Result<()> {
        let event = self.scope.event(ResourceKind::ConfigDelivery, op.clone()).resource(id, None);
        self.scope
            .audited_event(Permission::operate(ResourceKind::ConfigDelivery), event, async |_| {
                self.task(id).await?;
                let Some(handle) = self.fleet.inner.engine.handle(id) else {
                    return Err(ecp_core::Error::conflict("task", id, "it is not running in this engine").into());
                };
                match op.as_str() {
                    "task.cancel" => handle.cancel().await,
                    "task.pause" => handle.pause().await,
                    _ => handle.resume().await,
                }
                Ok(())
            })
            .await
    }

    /// Cancels a running task. Needs `operate config delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Conflict` if it is not running here, `Backend`.
    pub async fn cancel_task(&self, id: TaskId) -> Result<()> {
        self.steer(id, ops::TASK_CANCEL).await
    }

    /// Pauses a running task. Needs `operate config delivery`.
    ///
    /// # Errors
    /// As [`cancel_task`](Self::cancel_task).
    pub async fn pause_task(&self, id: TaskId) -> Result<()> {
        self.steer(id, ops::TASK_PAUSE).await
    }

    /// Resumes a paused task. Needs `operate config delivery`.
    ///
    /// # Errors
    /// As [`cancel_task`](Self::cancel_task).
    pub async fn resume_task(&self, id: TaskId) -> Result<()> {
        self.steer(id, ops::TASK_RESUME).await
    }
}
