//! Reading HTTP answer bodies under a size limit, without buffering more than the limit (shared by
//! the scraper, the EMQX poller, and ecp-cluster's EMQX client).

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// It is (at least) this many bytes, over the limit.
    TooLarge(usize),
    /// The transport failed while reading.
    Transport(reqwest::Error),
}

/// The whole body, refused as soon as it is known to exceed `limit` bytes (from its
/// `Content-Length`, or while streaming).
pub async fn read_limited(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if let Some(len) = response.content_length().and_then(|l| usize::try_from(l).ok()).filter(|l| *l > limit) {
        return Err(BodyError::TooLarge(len));
    }
    let mut body = Vec::with_capacity(response.content_length().map_or(0, |l| l.min(64 * 1024) as usize));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(body.len() + chunk.len()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
