//! What a server, a tool or a parser outside silver said, carried into an error as it came.

/// Words from outside silver's own code (PostgreSQL's refusal, `useradd`'s complaint, a
/// Redis error): one line, with every secret the caller knew of replaced by `***`. A type of
/// its own, so an error's variant says what went wrong and this says only what the other side
/// answered; made only through [`Said::new`], which does the blotting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said(String);

impl Said {
    /// The first non-empty line of `text` (all of it when it has one line), each of `secrets`
    /// blotted out.
    pub fn new(text: &str, secrets: &[&str]) -> Said {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("(no message)");
        let blotted = secrets
            .iter()
            .filter(|s| !s.is_empty())
            .fold(line.to_string(), |line, secret| line.replace(secret, "***"));
        Said(blotted)
    }

    /// All of `text` (a log tail, a parser's report with its context), each of `secrets`
    /// blotted out.
    pub fn whole(text: &str, secrets: &[&str]) -> Said {
        let blotted = secrets
            .iter()
            .filter(|s| !s.is_empty())
            .fold(text.trim_end().to_string(), |text, secret| {
                text.replace(secret, "***")
            });
        Said(blotted)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Said {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An error and its causes on one line (`a: b: c`): hyper's "client error (Connect)" alone
/// says nothing, its causes say what failed. The one place silver flattens an error.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_secrets_blotted() {
        let said = Said::new(
            "\n  FATAL: password hunter2 refused\nDETAIL: x",
            &["hunter2", ""],
        );
        assert_eq!(said.as_str(), "FATAL: password *** refused");
        assert_eq!(Said::new("", &[]).as_str(), "(no message)");
    }
}
