//! Node agent and deploy client (issue 3). Empty until then: the only crate that will speak HTTP.
