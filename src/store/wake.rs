//! Waiting for a wake-up: the one helper behind every wait that another instance
//! may end early by a message on the store's `Wake` channel — the fleet-lease wait
//! of a cache fill (through the cache's notifier) and the lock wait of
//! `POST /v1/locks` (`waitMs`). A wait always ends by `nap` at the latest, so a
//! missed message costs one nap, never a hang.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::{Channel, StoreEvent};

/// Returns when `woken` completes or after `nap`, whichever is first.
pub async fn wait_for_wake(woken: impl Future<Output = ()>, nap: Duration) {
    tokio::select! {
        _ = woken => {}
        _ = tokio::time::sleep(nap) => {}
    }
}

/// Completes when `payload` is announced on the `Wake` channel, or when a message may
/// have been missed (the receiver lagged, or the subscription was restored); never
/// once the store's events have ended (then only a nap ends the wait).
pub async fn announced(events: &mut broadcast::Receiver<StoreEvent>, payload: &Bytes) {
    loop {
        match events.recv().await {
            Ok(StoreEvent::Message {
                channel: Channel::Wake,
                payload: p,
            }) if p == *payload => return,
            Ok(StoreEvent::SubscriptionRestored) => return,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn wake(payload: &'static [u8]) -> StoreEvent {
        StoreEvent::Message {
            channel: Channel::Wake,
            payload: Bytes::from_static(payload),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_on_its_own_wake_up_and_not_on_others() {
        let (tx, mut rx) = broadcast::channel(16);
        let me = Bytes::from_static(b"lock/a");
        tx.send(wake(b"lock/b")).unwrap();
        tx.send(StoreEvent::Message {
            channel: Channel::Invalidate,
            payload: me.clone(),
        })
        .unwrap();
        tx.send(wake(b"lock/a")).unwrap();
        let began = Instant::now();
        wait_for_wake(announced(&mut rx, &me), Duration::from_secs(10)).await;
        assert_eq!(began.elapsed(), Duration::ZERO);
        assert!(rx.try_recv().is_err(), "every message before it was read");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_wake_up_the_wait_is_one_nap() {
        let (tx, mut rx) = broadcast::channel(16);
        let me = Bytes::from_static(b"lock/a");
        tx.send(wake(b"lock/b")).unwrap();
        let began = Instant::now();
        wait_for_wake(announced(&mut rx, &me), Duration::from_secs(3)).await;
        assert_eq!(began.elapsed(), Duration::from_secs(3));
        // Ended events do not end the wait early either.
        drop(tx);
        let began = Instant::now();
        wait_for_wake(announced(&mut rx, &me), Duration::from_secs(2)).await;
        assert_eq!(began.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_that_may_have_been_missed_ends_the_wait() {
        let me = Bytes::from_static(b"lock/a");
        let (tx, mut rx) = broadcast::channel(16);
        tx.send(StoreEvent::SubscriptionRestored).unwrap();
        let began = Instant::now();
        wait_for_wake(announced(&mut rx, &me), Duration::from_secs(10)).await;
        assert_eq!(began.elapsed(), Duration::ZERO);
        let (tx, mut rx) = broadcast::channel(1);
        tx.send(wake(b"lock/b")).unwrap();
        tx.send(wake(b"lock/c")).unwrap();
        wait_for_wake(announced(&mut rx, &me), Duration::from_secs(10)).await;
        assert_eq!(began.elapsed(), Duration::ZERO, "lagged");
    }

    #[tokio::test(start_paused = true)]
    async fn any_future_can_wake_a_wait() {
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        let n = notify.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            n.notify_waiters();
        });
        let began = Instant::now();
        wait_for_wake(notify.notified(), Duration::from_secs(10)).await;
        assert_eq!(began.elapsed(), Duration::from_secs(1));
    }
}
