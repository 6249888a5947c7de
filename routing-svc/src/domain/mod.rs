//! Routing rules and state machines, free of transport and storage.

pub mod capacity;
pub mod matching;
pub mod membership;
pub mod offer;
pub mod overflow;
pub mod presence;
pub mod profile;
pub mod roster;
pub mod transfer;
pub mod types;

pub use types::*;

#[cfg(test)]
mod property_tests {
    //! Random sequences of offers, answers, timeouts, releases and reservations against
    //! the capacity ledger and the offer state machine.

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::capacity::Capacity;
    use super::offer::{OfferEvent, check_accept};
    use super::types::OfferState;

    struct ModelOffer {
        agent: usize,
        units: i32,
        state: OfferState,
        expire_time: i64,
        released: bool,
    }

    #[test]
    fn capacity_never_goes_negative_or_over_without_override() {
        for seed in 0..300u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut agents: Vec<Capacity> = (0..3)
                .map(|_| Capacity {
                    total: rng.random_range(1..6),
                    used: 0,
                    pending: 0,
                })
                .collect();
            let mut offers: Vec<ModelOffer> = Vec::new();
            let mut now = 0i64;
            for step in 0..400 {
                now += rng.random_range(0..3);
                let agent = rng.random_range(0..agents.len());
                match rng.random_range(0..7) {
                    0 | 1 => {
                        let units = rng.random_range(1..4);
                        if agents[agent].hold_offer(units).is_ok() {
                            offers.push(ModelOffer {
                                agent,
                                units,
                                state: OfferState::Pending,
                                expire_time: now + rng.random_range(1..10),
                                released: false,
                            });
                        }
                    }
                    2..=5 if !offers.is_empty() => {
                        let index = rng.random_range(0..offers.len());
                        let offer = &mut offers[index];
                        let ledger = &mut agents[offer.agent];
                        let event = match rng.random_range(0..4) {
                            0 => OfferEvent::Accept,
                            1 => OfferEvent::Reject,
                            2 => OfferEvent::Timeout,
                            _ => OfferEvent::Withdraw,
                        };
                        match event {
                            OfferEvent::Accept => {
                                if check_accept(offer.state, offer.expire_time, now).is_ok()
                                    && ledger.accept_offer(offer.units).is_ok()
                                {
                                    offer.state = OfferState::Accepted;
                                }
                            }
                            _ => {
                                if let Ok(next) = offer.state.apply(event) {
                                    ledger.drop_offer(offer.units).unwrap();
                                    offer.state = next;
                                }
                            }
                        }
                        if offer.state == OfferState::Accepted
                            && !offer.released
                            && rng.random_bool(0.3)
                        {
                            ledger.release(offer.units).unwrap();
                            offer.released = true;
                        }
                    }
                    _ => {
                        let override_capacity = rng.random_bool(0.1);
                        let units = rng.random_range(1..3);
                        let before = agents[agent];
                        match agents[agent].reserve(units, override_capacity) {
                            Ok(over) => {
                                assert_eq!(over, agents[agent].over());
                                assert!(override_capacity || over == 0);
                                agents[agent].release(units).unwrap();
                            }
                            Err(_) => assert_eq!(agents[agent], before),
                        }
                    }
                }
                for (index, ledger) in agents.iter().enumerate() {
                    let pending: i32 = offers
                        .iter()
                        .filter(|o| o.agent == index && o.state == OfferState::Pending)
                        .map(|o| o.units)
                        .sum();
                    let used: i32 = offers
                        .iter()
                        .filter(|o| {
                            o.agent == index && o.state == OfferState::Accepted && !o.released
                        })
                        .map(|o| o.units)
                        .sum();
                    assert_eq!(ledger.pending, pending, "seed {seed} step {step}");
                    assert_eq!(ledger.used, used, "seed {seed} step {step}");
                    assert!(ledger.used >= 0 && ledger.pending >= 0);
                    assert!(
                        ledger.used + ledger.pending <= ledger.total,
                        "seed {seed} step {step}: {ledger:?}"
                    );
                }
            }
        }
    }
}
