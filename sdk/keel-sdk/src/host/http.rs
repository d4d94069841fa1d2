//! Outgoing HTTP to the plugin's own store (DCS plugins only): Consul, the
//! Kubernetes API, etcd's JSON gateway.
//!
//! The host lets a request through only when its scheme, host and port are
//! those of an endpoint in the plugin's config section; anything else fails with
//! "HTTP request denied" before a connection is made. Calls block the plugin
//! (not the daemon) until the whole response has arrived.

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, in the order received; values lossily decoded as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a request failed (denied, unreachable, malformed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// Send a request and wait for the whole response.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    #[cfg(target_arch = "wasm32")]
    return wasi::request(method, url, headers, body);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::testing::current()
        .http()
        .request(method, url, headers, body);
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, HttpError> {
    request("GET", url, &[], &[])
}

#[cfg(target_arch = "wasm32")]
mod wasi {
    use super::{HttpError, Response};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasip2::io::streams::StreamError;

    fn err(context: &str, detail: impl std::fmt::Debug) -> HttpError {
        HttpError(format!("{context}: {detail:?}"))
    }

    fn method(name: &str) -> Method {
        match name.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }

    pub(super) fn request(
        verb: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| HttpError(format!("{url:?} is not an absolute http(s) URL")))?;
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(HttpError(format!("unsupported scheme {other:?}"))),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let entries: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect();
        let fields = Fields::from_list(&entries).map_err(|e| err("headers", e))?;
        let request = OutgoingRequest::new(fields);
        request
            .set_method(&method(verb))
            .map_err(|e| err("method", e))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|e| err("scheme", e))?;
        request
            .set_authority(Some(authority))
            .map_err(|e| err("authority", e))?;
        request
            .set_path_with_query(Some(path))
            .map_err(|e| err("path", e))?;
        let outgoing = request.body().map_err(|e| err("body", e))?;
        {
            let stream = outgoing.write().map_err(|e| err("body stream", e))?;
            for chunk in body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| err("writing the body", e))?;
            }
        }
        OutgoingBody::finish(outgoing, None).map_err(|e| err("finishing the body", e))?;
        let pending = outgoing_handler::handle(request, None).map_err(|e| err("request", e))?;
        pending.subscribe().block();
        let response = pending
            .get()
            .ok_or_else(|| HttpError("response not ready after waiting".into()))?
            .map_err(|e| err("response", e))?
            .map_err(|e| err("request failed", e))?;
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response.consume().map_err(|e| err("response body", e))?;
        let mut body = Vec::new();
        {
            let stream = incoming.stream().map_err(|e| err("response stream", e))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(e) => return Err(err("reading the response", e)),
                }
            }
        }
        let _trailers = IncomingBody::finish(incoming);
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
