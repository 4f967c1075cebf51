//! The HTTP tunnel: a hub's `http` command sent to an allow-listed local service, on its own origin.

use bytes::Bytes;
use ecp_agent_proto::proto::{self, ErrorCode, HttpRequest, HttpResponse, Reply};
use ecp_edge_api::EdgeTransport;
use serde_json::Value;

use crate::{agent::*, commands::*};

/// The longest tunnelled path accepted.
pub(crate) const MAX_PATH_LEN: usize = 8192;

/// Checks a tunnelled path: one leading `/`, no `\`, `#`, whitespace or control characters.
pub(crate) fn check_path(path: &str) -> std::result::Result<(), &'static str> {
    if !path.starts_with('/') || path.starts_with("//") {
        return Err("the path must start with a single '/'");
    }
    if path.len() > MAX_PATH_LEN {
        return Err("the path is too long");
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\' || c == '#') {
        return Err("the path must not hold '\\', '#', whitespace or control characters");
    }
    Ok(())
}

/// Headers a tunnel never forwards: the connection's own, and the host.
pub(crate) fn hop_by_hop(name: &http::HeaderName) -> bool {
    use http::header::*;
    [HOST, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, TE, TRAILER, UPGRADE, PROXY_AUTHORIZATION, PROXY_AUTHENTICATE].contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

impl Core {
    pub(crate) async fn http(&self, req: HttpRequest) -> Reply {
        let Some(service) = self.service(&req.target) else {
            return Self::forbidden(&req.target);
        };
        if let Err(why) = check_path(&req.path) {
            return reply_error(ErrorCode::BadRequest, why);
        }
        // Belt and braces: the URL the transport will make must stay on the target.
        let stays = url::Url::parse(&format!("{}{}", service.http.base_url(), req.path))
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .is_some_and(|a| a == req.target);
        if !stays {
            return reply_error(ErrorCode::BadRequest, "the path would leave the target");
        }
        let Ok(method) = http::Method::from_bytes(req.method.as_bytes()) else {
            return reply_error(ErrorCode::BadRequest, format!("{:?} is not an HTTP method", shown(&req.method)));
        };
        let body = match req.body.as_deref().map(proto::decode_body).transpose() {
            Ok(b) => Bytes::from(b.unwrap_or_default()),
            Err(e) => return reply_error(ErrorCode::BadRequest, format!("the body is not base64: {e}")),
        };
        let mut builder = http::Request::builder().method(method).uri(req.path.as_str());
        for (name, value) in &req.headers {
            let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) else {
                return reply_error(ErrorCode::BadRequest, format!("{:?} is not a header name", shown(name)));
            };
            let Ok(value) = http::HeaderValue::from_str(value) else {
                return reply_error(ErrorCode::BadRequest, format!("the value of {name} is not a header value"));
            };
            if !hop_by_hop(&name) {
                builder = builder.header(name, value);
            }
        }
        let request = match builder.body(body) {
            Ok(r) => r,
            Err(e) => return reply_error(ErrorCode::BadRequest, format!("not a valid request: {e}")),
        };
        match service.http.send(request).await {
            Ok(response) => {
                let headers =
                    response.headers().iter().filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_owned(), v.to_owned()))).collect();
                let answer = HttpResponse { status: response.status().as_u16(), headers, body: proto::encode_body(response.body()) };
                Reply::Ok { result: serde_json::to_value(answer).unwrap_or(Value::Null) }
            }
            Err(ecp_edge_api::Error::TooLarge { size, limit, .. }) => reply_error(
                ErrorCode::TooLarge,
                format!("the answer's body ({size} bytes or more) exceeds the payload limit of {limit} bytes"),
            ),
            Err(e @ ecp_edge_api::Error::Transport { .. }) => reply_error(ErrorCode::Unreachable, error_text(&e)),
            Err(e) => reply_error(ErrorCode::Failed, error_text(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_on_the_target() {
        for good in ["/", "/api/version?x=1", "/a@b/c", "/%2F%2Fevil"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in ["", "x", "//evil.example/x", "@evil/x", "/a\\b", "/a b", "/a\nb", "/a#f", "http://evil/"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
