//! A customer who writes again after a conversation closed: within the tenant's reopen
//! window the conversation reopens; after it, the customer starts a new conversation that
//! follows the closed one.

/// What a customer message to a CLOSED conversation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Return {
    /// Back to OPEN in its last queue, with the message (first contact is not resolved).
    Reopen,
    /// A new conversation for the same contact, channel and address, following this one.
    FollowUp,
}

/// What a customer message at `now` does to a conversation closed at `close_time` (both in
/// microseconds), given the tenant's reopen window in seconds: 0 means no reopening. The
/// window includes its last instant.
pub fn customer_returns(close_time: Option<i64>, now: i64, window_secs: i64) -> Return {
    match close_time {
        Some(closed)
            if window_secs > 0
                && now.saturating_sub(closed) <= window_secs.saturating_mul(1_000_000) =>
        {
            Return::Reopen
        }
        _ => Return::FollowUp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    #[test]
    fn within_the_window_the_conversation_reopens() {
        let closed = 1_000 * SECOND;
        assert_eq!(customer_returns(Some(closed), closed, 60), Return::Reopen);
        assert_eq!(
            customer_returns(Some(closed), closed + 60 * SECOND, 60),
            Return::Reopen,
            "the window's last instant still reopens"
        );
        // A clock a little behind the close still counts as within the window.
        assert_eq!(
            customer_returns(Some(closed), closed - SECOND, 60),
            Return::Reopen
        );
    }

    #[test]
    fn after_the_window_the_customer_starts_a_follow_up() {
        let closed = 1_000 * SECOND;
        assert_eq!(
            customer_returns(Some(closed), closed + 60 * SECOND + 1, 60),
            Return::FollowUp
        );
    }

    #[test]
    fn a_zero_window_never_reopens() {
        let closed = 1_000 * SECOND;
        assert_eq!(customer_returns(Some(closed), closed, 0), Return::FollowUp);
        assert_eq!(customer_returns(Some(closed), closed, -5), Return::FollowUp);
    }

    #[test]
    fn a_close_without_a_time_is_not_reopened() {
        assert_eq!(customer_returns(None, 0, 86_400), Return::FollowUp);
    }

    #[test]
    fn huge_windows_do_not_overflow() {
        assert_eq!(
            customer_returns(Some(0), i64::MAX, i64::MAX),
            Return::Reopen
        );
        assert_eq!(
            customer_returns(Some(i64::MAX), i64::MIN, 60),
            Return::Reopen,
            "a close in the future is within the window"
        );
    }
}
