//! The one way this tool writes under optimistic concurrency.
//!
//! Every write is guarded (a `test` of the resourceVersion, or a server-side apply with one), so
//! a concurrent change makes the API server refuse it: 409 Conflict for a stale
//! resourceVersion, 422 for a failed JSON Patch `test`. The caller's attempt then re-reads,
//! re-plans and goes ahead only if the plan is the one the user confirmed; this module only
//! bounds the attempts and spaces them with jittered exponential backoff, so writers that
//! collide (the deployment controller writes status right after an annotation change) do not
//! collide again in lockstep.

use std::future::Future;
use std::time::Duration;

use backon::BackoffBuilder;

use crate::error::{Error, Result, api_code};

/// Writes tried before giving up with [`Error::Conflict`].
pub const MAX_ATTEMPTS: u32 = 5;

/// How one attempt ended.
pub enum Attempt<T> {
    Done(T),
    /// The server refused a stale write; nothing was changed by this attempt.
    Conflict,
}

/// Whether the server refused a write because the object moved under it.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(api_code(error), Some(409 | 422))
}

/// Runs `attempt(1)`, `attempt(2)`, ... until one is done, at most [`MAX_ATTEMPTS`] times.
/// After the last conflict: [`Error::Conflict`] saying that `what` kept changing and nothing
/// was changed.
pub async fn on_conflict<T, F, Fut>(what: &str, attempt: F) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Attempt<T>>>,
{
    on_conflict_within(MAX_ATTEMPTS, attempt, || {
        format!(
            "{what} kept changing; gave up after {MAX_ATTEMPTS} attempts and nothing was changed: re-run to review the new diff"
        )
    })
    .await
}

/// [`on_conflict`] for a write with its own bound: at most `attempts` attempts (at least one),
/// then [`Error::Conflict`] with `gave_up()`, which says what was, or was not, changed.
pub async fn on_conflict_within<T, F, Fut>(attempts: u32, mut attempt: F, gave_up: impl FnOnce() -> String) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Attempt<T>>>,
{
    let attempts = attempts.max(1);
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter()
        .with_max_times(attempts as usize)
        .build();
    for number in 1..=attempts {
        if let Attempt::Done(value) = attempt(number).await? {
            return Ok(value);
        }
        if number < attempts {
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(1))).await;
        }
    }
    Err(Error::Conflict(gave_up()))
}

/// How long a read-only command waits out an unreachable API server (a restart, a failover)
/// before giving up with exit 6.
pub const UNREACHABLE_PATIENCE: Duration = Duration::from_secs(20);

/// Runs a read `attempt` again while the API server cannot be reached, with jittered
/// exponential backoff, for at most [`UNREACHABLE_PATIENCE`]; any other error ends it at once.
/// Only for reads: a write that may have reached the server is never blindly repeated.
pub async fn while_unreachable<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .with_total_delay(Some(UNREACHABLE_PATIENCE))
        .without_max_times()
        .build();
    loop {
        match attempt().await {
            Err(error) if error.is_transient() => match delays.next() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(error),
            },
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitStatus;

    #[tokio::test(start_paused = true)]
    async fn retries_conflicts_then_gives_up_with_a_conflict() {
        let mut tries = 0;
        let error = on_conflict("deploy/web", |_| {
            tries += 1;
            async { Ok(Attempt::<()>::Conflict) }
        })
        .await
        .unwrap_err();
        assert_eq!(tries, MAX_ATTEMPTS);
        assert_eq!(error.exit_status(), ExitStatus::Conflict);
        assert!(error.to_string().contains("deploy/web kept changing"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_first_attempt_that_is_done_or_fails() {
        let done = on_conflict("x", |n| async move { Ok(if n == 3 { Attempt::Done(n) } else { Attempt::Conflict }) });
        assert_eq!(done.await.unwrap(), 3);
        let failed = on_conflict("x", |_| async { Err::<Attempt<()>, _>(Error::Usage("no".into())) }).await;
        assert!(matches!(failed, Err(Error::Usage(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_with_its_own_bound_tries_that_often_and_says_what_it_was_told() {
        let mut tries = 0;
        let error = on_conflict_within(
            8,
            |_| {
                tries += 1;
                async { Ok(Attempt::<()>::Conflict) }
            },
            || "the policy kept changing; nothing more was changed".into(),
        )
        .await
        .unwrap_err();
        assert_eq!(tries, 8);
        assert_eq!(error.exit_status(), ExitStatus::Conflict);
        assert_eq!(error.to_string(), "the policy kept changing; nothing more was changed");
    }
}
