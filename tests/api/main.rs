//! Black-box tests: the real `authledger` binary on 127.0.0.1 with a fresh data directory,
//! spoken to over HTTP and through its CLI.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "a black-box test compares the server's times with the wall clock outside it"
)]

mod admin;
mod assertions;
mod audit;
mod browser;
mod clients;
mod console;
mod crash;
mod device;
mod doctor;
mod dpop;
#[path = "../support/dpop_key.rs"]
mod dpop_key;
mod durability;
mod exchange;
mod grants;
mod helpers;
mod import;
mod keys;
mod lifecycle;
mod logfile;
mod metrics;
mod nodes;
mod oauth;
mod oidc;
mod openapi;
mod par;
mod pg;
mod register;
mod resource;
mod robustness;
mod saml;
mod samples;
mod shared_log;
mod shutdown;
mod store;
mod tls;
mod web;
