//! Requests that never reach a handler get the contract's codes.
//!
//! tonic refuses a request body that does not decode (invalid UTF-8 in a string, a
//! truncated or garbled message) with INTERNAL, and one over the size limit with
//! OUT_OF_RANGE, before any service code runs. The contract says INVALID_ARGUMENT for the
//! first and RESOURCE_EXHAUSTED for the second, with the usual `ErrorInfo`; this layer
//! rewrites those two answers, and only those, in one place for every service.
//!
//! Oversized headers are refused here too, with RESOURCE_EXHAUSTED: the server advertises
//! a generous HTTP/2 header list limit ([`ADVERTISED_HEADER_LIST_BYTES`]) so that clients
//! send an oversized request instead of failing on their side with a transport error,
//! and this layer answers it properly when it is over [`MAX_REQUEST_HEADER_BYTES`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::errors::{limit_exceeded, status};

/// Largest header list a request may carry (HTTP/2 accounting: name + value + 32 per field).
pub const MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;
/// Header list size the server advertises to clients, above [`MAX_REQUEST_HEADER_BYTES`].
pub const ADVERTISED_HEADER_LIST_BYTES: u32 = 1024 * 1024;

/// The size of `headers` as HTTP/2 counts it against SETTINGS_MAX_HEADER_LIST_SIZE.
fn header_list_bytes(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum()
}

/// What prost says when a message does not decode (its `DecodeError` display).
const DECODE_FAILURE: &str = "failed to decode Protobuf message";
/// What tonic says when a message is over the receive limit.
const TOO_LARGE: &str = "decoded message length too large";

/// The contract's status for a status tonic produced before the handler, if it is one of
/// the two this layer rewrites.
pub fn contract_status(produced: &Status) -> Option<Status> {
    match produced.code() {
        Code::Internal if produced.message().starts_with(DECODE_FAILURE) => Some(status(
            Code::InvalidArgument,
            format!(
                "malformed request: the body is not a valid message for this method ({})",
                produced
                    .message()
                    .trim_start_matches(DECODE_FAILURE)
                    .trim_start_matches(": ")
            ),
            "INVALID_ARGUMENT",
        )),
        Code::OutOfRange if produced.message().contains(TOO_LARGE) => Some(limit_exceeded(
            format!(
                "request too large: {}",
                produced
                    .message()
                    .split_once(": ")
                    .map_or(produced.message(), |(_, rest)| rest)
            ),
            None,
        )),
        _ => None,
    }
}

/// Rewrites tonic's pre-handler refusals to the contract's codes; see the module doc.
#[derive(Clone, Copy, Debug, Default)]
pub struct MalformedRequestLayer;

impl<S> Layer<S> for MalformedRequestLayer {
    type Service = MalformedRequest<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MalformedRequest { inner }
    }
}

/// The service of [`MalformedRequestLayer`].
#[derive(Clone, Debug)]
pub struct MalformedRequest<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for MalformedRequest<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let size = header_list_bytes(request.headers());
        if size > MAX_REQUEST_HEADER_BYTES {
            let refusal = limit_exceeded(
                format!(
                    "request headers too large: {size} bytes, the limit is {MAX_REQUEST_HEADER_BYTES} bytes"
                ),
                None,
            );
            return Box::pin(async move { Ok(refusal.into_http()) });
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            // Refusals before the handler are trailers-only: the status is in the headers.
            if let Some(replacement) =
                Status::from_header_map(response.headers()).and_then(|s| contract_status(&s))
            {
                for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
                    response.headers_mut().remove(name);
                }
                if let Err(err) = replacement.add_header(response.headers_mut()) {
                    tracing::error!(error = %err, "cannot write a rewritten status");
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn decode_failures_are_invalid_argument() {
        let produced = Status::internal(
            "failed to decode Protobuf message: SendMessageRequest.text: invalid string value: data is not UTF-8 encoded",
        );
        let st = contract_status(&produced).unwrap();
        assert_eq!(st.code(), Code::InvalidArgument);
        assert!(st.message().contains("data is not UTF-8 encoded"), "{st:?}");
        assert_eq!(
            st.get_details_error_info().unwrap().reason,
            "INVALID_ARGUMENT"
        );
    }

    #[test]
    fn oversized_requests_are_resource_exhausted_without_retry() {
        let produced = Status::out_of_range(
            "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
        );
        let st = contract_status(&produced).unwrap();
        assert_eq!(st.code(), Code::ResourceExhausted);
        assert!(
            st.message()
                .starts_with("request too large: found 5000000 bytes")
        );
        assert_eq!(
            st.get_details_error_info().unwrap().reason,
            "LIMIT_EXCEEDED"
        );
        assert!(st.get_details_retry_info().is_none());
    }

    #[test]
    fn header_lists_are_counted_as_http2_does() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-a", http::HeaderValue::from_static("bc"));
        assert_eq!(header_list_bytes(&headers), 3 + 2 + 32);
    }

    #[test]
    fn other_statuses_are_left_alone() {
        assert!(contract_status(&Status::internal("internal error")).is_none());
        assert!(contract_status(&Status::out_of_range("page 9 of 3")).is_none());
        assert!(contract_status(&Status::not_found("failed to decode Protobuf message")).is_none());
    }
}
