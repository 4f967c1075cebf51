//! Tenancy: organizations, projects, their limits, and the [`Tenancy`] service.

pub(crate) mod model;
mod service;

pub use model::{
    MAX_RESOURCE_NAME_CHARS, MAX_TENANT_NAME_CHARS, Organization, Project, ProjectResource, ProjectResourceKind, ProjectUsage,
    TenancyLimits, TenancyLimitsBuilder, validate_name, validate_resource_name,
};
pub use service::{Tenancy, ops};
