//! Health service wiring: `grpc.health.v1.Health/Watch` streams never end on their own, so
//! an open watcher would hold a graceful shutdown for the whole drain timeout. Here every
//! health response ends with UNAVAILABLE once the shutdown token fires (after watchers
//! have been sent NOT_SERVING).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame};
use pin_project_lite::pin_project;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::body::Body;
use tonic::server::NamedService;

/// A health service whose responses end when `token` is cancelled.
#[derive(Clone)]
pub(crate) struct UntilShutdown<S> {
    inner: S,
    token: CancellationToken,
}

impl<S> UntilShutdown<S> {
    pub(crate) fn new(inner: S, token: CancellationToken) -> UntilShutdown<S> {
        UntilShutdown { inner, token }
    }
}

impl<S: NamedService> NamedService for UntilShutdown<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for UntilShutdown<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let token = self.token.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Body::new(EndOnCancel::new(body, token))))
        })
    }
}

pin_project! {
    /// A response body that ends with UNAVAILABLE trailers once its token is cancelled.
    struct EndOnCancel<B> {
        #[pin]
        inner: B,
        #[pin]
        cancelled: WaitForCancellationFutureOwned,
        done: bool,
    }
}

impl<B> EndOnCancel<B> {
    fn new(inner: B, token: CancellationToken) -> EndOnCancel<B> {
        EndOnCancel {
            inner,
            cancelled: token.cancelled_owned(),
            done: false,
        }
    }
}

impl<B: HttpBody> HttpBody for EndOnCancel<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        // What the service already has to say goes out first.
        match this.inner.poll_frame(cx) {
            Poll::Ready(None) => {
                *this.done = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(frame)) => return Poll::Ready(Some(frame)),
            Poll::Pending => {}
        }
        if this.cancelled.poll(cx).is_ready() {
            *this.done = true;
            let status = tonic::Status::unavailable("the server is shutting down; reconnect");
            let mut trailers = http::HeaderMap::new();
            if status.add_header(&mut trailers).is_ok() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}
