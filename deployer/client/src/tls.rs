//! TLS on the client side: the CA certificate a client trusts for a node with its own
//! (self-signed) certificate.

use std::path::Path;

use crate::error::Error;

/// Reads a PEM CA certificate for the client to trust (a node with a self-signed certificate).
pub fn ca_certificate(path: &Path) -> Result<reqwest::Certificate, Error> {
    let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    reqwest::Certificate::from_pem(&pem).map_err(|source| Error::BadCertificate {
        path: path.to_path_buf(),
        source,
    })
}
