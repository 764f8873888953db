//! Outbound HTTP (`wasi:http/outgoing-handler`): a request goes out only to an
//! origin of the folder's `allowedOutboundHosts`, never from an orchestrator,
//! and never past the invocation's deadline; response bodies are capped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::AllowedHosts;

/// Who may send what: one per store.
pub(super) struct Outbound {
    /// `None` for an orchestrator: replay must see the same world every time.
    allowed: Option<Arc<AllowedHosts>>,
    function: Arc<str>,
    invocation: Arc<str>,
    /// The invocation's deadline (functionTimeout): connecting, waiting and
    /// reading the body all end there.
    deadline: Instant,
    /// Largest response body, in bytes.
    max_body: u64,
}

/// A response to send back to the guest: the body and the connection's driver.
type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

impl Outbound {
    pub(super) fn new(
        allowed: Option<Arc<AllowedHosts>>,
        invocation: &super::Invocation,
        deadline: Instant,
        max_body: u64,
    ) -> Self {
        Outbound {
            allowed,
            function: invocation.function.clone(),
            invocation: invocation.id.clone(),
            deadline,
            max_body,
        }
    }

    /// Why `uri` may not be called, for the console; `None` when it may.
    fn refusal(&self, uri: &http::Uri) -> Option<String> {
        let Some(allowed) = &self.allowed else {
            return Some(
                "orchestrators have no outbound I/O (replay must be deterministic); call an \
                 activity that makes the request"
                    .into(),
            );
        };
        let scheme = uri.scheme_str().unwrap_or("https");
        let host = uri.host().unwrap_or("");
        if allowed.allows(scheme, host, uri.port_u16()) {
            None
        } else {
            Some(format!(
                "its origin is not in allowedOutboundHosts {allowed} of the folder's function.toml"
            ))
        }
    }
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<Sent, Error>> + Send> {
        if let Some(why) = self.refusal(request.uri()) {
            // The query may carry secrets: the console gets origin and path only.
            let uri = request.uri();
            let shown = format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("https"),
                uri.authority().map_or("", |a| a.as_str()),
                uri.path()
            );
            tracing::warn!(
                "Outbound HTTP request of 'Functions.{}' (Id={}) to {shown} refused: {why}",
                self.function,
                self.invocation
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let max_body = self.max_body;
        Box::new(async move {
            let sent = tokio::time::timeout_at(
                deadline,
                wasmtime_wasi_http::default_send_request(request, options),
            )
            .await;
            let (response, io) = sent.map_err(|_| Error::ConnectionTimeout)??;
            // A declared length over the cap fails at once, with an error code the
            // guest can read; an undeclared one fails in the body (`Capped`).
            let length = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if let Some(length) = length.filter(|n| *n > max_body) {
                return Err(Error::HttpResponseBodySize(Some(length)));
            }
            let response = response.map(|body| {
                Capped {
                    body: body.boxed_unsync(),
                    left: max_body,
                    max_body,
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                }
                .boxed_unsync()
            });
            Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// A response body that fails past `max_body` bytes or at the deadline.
struct Capped {
    body: WasiBody,
    left: u64,
    max_body: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Error::HttpResponseTimeout)));
        }
        let frame = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            if n > self.left {
                return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(self.max_body)))));
            }
            self.left -= n;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}
