//! A given / when / then harness for deciders.

use crate::event::Event;
use std::fmt::Debug;

/// One scenario: events already recorded, a command, and what the decider must answer.
pub struct Scenario<S, C, E> {
    decide: fn(&S, &C) -> Result<Vec<Event>, E>,
    evolve: fn(&mut S, &Event),
    given: Vec<Event>,
    when: Option<C>,
}

impl<S: Default, C, E: Debug + PartialEq> Scenario<S, C, E> {
    /// A scenario over a decider.
    pub fn new(decide: fn(&S, &C) -> Result<Vec<Event>, E>, evolve: fn(&mut S, &Event)) -> Self {
        Self {
            decide,
            evolve,
            given: Vec::new(),
            when: None,
        }
    }

    /// The events already in the stream.
    pub fn given(mut self, events: Vec<Event>) -> Self {
        self.given = events;
        self
    }

    /// The command to decide.
    pub fn when(mut self, command: C) -> Self {
        self.when = Some(command);
        self
    }

    fn run(self) -> Result<Vec<Event>, E> {
        let mut state = S::default();
        for e in &self.given {
            (self.evolve)(&mut state, e);
        }
        let Some(command) = self.when else {
            panic!("a scenario needs a command: call .when(..)");
        };
        (self.decide)(&state, &command)
    }

    /// Asserts the decision is exactly these events.
    #[track_caller]
    pub fn then(self, expected: Vec<Event>) {
        match self.run() {
            Ok(events) => assert_eq!(events, expected),
            Err(e) => panic!("expected events, got error {e:?}"),
        }
    }

    /// Asserts the decision is this refusal.
    #[track_caller]
    pub fn then_err(self, expected: E) {
        match self.run() {
            Ok(events) => panic!("expected {expected:?}, got events {events:?}"),
            Err(e) => assert_eq!(e, expected),
        }
    }
}
