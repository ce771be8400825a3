//! The deployer's wire protocol, shared by the client and the node: the control API's request
//! and response types (`api`) and the frame format objects travel in (`frames`). Plain data and
//! codecs; no I/O, no HTTP.

pub mod api;
pub mod frames;
