//! The tags of a project: list with their use, create, delete.

use ecp_core::access::{Permission, ResourceKind};
use ecp_core::edge::TagUsage;

use super::{ProjectFleet, ops};
use crate::error::Result;

impl ProjectFleet {
    /// The project's tags and their use. Needs `view tag`.
    ///
    /// # Errors
    /// `PermissionDenied`, `Backend`.
    pub async fn tags(&self) -> Result<Vec<TagUsage>> {
        self.authorize(Permission::view(ResourceKind::Tag))?;
        Ok(self.store().list_tags(self.project.id()).await?)
    }

    /// Defines a tag. Needs `edit tag`.
    ///
    /// # Errors
    /// `PermissionDenied`, `InvalidInput`, `Conflict`, `LimitExceeded`, `Backend`.
    pub async fn create_tag(&self, name: &str) -> Result<()> {
        let mut event = self.scope.event(ResourceKind::Tag, ops::TAG_CREATE);
        event.resource_name = Some(name.chars().take(20).collect());
        self.scope
            .audited_event(Permission::edit(ResourceKind::Tag), event, async |audit| {
                Ok(self.store().create_tag(self.project.id(), name, &self.fleet.inner.limits, self.now(), audit.in_transaction()).await?)
            })
            .await
    }

    /// Deletes a tag no service carries. Needs `edit tag`.
    ///
    /// # Errors
    /// `PermissionDenied`, `NotFound`, `Conflict` while in use, `Backend`.
    pub async fn delete_tag(&self, name: &str) -> Result<()> {
        let mut event = self.scope.event(ResourceKind::Tag, ops::TAG_DELETE);
        event.resource_name = Some(name.chars().take(20).collect());
        self.scope
            .audited_event(Permission::edit(ResourceKind::Tag), event, async |audit| {
                Ok(self.store().delete_tag(self.project.id(), name, audit.in_transaction()).await?)
            })
            .await
    }
}
