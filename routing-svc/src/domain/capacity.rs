//! Capacity arithmetic: an agent's units split into those held by assigned conversations
//! and those promised to pending offers. Storage applies the same rules as conditional
//! updates; this is the reference the matcher ranks with and the tests check.

/// Why a capacity change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// The change would exceed the agent's units.
    #[error("needs {needed} units, {free} free")]
    Exhausted {
        /// Units asked for.
        needed: i32,
        /// Units free.
        free: i32,
    },
    /// Releasing more than is held: a bookkeeping error.
    #[error("releasing {units} units, only {held} held")]
    Underflow {
        /// Units asked to release.
        units: i32,
        /// Units held.
        held: i32,
    },
}

/// An agent's capacity ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Units in all.
    pub total: i32,
    /// Units held by assigned conversations (may exceed `total` after an override).
    pub used: i32,
    /// Units promised to pending offers.
    pub pending: i32,
}

impl Capacity {
    /// Units neither used nor promised; never negative.
    pub fn free(&self) -> i32 {
        (self.total - self.used - self.pending).max(0)
    }

    /// Units by which `used` exceeds `total` (0 within capacity).
    pub fn over(&self) -> i32 {
        (self.used - self.total).max(0)
    }

    /// Whether an offer of `units` fits, counting pending offers as taken.
    pub fn can_offer(&self, units: i32) -> bool {
        self.used + self.pending + units <= self.total
    }

    /// Promises `units` to a new offer.
    pub fn hold_offer(&mut self, units: i32) -> Result<(), CapacityError> {
        if !self.can_offer(units) {
            return Err(CapacityError::Exhausted {
                needed: units,
                free: self.free(),
            });
        }
        self.pending += units;
        Ok(())
    }

    /// An offer of `units` was rejected, timed out or withdrawn.
    pub fn drop_offer(&mut self, units: i32) -> Result<(), CapacityError> {
        if units > self.pending {
            return Err(CapacityError::Underflow {
                units,
                held: self.pending,
            });
        }
        self.pending -= units;
        Ok(())
    }

    /// An offer of `units` was accepted: the promise becomes a reservation, provided
    /// the units are still free of other reservations (an override may have taken them).
    pub fn accept_offer(&mut self, units: i32) -> Result<(), CapacityError> {
        if units > self.pending {
            return Err(CapacityError::Underflow {
                units,
                held: self.pending,
            });
        }
        if self.used + units > self.total {
            return Err(CapacityError::Exhausted {
                needed: units,
                free: (self.total - self.used).max(0),
            });
        }
        self.pending -= units;
        self.used += units;
        Ok(())
    }

    /// Reserves `units` outside an offer; pending offers count as taken. With `override`
    /// the reservation always succeeds. Returns the units over capacity afterwards.
    pub fn reserve(&mut self, units: i32, override_capacity: bool) -> Result<i32, CapacityError> {
        if !override_capacity && !self.can_offer(units) {
            return Err(CapacityError::Exhausted {
                needed: units,
                free: self.free(),
            });
        }
        self.used += units;
        Ok(self.over())
    }

    /// Frees `units` of an assigned conversation.
    pub fn release(&mut self, units: i32) -> Result<(), CapacityError> {
        if units > self.used {
            return Err(CapacityError::Underflow {
                units,
                held: self.used,
            });
        }
        self.used -= units;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(total: i32, used: i32, pending: i32) -> Capacity {
        Capacity {
            total,
            used,
            pending,
        }
    }

    #[test]
    fn free_counts_pending_as_taken() {
        assert_eq!(cap(3, 1, 1).free(), 1);
        assert_eq!(cap(3, 4, 0).free(), 0);
        assert!(cap(3, 1, 1).can_offer(1));
        assert!(!cap(3, 1, 1).can_offer(2));
    }

    #[test]
    fn hold_then_accept_moves_units_from_pending_to_used() {
        let mut c = cap(2, 0, 0);
        c.hold_offer(1).unwrap();
        c.hold_offer(1).unwrap();
        assert_eq!(
            c.hold_offer(1),
            Err(CapacityError::Exhausted { needed: 1, free: 0 })
        );
        c.accept_offer(1).unwrap();
        assert_eq!(c, cap(2, 1, 1));
        c.drop_offer(1).unwrap();
        assert_eq!(c, cap(2, 1, 0));
    }

    #[test]
    fn accept_fails_when_an_override_took_the_units() {
        let mut c = cap(2, 0, 0);
        c.hold_offer(2).unwrap();
        assert_eq!(c.reserve(1, true), Ok(0));
        assert_eq!(
            c.accept_offer(2),
            Err(CapacityError::Exhausted { needed: 2, free: 1 })
        );
        assert_eq!(c, cap(2, 1, 2));
    }

    #[test]
    fn reserve_reports_units_over_capacity_only_with_override() {
        let mut c = cap(100, 90, 0);
        assert!(c.reserve(100, false).is_err());
        assert_eq!(c.used, 90);
        assert_eq!(c.reserve(100, true), Ok(90));
        assert_eq!(c.over(), 90);
        c.release(100).unwrap();
        assert_eq!(c.over(), 0);
    }

    #[test]
    fn release_and_drop_never_go_negative() {
        let mut c = cap(5, 1, 1);
        assert_eq!(
            c.release(2),
            Err(CapacityError::Underflow { units: 2, held: 1 })
        );
        assert_eq!(
            c.drop_offer(2),
            Err(CapacityError::Underflow { units: 2, held: 1 })
        );
        assert_eq!(c, cap(5, 1, 1));
    }
}
