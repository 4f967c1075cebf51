//! Keyset pagination.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most items one page may hold.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Which page to read: at most `limit` items after `cursor` (the `next` of the previous page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Items per page, 1..=[`MAX_PAGE_SIZE`].
    pub limit: u32,
    /// Where the previous page ended; `None` for the first page.
    pub cursor: Option<String>,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self { limit, cursor: None }
    }

    /// The page after `cursor`.
    pub fn after(limit: u32, cursor: impl Into<String>) -> Self {
        Self { limit, cursor: Some(cursor.into()) }
    }

    /// Checks the limit and the cursor's size.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a limit of 0 or above [`MAX_PAGE_SIZE`], or a cursor over 128 bytes.
    pub fn validate(&self) -> Result<()> {
        if self.limit == 0 || self.limit > MAX_PAGE_SIZE {
            return Err(Error::invalid("page.limit", format!("must be 1..={MAX_PAGE_SIZE}, got {}", self.limit)));
        }
        if self.cursor.as_ref().is_some_and(|c| c.len() > 128) {
            return Err(Error::invalid("page.cursor", "longer than 128 bytes"));
        }
        Ok(())
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::first(100)
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` when this is the last one.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched items: the extra one only says there is more.
    pub fn from_overfetch(mut items: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next = if more { items.last().map(cursor_of) } else { None };
        Page { items, next }
    }
}
