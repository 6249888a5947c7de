//! The response body the gateway hands to clients: the answering service's frames, passed
//! through untouched, ended with proper gRPC trailers when something goes wrong midway.

use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::Status;

pin_project! {
    /// Passes the frames of `inner` through, and ends the stream with trailers instead of
    /// an HTTP/2 reset when:
    /// - the deadline passes: DEADLINE_EXCEEDED;
    /// - the gateway shuts down (streaming calls only): UNAVAILABLE, so the client
    ///   reconnects elsewhere;
    /// - the service's stream fails or ends without a status: UNAVAILABLE.
    pub struct GuardedBody<B> {
        #[pin]
        inner: B,
        deadline: Option<Pin<Box<Sleep>>>,
        shutdown: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
        // False when the status already came in the response headers (trailers-only).
        expects_trailers: bool,
        source: &'static str,
        done: bool,
    }
}

impl<B> GuardedBody<B> {
    /// Guards `inner`, which comes from `source` (for logs).
    pub fn new(
        inner: B,
        source: &'static str,
        deadline: Option<tokio::time::Instant>,
        shutdown: Option<WaitForCancellationFutureOwned>,
        expects_trailers: bool,
    ) -> GuardedBody<B> {
        GuardedBody {
            inner,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            shutdown: shutdown.map(Box::pin),
            expects_trailers,
            source,
            done: false,
        }
    }
}

/// The trailers frame that ends a stream with `status`.
pub fn status_trailers(status: &Status) -> Frame<Bytes> {
    let mut trailers = HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        trailers.insert("grpc-status", (status.code() as i32).into());
    }
    Frame::trailers(trailers)
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Display,
{
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            *this.done = true;
            let status = Status::deadline_exceeded("deadline exceeded");
            return Poll::Ready(Some(Ok(status_trailers(&status))));
        }
        if let Some(shutdown) = this.shutdown.as_mut()
            && shutdown.as_mut().poll(cx).is_ready()
        {
            *this.done = true;
            let status = Status::unavailable("the gateway is shutting down; reconnect");
            return Poll::Ready(Some(Ok(status_trailers(&status))));
        }
        let frame = match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if frame.is_trailers() {
                    *this.done = true;
                }
                frame
            }
            Some(Err(err)) => {
                *this.done = true;
                tracing::warn!(upstream = *this.source, error = %err, "response stream failed");
                let status = Status::unavailable(format!("{} stream failed", this.source));
                status_trailers(&status)
            }
            None => {
                *this.done = true;
                if !*this.expects_trailers {
                    return Poll::Ready(None);
                }
                tracing::warn!(
                    upstream = *this.source,
                    "response stream ended without a status"
                );
                let status = Status::unavailable(format!(
                    "{} ended the stream without a status",
                    this.source
                ));
                status_trailers(&status)
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done || (!self.expects_trailers && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::stream;
    use http_body_util::{BodyExt as _, StreamBody};

    use super::*;

    type Frames = Vec<Result<Frame<Bytes>, String>>;

    async fn collect<B>(body: GuardedBody<B>) -> (Vec<Bytes>, Option<HeaderMap>)
    where
        B: Body<Data = Bytes>,
        B::Error: Display,
    {
        let mut body = std::pin::pin!(body);
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            match frame.into_data() {
                Ok(bytes) => data.push(bytes),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        (data, trailers)
    }

    fn ok_trailers() -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", 0.into());
        map
    }

    type FrameStream = stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, String>>>;

    fn body(frames: Frames) -> StreamBody<FrameStream> {
        StreamBody::new(stream::iter(frames))
    }

    #[tokio::test]
    async fn frames_pass_through_unchanged() {
        let frames: Frames = vec![
            Ok(Frame::data(Bytes::from_static(b"one"))),
            Ok(Frame::data(Bytes::from_static(b"two"))),
            Ok(Frame::trailers(ok_trailers())),
        ];
        let (data, trailers) =
            collect(GuardedBody::new(body(frames), "svc", None, None, true)).await;
        assert_eq!(
            data,
            vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]
        );
        assert_eq!(trailers.unwrap()["grpc-status"], "0");
    }

    #[tokio::test]
    async fn a_failed_stream_ends_with_unavailable() {
        let frames: Frames = vec![
            Ok(Frame::data(Bytes::from_static(b"one"))),
            Err("connection reset".to_owned()),
        ];
        let (data, trailers) =
            collect(GuardedBody::new(body(frames), "svc", None, None, true)).await;
        assert_eq!(data.len(), 1);
        assert_eq!(trailers.unwrap()["grpc-status"], "14");
    }

    #[tokio::test]
    async fn a_stream_without_status_ends_with_unavailable_unless_headers_had_it() {
        let frames: Frames = vec![Ok(Frame::data(Bytes::from_static(b"one")))];
        let (_, trailers) = collect(GuardedBody::new(body(frames), "svc", None, None, true)).await;
        assert_eq!(trailers.unwrap()["grpc-status"], "14");
        let (_, trailers) =
            collect(GuardedBody::new(body(Vec::new()), "svc", None, None, false)).await;
        assert!(trailers.is_none());
    }

    #[tokio::test]
    async fn the_deadline_ends_a_stuck_stream() {
        let stuck = StreamBody::new(stream::pending::<Result<Frame<Bytes>, String>>());
        let at = tokio::time::Instant::now() + Duration::from_millis(50);
        let (_, trailers) = collect(GuardedBody::new(stuck, "svc", Some(at), None, true)).await;
        assert_eq!(trailers.unwrap()["grpc-status"], "4");
    }

    #[tokio::test]
    async fn shutdown_ends_a_stream() {
        let token = tokio_util::sync::CancellationToken::new();
        let stuck = StreamBody::new(stream::pending::<Result<Frame<Bytes>, String>>());
        let guarded = GuardedBody::new(
            stuck,
            "svc",
            None,
            Some(token.clone().cancelled_owned()),
            true,
        );
        token.cancel();
        let (_, trailers) = collect(guarded).await;
        assert_eq!(trailers.unwrap()["grpc-status"], "14");
    }
}
