//! Certificates for the front door (design §10): ACME orders over HTTP-01 and TLS-ALPN-01, the
//! ACME account, the TLS-ALPN-01 challenge certificate, and when a certificate is due.
//!
//! The protocol is `instant-acme`'s. What answers a challenge is the caller's [`Responder`]: the
//! node's own router for one node, every node's router through the agents for a fleet. This
//! crate never touches a node's store or its router.

mod account;
mod cert;
mod error;
mod host;
mod order;

pub use account::{load_or_create_account, AcmeConfig, LETS_ENCRYPT};
pub use cert::{alpn_challenge_cert, Cert, ChallengeCert};
pub use error::Error;
pub use host::{CertHost, Http01Token};
pub use instant_acme::Account;
pub use order::{issue, Answer, Challenge, Responder};
