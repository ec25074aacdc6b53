//! Tamper evidence: walking the hash chain of the whole log.
//!
//! Every stored event records `prev_hash`, the SHA-256 of its predecessor's stored bytes (the
//! first one records [`GENESIS_HASH`]), and the log saves a head marker (a position and the
//! hash of its event) every second and at each checkpoint. A changed byte anywhere therefore
//! breaks a link: the changed event no longer hashes to what its successor (or the head
//! marker) recorded, and a log that ends before the marker lost events from its end. A removed event leaves a gap in the positions, and two swapped events sit under
//! each other's positions.
//!
//! Compaction (retention) removes events on purpose. Each run of removed events is replaced by a
//! [`CompactedRun`], which records the hash before the run and the hash of its last event, so
//! the chain still links across it; verification reports each run it crossed.

use super::log::chain_hash;
use super::StoreError;
use domain::event::GENESIS_HASH;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A run of consecutive positions removed by compaction, as the chain sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompactedRun {
    /// First removed position.
    pub first: u64,
    /// Last removed position.
    pub last: u64,
    /// The `prev_hash` the first removed event recorded.
    pub prev_hash: String,
    /// The hash of the last removed event (the next kept event's `prev_hash`).
    pub last_hash: String,
    /// Position of the `HistoryCompacted` event that removed the run.
    pub compacted_by: u64,
}

/// The head marker: the last position written and the hash of its stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadMarker {
    /// Position of the last event.
    pub position: u64,
    /// Its hash.
    pub hash: String,
}

/// What a walk of the chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    /// Every link holds.
    Verified {
        /// Events read (compacted ones not counted).
        events: u64,
        /// Position of the last event.
        head_position: u64,
        /// Hash of the last event: record it elsewhere to detect a rewrite of the whole log.
        head_hash: String,
        /// Compacted runs crossed.
        checkpoints: Vec<CompactedRun>,
    },
    /// The first broken link.
    Broken {
        /// The position where the chain breaks: the event that was changed, removed or moved.
        position: u64,
        /// Why, in words.
        reason: String,
        /// Events verified before the break.
        verified: u64,
    },
}

impl Verification {
    /// Whether the chain holds.
    pub fn is_verified(&self) -> bool {
        matches!(self, Verification::Verified { .. })
    }
}

#[derive(Clone, Copy)]
enum Previous {
    Start,
    Event(u64),
    Run(u64, u64),
}

/// One stored event: its key's position and its bytes.
pub type RawEvent = (u64, Vec<u8>);

/// Walks `events` (ascending keys) and checks every link, the compacted runs and the head
/// marker. `progress` is called with the number of events read so far, every 4,096 events.
/// `from` resumes a walk after an event already verified (its position and hash); `events`
/// then starts after it.
pub fn verify<I>(
    events: I,
    runs: &BTreeMap<u64, CompactedRun>,
    head: Option<&HeadMarker>,
    from: Option<&HeadMarker>,
    mut progress: impl FnMut(u64),
) -> Result<Verification, StoreError>
where
    I: IntoIterator<Item = Result<RawEvent, StoreError>>,
{
    let mut expected_prev = from.map_or_else(|| GENESIS_HASH.to_owned(), |f| f.hash.clone());
    let mut expected_position = from.map_or(1, |f| f.position + 1);
    let mut read = 0u64;
    let mut crossed = Vec::new();
    // What came just before: a broken link is blamed on it or on the event after it.
    let mut previous = match from {
        Some(f) => Previous::Event(f.position),
        None => Previous::Start,
    };
    let broken = |position: u64, reason: String, verified: u64| {
        Ok(Verification::Broken {
            position,
            reason,
            verified,
        })
    };
    let mut iter = events.into_iter().peekable();
    while let Some(item) = iter.next() {
        let (position, bytes) = match item {
            Ok(raw) => raw,
            // A record whose own checksum fails is a changed byte at a known place.
            Err(StoreError::Corrupted(c)) => {
                return broken(c.position.unwrap_or(expected_position), c.to_string(), read)
            }
            Err(e) => return Err(e),
        };
        while position > expected_position {
            match runs.get(&expected_position) {
                Some(run) if run.prev_hash == expected_prev && run.last < position => {
                    expected_prev = run.last_hash.clone();
                    expected_position = run.last + 1;
                    previous = Previous::Run(run.first, run.last);
                    crossed.push(run.clone());
                }
                Some(run) if run.prev_hash != expected_prev => {
                    return broken(
                        expected_position,
                        format!(
                            "the compaction checkpoint for positions {}–{} does not follow \
                             from the event before it",
                            run.first, run.last
                        ),
                        read,
                    )
                }
                _ => {
                    return broken(
                        expected_position,
                        format!("event {expected_position} is missing (removed from the log)"),
                        read,
                    )
                }
            }
        }
        if position < expected_position {
            return broken(
                position,
                format!("event {position} lies inside a compacted run but is still stored"),
                read,
            );
        }
        let link = match super::record::link(&bytes) {
            Ok(l) => l,
            Err(e) => {
                return broken(
                    position,
                    format!("event {position} is not a readable event any more: {e}"),
                    read,
                )
            }
        };
        if link.position != position {
            return broken(
                position,
                format!(
                    "the event stored at position {position} says it is event {} \
                     (events were moved or reordered)",
                    link.position
                ),
                read,
            );
        }
        if link.prev_hash != expected_prev {
            // Either the predecessor changed, or this event's own `prev_hash` did. In the
            // second case this event's bytes changed too, so its successor's link fails as well.
            let own_hash = chain_hash(&bytes);
            let successor_agrees = match iter.peek() {
                Some(Ok((next_pos, next))) if *next_pos == position + 1 => {
                    super::record::link(next).is_ok_and(|l| l.prev_hash == own_hash)
                }
                None => head.is_none_or(|h| h.position != position || h.hash == own_hash),
                _ => true,
            };
            return match (successor_agrees, previous) {
                (true, Previous::Event(prev_pos)) => broken(
                    prev_pos,
                    format!(
                        "event {prev_pos} was changed: its stored bytes no longer hash to the \
                         prev_hash event {position} recorded"
                    ),
                    read.saturating_sub(1),
                ),
                (true, Previous::Run(first, last)) => broken(
                    position,
                    format!(
                        "the compaction checkpoint for positions {first}–{last} does not lead \
                         to event {position}"
                    ),
                    read,
                ),
                _ => broken(
                    position,
                    format!(
                        "event {position} was changed: its prev_hash does not match the event \
                         before it"
                    ),
                    read,
                ),
            };
        }
        expected_prev = chain_hash(&bytes);
        if let Some(h) = head.filter(|h| h.position == position) {
            if h.hash != expected_prev {
                return broken(
                    position,
                    format!(
                        "event {position} was changed: its stored bytes no longer hash to the \
                         head marker"
                    ),
                    read,
                );
            }
        }
        expected_position = position + 1;
        read += 1;
        if read % 4096 == 0 {
            progress(read);
        }
        previous = Previous::Event(position);
    }
    progress(read);
    let last = expected_position - 1;
    if let Some(h) = head {
        // The marker is saved now and then, so the log may have grown past it; it must not
        // end before it.
        if h.position > last {
            return broken(
                last + 1,
                format!(
                    "the head marker names event {} but the log ends at {last} \
                     (events were removed from the end)",
                    h.position
                ),
                read,
            );
        }
    }
    Ok(Verification::Verified {
        events: read,
        head_position: last,
        head_hash: expected_prev,
        checkpoints: crossed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: u64, prev: &str, body: &str) -> Vec<u8> {
        format!(r#"{{"position":{position},"prev_hash":"{prev}","body":"{body}"}}"#).into_bytes()
    }

    fn chain(n: u64) -> Vec<RawEvent> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|p| {
                let bytes = event(p, &prev, &format!("event number {p}"));
                prev = chain_hash(&bytes);
                (p, bytes)
            })
            .collect()
    }

    fn head_of(events: &[RawEvent]) -> HeadMarker {
        let (p, b) = events.last().unwrap();
        HeadMarker {
            position: *p,
            hash: chain_hash(b),
        }
    }

    fn check(events: &[RawEvent], head: &HeadMarker) -> Verification {
        check_with(events, &BTreeMap::new(), head)
    }

    fn check_with(
        events: &[RawEvent],
        runs: &BTreeMap<u64, CompactedRun>,
        head: &HeadMarker,
    ) -> Verification {
        verify(
            events.iter().cloned().map(Ok),
            runs,
            Some(head),
            None,
            |_| {},
        )
        .unwrap()
    }

    fn broken_at(v: &Verification) -> u64 {
        match v {
            Verification::Broken { position, .. } => *position,
            other => panic!("expected a break, got {other:?}"),
        }
    }

    #[test]
    fn an_intact_chain_verifies_and_names_its_head() {
        let events = chain(10);
        let head = head_of(&events);
        match check(&events, &head) {
            Verification::Verified {
                events,
                head_position,
                head_hash,
                ..
            } => {
                assert_eq!((events, head_position), (10, 10));
                assert_eq!(head_hash, head.hash);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_changed_byte_is_found_in_the_event_that_holds_it() {
        let clean = chain(10);
        let head = head_of(&clean);
        for target in 1..=10usize {
            let mut events = clean.clone();
            let bytes = &mut events[target - 1].1;
            let at = bytes.len() - 4;
            bytes[at] ^= 0x01;
            assert_eq!(broken_at(&check(&events, &head)), target as u64, "{target}");
        }
        // A change inside the prev_hash field is blamed on its own event too.
        let mut events = clean.clone();
        let text = String::from_utf8(events[4].1.clone()).unwrap();
        let prev_at = text.find("prev_hash").unwrap() + 13;
        events[4].1[prev_at] = if events[4].1[prev_at] == b'a' {
            b'b'
        } else {
            b'a'
        };
        assert_eq!(broken_at(&check(&events, &head)), 5);
    }

    #[test]
    fn a_removed_and_a_reordered_event_are_found() {
        let clean = chain(10);
        let head = head_of(&clean);
        let mut removed = clean.clone();
        removed.remove(6);
        assert_eq!(broken_at(&check(&removed, &head)), 7);
        let mut last_removed = clean.clone();
        last_removed.pop();
        assert_eq!(broken_at(&check(&last_removed, &head)), 10);
        let mut swapped = clean.clone();
        let (a, b) = (swapped[3].1.clone(), swapped[4].1.clone());
        swapped[3].1 = b;
        swapped[4].1 = a;
        assert_eq!(broken_at(&check(&swapped, &head)), 4);
    }

    #[test]
    fn a_walk_resumed_from_a_verified_event_checks_only_what_follows() {
        let clean = chain(10);
        let head = head_of(&clean);
        let mark = HeadMarker {
            position: 6,
            hash: chain_hash(&clean[5].1),
        };
        let rest: Vec<RawEvent> = clean[6..].to_vec();
        let v = verify(
            rest.iter().cloned().map(Ok),
            &BTreeMap::new(),
            Some(&head),
            Some(&mark),
            |_| {},
        )
        .unwrap();
        assert!(v.is_verified(), "{v:?}");
        let mut changed = rest.clone();
        changed[0].1[30] ^= 1;
        let v = verify(
            changed.into_iter().map(Ok),
            &BTreeMap::new(),
            Some(&head),
            Some(&mark),
            |_| {},
        )
        .unwrap();
        assert_eq!(broken_at(&v), 7);
    }

    #[test]
    fn compacted_runs_are_crossed_and_a_forged_one_is_not() {
        let clean = chain(10);
        let head = head_of(&clean);
        let run = CompactedRun {
            first: 3,
            last: 5,
            prev_hash: chain_hash(&clean[1].1),
            last_hash: chain_hash(&clean[4].1),
            compacted_by: 11,
        };
        let kept: Vec<RawEvent> = clean
            .iter()
            .filter(|(p, _)| !(3..=5).contains(p))
            .cloned()
            .collect();
        let runs = BTreeMap::from([(3, run.clone())]);
        match check_with(&kept, &runs, &head) {
            Verification::Verified { checkpoints, .. } => assert_eq!(checkpoints, vec![run]),
            other => panic!("{other:?}"),
        }
        let forged = CompactedRun {
            last_hash: GENESIS_HASH.to_owned(),
            ..runs[&3].clone()
        };
        let v = check_with(&kept, &BTreeMap::from([(3, forged)]), &head);
        assert_eq!(broken_at(&v), 6);
    }
}
