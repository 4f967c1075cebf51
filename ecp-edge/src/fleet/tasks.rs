//! The tasks of a project: list, read with their targets, cancel, pause, resume.

use ecp_core::access::{Permission, ResourceKind};
use ecp_core::audit::Operation;
use ecp_core::task::{Task, TaskControl, TaskTarget, TaskTotals};
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

    async fn steer(&self, id: TaskId, op: Operation, control: TaskControl) -> Result<()> {
        let event = self.scope.event(ResourceKind::ConfigDelivery, op).resource(id, None);
        self.scope
            .audited_event(Permission::operate(ResourceKind::ConfigDelivery), event, async |_| {
                self.task(id).await?;
                self.fleet.inner.engine.control(id, control).await?;
                Ok(())
            })
            .await
    }

    /// Cancels an unfinished task, on whichever replica runs it (see
    /// [`TaskEngine::control`](ecp_core::task::TaskEngine::control)). Needs `operate config
    /// delivery`.
    ///
    /// # Errors
    /// `NotFound`, `PermissionDenied`, `Conflict` if it has ended, `Backend`.
    pub async fn cancel_task(&self, id: TaskId) -> Result<()> {
        self.steer(id, ops::TASK_CANCEL, TaskControl::Cancel).await
    }

    /// Pauses a running task. Needs `operate config delivery`.
    ///
    /// # Errors
    /// As [`cancel_task`](Self::cancel_task).
    pub async fn pause_task(&self, id: TaskId) -> Result<()> {
        self.steer(id, ops::TASK_PAUSE, TaskControl::Pause).await
    }

    /// Resumes a paused task. Needs `operate config delivery`.
    ///
    /// # Errors
    /// As [`cancel_task`](Self::cancel_task).
    pub async fn resume_task(&self, id: TaskId) -> Result<()> {
        self.steer(id, ops::TASK_RESUME, TaskControl::Resume).await
    }
}
