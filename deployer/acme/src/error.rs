//! The ACME crate's one error type: every variant names the host, CA or file it is about.

use std::path::PathBuf;

use silver_types::Said;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{given}` {why}")]
    BadHost { given: String, why: &'static str },
    #[error("`{given}` is not an HTTP-01 token or key authorization (base64url)")]
    BadToken { given: String },
    #[error("the ACME CA at {directory} failed while {doing}: {said}")]
    Acme {
        directory: String,
        doing: &'static str,
        said: Said,
    },
    #[error("the ACME CA offers no {challenge} challenge for {host}")]
    NotOffered {
        host: String,
        challenge: crate::Challenge,
    },
    #[error("the ACME CA could not validate {host} over {challenge}: {said}")]
    Invalid {
        host: String,
        challenge: crate::Challenge,
        said: Said,
    },
    #[error("cannot answer the {challenge} challenge for {host}: {said}")]
    Answer {
        host: String,
        challenge: crate::Challenge,
        said: Said,
    },
    #[error("{what} is not a usable certificate: {said}")]
    BadCert { what: String, said: Said },
    #[error("cannot read the CA root {}: {said}", path.display())]
    CaRoot { path: PathBuf, said: Said },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the ACME account in {} is damaged: {said}", path.display())]
    BadAccount { path: PathBuf, said: Said },
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn acme(directory: &str, doing: &'static str, e: instant_acme::Error) -> Error {
        Error::Acme {
            directory: directory.to_string(),
            doing,
            said: Said::new(&silver_types::error_chain(&e), &[]),
        }
    }

    /// Whether the CA could not validate the challenge (or none could be presented): another
    /// challenge type may get through where this one did not.
    pub fn failed_validation(&self) -> bool {
        matches!(
            self,
            Error::Invalid { .. } | Error::NotOffered { .. } | Error::Answer { .. }
        )
    }
}

impl silver_types::Hint for Error {
    fn hint(&self) -> Option<String> {
        match self {
            Error::Invalid { challenge: crate::Challenge::Http01, .. } => Some(
                "the CA must reach this node on port 80 at the host name: check its DNS record and firewall".into(),
            ),
            Error::Invalid { challenge: crate::Challenge::TlsAlpn01, .. } => Some(
                "the CA must reach this node on port 443 at the host name: check its DNS record and firewall".into(),
            ),
            Error::CaRoot { .. } => Some("give --acme-ca-root a PEM file holding the CA's root certificate".into()),
            Error::BadAccount { path, .. } => Some(format!(
                "move {} aside; the agent registers a new account",
                path.display()
            )),
            _ => None,
        }
    }
}
