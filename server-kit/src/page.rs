//! Page sizes as the contract states them (AIP-158): 0 asks for the method's default, values
//! above the method's maximum are clamped to it, and only a negative size is refused.

/// Page sizes of list methods: 0 means 50, at most 500.
pub const LIST: PageLimits = PageLimits {
    default: 50,
    max: 500,
};
/// Page sizes of reports and the ledger: 0 means 100, at most 1000.
pub const REPORT: PageLimits = PageLimits {
    default: 100,
    max: 1000,
};

/// The default and the maximum page size of a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLimits {
    /// The size used when the request says 0.
    pub default: i64,
    /// The largest size served; larger requests are clamped to it.
    pub max: i64,
}

impl PageLimits {
    /// The page size to serve for a request's `page_size`; a negative size is refused with
    /// the description to put in the caller's INVALID_ARGUMENT.
    pub fn size(self, requested: i32) -> Result<i64, &'static str> {
        match requested {
            n if n < 0 => Err("must not be negative"),
            0 => Ok(self.default),
            n => Ok(i64::from(n).min(self.max)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_default_and_large_sizes_are_clamped() {
        assert_eq!(LIST.size(0).unwrap(), 50);
        assert_eq!(LIST.size(7).unwrap(), 7);
        assert_eq!(LIST.size(500).unwrap(), 500);
        assert_eq!(LIST.size(501).unwrap(), 500);
        assert_eq!(LIST.size(i32::MAX).unwrap(), 500);
        assert_eq!(REPORT.size(0).unwrap(), 100);
        assert_eq!(REPORT.size(5000).unwrap(), 1000);
    }

    #[test]
    fn negative_sizes_are_refused() {
        assert_eq!(LIST.size(-1), Err("must not be negative"));
    }
}
