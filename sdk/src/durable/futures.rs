//! The futures an orchestrator awaits: tasks, timers, external events, and their combinators.
//!
//! None of them ever registers a waker: the executor polls the orchestrator after each
//! history event, and only history events make progress.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;

use super::context::OrchestrationContext;
use super::error::TaskError;
use super::state::Outcome;
use crate::bindings::fnhost::function::durable_types::Failure;

/// A boxed orchestration-side future, for tasks built from other tasks (retries).
type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// An activity or sub-orchestration call: resolves to its output as `R`, or why it failed.
///
/// The call is scheduled when it is made, not when first awaited, so tasks created in
/// a row and then awaited together get their sequence ids in the order they were made.
#[must_use = "a task does nothing for the orchestrator unless awaited"]
pub struct Task<R> {
    inner: TaskInner<R>,
}

enum TaskInner<R> {
    Scheduled {
        ctx: OrchestrationContext,
        id: u32,
        /// "activity 'A'", for messages.
        what: String,
    },
    /// Failed before it could be scheduled (its input could not be serialized).
    Failed(Option<TaskError>),
    Composite(LocalBoxFuture<Result<R, TaskError>>),
}

impl<R> Task<R> {
    pub(crate) fn scheduled(ctx: OrchestrationContext, id: u32, what: String) -> Self {
        Self {
            inner: TaskInner::Scheduled { ctx, id, what },
        }
    }

    pub(crate) fn failed(error: TaskError) -> Self {
        Self {
            inner: TaskInner::Failed(Some(error)),
        }
    }

    pub(crate) fn composite(future: impl Future<Output = Result<R, TaskError>> + 'static) -> Self {
        Self {
            inner: TaskInner::Composite(Box::pin(future)),
        }
    }
}

impl<R: DeserializeOwned> Future for Task<R> {
    type Output = Result<R, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            TaskInner::Scheduled { ctx, id, what } => {
                let outcome = ctx.state().take_outcome(*id);
                match outcome {
                    None => Poll::Pending,
                    Some(Outcome::Completed(output)) => {
                        Poll::Ready(super::decode(output.as_deref()).map_err(|e| {
                            TaskError::new(
                                "InvalidOutput",
                                format!(
                                    "{what} (event {id}) returned JSON that does not fit the \
                                     type the orchestrator asked for: {e}"
                                ),
                            )
                        }))
                    }
                    Some(Outcome::Failed(failure)) => Poll::Ready(Err(failure.into())),
                    Some(Outcome::Fired) => {
                        ctx.state()
                            .fail(wrong_completion(*id, what, "a timer-fired"));
                        Poll::Pending
                    }
                }
            }
            TaskInner::Failed(error) => match error.take() {
                Some(error) => Poll::Ready(Err(error)),
                None => Poll::Pending,
            },
            TaskInner::Composite(future) => future.as_mut().poll(cx),
        }
    }
}

/// A durable timer: resolves when the history says it fired. Dropping it abandons it.
#[must_use = "a timer does nothing for the orchestrator unless awaited"]
pub struct Timer {
    ctx: OrchestrationContext,
    id: u32,
}

impl Timer {
    pub(crate) fn new(ctx: OrchestrationContext, id: u32) -> Self {
        Self { ctx, id }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        let outcome = self.ctx.state().take_outcome(self.id);
        match outcome {
            None => Poll::Pending,
            Some(Outcome::Fired) => Poll::Ready(()),
            Some(_) => {
                let failure = wrong_completion(self.id, "timer", "a task completion");
                self.ctx.state().fail(failure);
                Poll::Pending
            }
        }
    }
}

fn wrong_completion(id: u32, what: &str, got: &str) -> Failure {
    Failure {
        error_type: "InvalidHistory".into(),
        message: format!(
            "event {id} is a {what}, but the history completes it with {got}: the host must \
             complete each sequence id with the event of its kind"
        ),
        details: None,
    }
}

/// Waiting for an external event: resolves to its data as `R`. Dropping it before it
/// resolves gives up the wait, and the event goes to the next waiter.
#[must_use = "waiting does nothing for the orchestrator unless awaited"]
pub struct ExternalEvent<R> {
    ctx: OrchestrationContext,
    name: String,
    waiter: u64,
    done: bool,
    _output: PhantomData<fn() -> R>,
}

impl<R> ExternalEvent<R> {
    pub(crate) fn new(ctx: OrchestrationContext, name: String, waiter: u64) -> Self {
        Self {
            ctx,
            name,
            waiter,
            done: false,
            _output: PhantomData,
        }
    }
}

impl<R: DeserializeOwned> Future for ExternalEvent<R> {
    type Output = Result<R, TaskError>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(data) = this.ctx.state().events.take(this.waiter) else {
            return Poll::Pending;
        };
        this.done = true;
        Poll::Ready(super::decode(data.as_deref()).map_err(|e| {
            TaskError::new(
                "InvalidEventData",
                format!(
                    "external event '{}' carried data that does not fit the type the \
                     orchestrator asked for: {e}",
                    this.name
                ),
            )
        }))
    }
}

impl<R> Drop for ExternalEvent<R> {
    fn drop(&mut self) {
        // The executor drops the orchestrator only while it holds no borrow, but a
        // failed borrow must not turn a drop into a panic.
        if !self.done
            && let Ok(mut state) = self.ctx.inner.state.try_borrow_mut()
        {
            state.events.cancel(&self.name, self.waiter);
        }
    }
}

/// Resolves when every future has, to their outputs in the order given.
#[must_use = "futures do nothing unless awaited"]
pub struct WhenAll<F: Future> {
    pending: Vec<Option<Pin<Box<F>>>>,
    outputs: Vec<Option<F::Output>>,
}

impl<F: Future> WhenAll<F> {
    pub(crate) fn new(futures: impl IntoIterator<Item = F>) -> Self {
        let pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
        let outputs = pending.iter().map(|_| None).collect();
        Self { pending, outputs }
    }
}

// The futures are boxed, never pinned in place.
impl<F: Future> Unpin for WhenAll<F> {}

impl<F: Future> Future for WhenAll<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        for (slot, output) in this.pending.iter_mut().zip(&mut this.outputs) {
            if let Some(future) = slot
                && let Poll::Ready(value) = future.as_mut().poll(cx)
            {
                *output = Some(value);
                *slot = None;
            }
        }
        if this.pending.iter().any(Option::is_some) {
            return Poll::Pending;
        }
        Poll::Ready(this.outputs.iter_mut().filter_map(Option::take).collect())
    }
}

/// Resolves when the first of its futures does, to its index and output; the others
/// are dropped with it.
#[must_use = "futures do nothing unless awaited"]
pub struct WhenAny<F> {
    futures: Vec<Pin<Box<F>>>,
}

impl<F: Future> WhenAny<F> {
    pub(crate) fn new(futures: impl IntoIterator<Item = F>) -> Self {
        let futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
        assert!(
            !futures.is_empty(),
            "when_any needs at least one future: with none it would never resolve"
        );
        Self { futures }
    }
}

impl<F> Unpin for WhenAny<F> {}

impl<F: Future> Future for WhenAny<F> {
    type Output = (usize, F::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        for (i, future) in self.get_mut().futures.iter_mut().enumerate() {
            if let Poll::Ready(value) = future.as_mut().poll(cx) {
                return Poll::Ready((i, value));
            }
        }
        Poll::Pending
    }
}

/// The output of a [`Race`]: which of the two futures finished first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first future won.
    Left(A),
    /// The second future won.
    Right(B),
}

/// Two futures of different types racing: resolves with the first one's output. If
/// both are ready at once the first future wins.
#[must_use = "futures do nothing unless awaited"]
pub struct Race<A, B> {
    left: Pin<Box<A>>,
    right: Pin<Box<B>>,
}

impl<A, B> Race<A, B> {
    pub(crate) fn new(left: A, right: B) -> Self {
        Self {
            left: Box::pin(left),
            right: Box::pin(right),
        }
    }
}

impl<A, B> Unpin for Race<A, B> {}

impl<A: Future, B: Future> Future for Race<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(a) = this.left.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(a));
        }
        this.right.as_mut().poll(cx).map(Either::Right)
    }
}
