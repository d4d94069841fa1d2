//! Scripted HTTP for native tests: answers by URL prefix, records every request.

use std::cell::RefCell;
use std::rc::Rc;

use crate::host::http::{HttpError, Response};

/// One request the plugin sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRequest {
    /// Method.
    pub method: String,
    /// Absolute URL.
    pub url: String,
    /// Body.
    pub body: Vec<u8>,
}

#[derive(Default)]
struct State {
    answers: Vec<(String, Result<Response, HttpError>)>,
    sent: Vec<SentRequest>,
}

/// The scripted endpoints; clones share state. A request is answered by the
/// first rule whose URL prefix matches; an unmatched request fails as the real
/// host fails a request to an endpoint it was not granted.
#[derive(Clone, Default)]
pub struct FakeHttp {
    state: Rc<RefCell<State>>,
}

impl std::fmt::Debug for FakeHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHttp")
            .field("sent", &self.state.borrow().sent.len())
            .finish()
    }
}

impl FakeHttp {
    /// Answer requests whose URL starts with `prefix` with `status` and `body`.
    pub fn answer(&self, prefix: &str, status: u16, body: &str) {
        let response = Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        self.state
            .borrow_mut()
            .answers
            .push((prefix.to_owned(), Ok(response)));
    }

    /// Fail requests whose URL starts with `prefix`.
    pub fn fail(&self, prefix: &str, message: &str) {
        self.state
            .borrow_mut()
            .answers
            .push((prefix.to_owned(), Err(HttpError(message.to_owned()))));
    }

    /// Every request sent so far.
    pub fn sent(&self) -> Vec<SentRequest> {
        self.state.borrow().sent.clone()
    }

    pub(crate) fn request(
        &self,
        method: &str,
        url: &str,
        _headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let mut state = self.state.borrow_mut();
        state.sent.push(SentRequest {
            method: method.to_owned(),
            url: url.to_owned(),
            body: body.to_vec(),
        });
        state
            .answers
            .iter()
            .find(|(prefix, _)| url.starts_with(prefix.as_str()))
            .map(|(_, answer)| answer.clone())
            .unwrap_or_else(|| {
                Err(HttpError(format!(
                    "HTTP request denied (fake host: no scripted answer for {url})"
                )))
            })
    }
}
