//! The one parser of the servers' admin URLs (`--postgres-url`, `--mysql-url`, `--redis-url`,
//! `--couchdb-url`): `scheme://[user[:password]@]host[:port][/database][?query]`, every part
//! percent-decoded once, here.

/// An admin URL, parsed and decoded. Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminUrl {
    pub user: Option<String>,
    pub password: Option<String>,
    /// None when the URL names no host (`postgres:///db`).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// The path without its `/`; None when empty.
    pub database: Option<String>,
    pub query: Vec<(String, String)>,
}

impl std::fmt::Debug for AdminUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminUrl")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl AdminUrl {
    /// Parses `text` if its scheme is one of `schemes`; None otherwise, or when it is no URL
    /// (the caller says so without repeating it: it may hold a password).
    pub fn parse(text: &str, schemes: &[&str]) -> Option<AdminUrl> {
        let url = url::Url::parse(text).ok()?;
        if !schemes.contains(&url.scheme()) {
            return None;
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let present = |s: &str| Some(s).filter(|s| !s.is_empty()).map(decode);
        Some(AdminUrl {
            user: present(url.username()),
            password: url.password().map(decode),
            host: url.host_str().and_then(present),
            port: url.port(),
            database: present(url.path().trim_start_matches('/')),
            query: url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        })
    }

    /// The value of `key` in the query (`?sslmode=require`).
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, schemes: &[&str], expected: Option<(&str, &str, &str, u16, &str)>) {
        let got = AdminUrl::parse(text, schemes).map(|u| {
            (
                u.user.unwrap_or_default(),
                u.password.unwrap_or_default(),
                u.host.unwrap_or_default(),
                u.port.unwrap_or(0),
                u.database.unwrap_or_default(),
            )
        });
        let expected = expected.map(|(a, b, c, d, e)| {
            (
                a.to_string(),
                b.to_string(),
                c.to_string(),
                d,
                e.to_string(),
            )
        });
        assert_eq!(got, expected, "{text}");
    }

    #[test]
    fn admin_urls_are_decoded_once() {
        check(
            "postgresql://postgres@127.0.0.1:5433/postgres",
            &["postgresql", "postgres"],
            Some(("postgres", "", "127.0.0.1", 5433, "postgres")),
        );
        check(
            "mysql://admin:s%40cret@127.0.0.1:3307",
            &["mysql"],
            Some(("admin", "s@cret", "127.0.0.1", 3307, "")),
        );
        check(
            "redis://:p%3Aw@localhost",
            &["redis"],
            Some(("", "p:w", "localhost", 0, "")),
        );
        check(
            "http://ad%20min:pw@127.0.0.1:5984",
            &["http"],
            Some(("ad min", "pw", "127.0.0.1", 5984, "")),
        );
        check("mysql://x", &["redis"], None);
        check("not a url", &["redis"], None);
        let url = AdminUrl::parse("postgres://h/db?sslmode=require", &["postgres"]).unwrap();
        assert_eq!(url.query("sslmode"), Some("require"));
        assert!(
            !format!("{:?}", AdminUrl::parse("redis://:hunter2@h", &["redis"])).contains("hunter2")
        );
    }
}
