//! Queue overflow: when a waiting conversation is due to leave its queue for the queue's
//! overflow queue, and whether it may go there.

use std::fmt;

use crate::domain::{Channel, Queue};

/// When a conversation that entered `queue` at `entered` falls due to overflow; `None`
/// when the queue has no overflow (no overflow queue, itself as overflow queue, or no wait
/// set).
pub fn overflow_due(queue: &Queue, entered: i64) -> Option<i64> {
    let target = queue.overflow_queue_id.as_deref()?;
    if target.is_empty() || target == queue.id || queue.overflow_after_us <= 0 {
        return None;
    }
    Some(entered.saturating_add(queue.overflow_after_us))
}

/// Whether a waiting conversation whose overflow falls due at `due` moves at `now`: not
/// while an offer of it is pending (`offered`); it moves once the offer ends, if still due.
pub fn is_due(due: Option<i64>, offered: bool, now: i64) -> bool {
    !offered && due.is_some_and(|due| due <= now)
}

/// Why a due conversation stays in its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stays {
    /// Its queue no longer has an overflow queue (or was removed).
    NoOverflow,
    /// The overflow queue no longer exists.
    TargetGone(String),
    /// The overflow queue does not accept the conversation's channel.
    ChannelNotAccepted(String, Channel),
}

impl fmt::Display for Stays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stays::NoOverflow => f.write_str("its queue has no overflow queue"),
            Stays::TargetGone(id) => write!(f, "overflow queue {id} no longer exists"),
            Stays::ChannelNotAccepted(id, channel) => {
                write!(f, "overflow queue {id} does not accept channel {channel:?}")
            }
        }
    }
}

/// The queue a due conversation on `channel` moves to from `from` (`None` when that queue is
/// gone): `target`, `from`'s overflow queue as read now (`None` when it is gone), if it
/// accepts the channel.
pub fn overflow_target<'a>(
    from: Option<&Queue>,
    target: Option<&'a Queue>,
    channel: Channel,
) -> Result<&'a Queue, Stays> {
    let wanted = from
        .filter(|from| overflow_due(from, 0).is_some())
        .and_then(|from| from.overflow_queue_id.as_deref())
        .ok_or(Stays::NoOverflow)?;
    let target = target
        .filter(|target| target.id == wanted)
        .ok_or_else(|| Stays::TargetGone(wanted.to_owned()))?;
    if !target.accepts(channel) {
        return Err(Stays::ChannelNotAccepted(target.id.clone(), channel));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(id: &str, channels: &[Channel], overflow: Option<&str>, after_us: i64) -> Queue {
        Queue {
            accepted_channels: channels.to_vec(),
            overflow_queue_id: overflow.map(str::to_owned),
            overflow_after_us: after_us,
            ..Queue::sample(id)
        }
    }

    #[test]
    fn due_counts_from_entering_the_queue() {
        let a = queue("a", &[Channel::Webchat], Some("b"), 1_000_000);
        assert_eq!(overflow_due(&a, 5), Some(1_000_005));
        assert_eq!(overflow_due(&a, i64::MAX), Some(i64::MAX), "saturates");
    }

    #[test]
    fn a_queue_without_a_target_or_a_wait_never_overflows() {
        for q in [
            queue("a", &[Channel::Webchat], None, 1_000_000),
            queue("a", &[Channel::Webchat], Some(""), 1_000_000),
            queue("a", &[Channel::Webchat], Some("b"), 0),
            queue("a", &[Channel::Webchat], Some("a"), 1_000_000),
        ] {
            assert_eq!(overflow_due(&q, 5), None, "{q:?}");
        }
    }

    #[test]
    fn due_only_when_the_time_came_and_no_offer_is_pending() {
        assert!(is_due(Some(10), false, 10));
        assert!(is_due(Some(10), false, 11));
        assert!(!is_due(Some(10), false, 9), "not yet");
        assert!(!is_due(Some(10), true, 11), "an offer is pending");
        assert!(!is_due(None, false, i64::MAX), "no overflow");
    }

    #[test]
    fn moves_to_an_overflow_queue_that_accepts_the_channel() {
        let a = queue("a", &[Channel::Webchat, Channel::Sms], Some("b"), 1);
        let b = queue("b", &[Channel::Webchat], None, 0);
        assert_eq!(
            overflow_target(Some(&a), Some(&b), Channel::Webchat).map(|q| q.id.as_str()),
            Ok("b")
        );
        assert_eq!(
            overflow_target(Some(&a), Some(&b), Channel::Sms),
            Err(Stays::ChannelNotAccepted("b".into(), Channel::Sms))
        );
    }

    #[test]
    fn stays_when_the_target_is_gone_or_the_setting_was_removed() {
        let a = queue("a", &[Channel::Webchat], Some("b"), 1);
        let b = queue("b", &[Channel::Webchat], None, 0);
        assert_eq!(
            overflow_target(Some(&a), None, Channel::Webchat),
            Err(Stays::TargetGone("b".into()))
        );
        let other = queue("c", &[Channel::Webchat], None, 0);
        assert_eq!(
            overflow_target(Some(&a), Some(&other), Channel::Webchat),
            Err(Stays::TargetGone("b".into())),
            "a queue read for another target is not the overflow queue"
        );
        let changed = queue("a", &[Channel::Webchat], None, 1);
        assert_eq!(
            overflow_target(Some(&changed), Some(&b), Channel::Webchat),
            Err(Stays::NoOverflow)
        );
        assert_eq!(
            overflow_target(None, Some(&b), Channel::Webchat),
            Err(Stays::NoOverflow)
        );
    }
}
