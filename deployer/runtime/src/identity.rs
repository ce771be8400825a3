//! The one function that names everything an app owns on the node's servers: its PostgreSQL
//! role and database, MariaDB database and user, Redis user and key prefix, CouchDB database and
//! user, and its Unix user (design §5). It is injective: two app names (or two nodes) never map
//! to one identity, so no app is ever handed another's database, keys or files.
//!
//! App names are lowercase letters, digits, `-`, `_` and `.`. Server names keep letters and
//! digits, write `-` as `_` (as every earlier node did, so `hello-wsgi` keeps its database),
//! and escape the other two with `$`, which no app name holds: `_` is `$u` and `.` is `$d`.
//! That code is prefix-free, so it reads back one way only: `col-a` is `…_col_a`, `col_a` is
//! `…_col$ua`, `col.a` is `…_col$da`. A name too long for the servers' limits is cut and ends
//! in `$h` and a hash of the whole name, a pair no short name holds.
//!
//! Staging copies built during a restore are named `<identity>-<what>`: no identity holds a
//! `-`, so a staging name is never another app's identity.

use silver_types::AppName;

/// Every name an app has on the node's servers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// PostgreSQL role and database, MariaDB database and user, Redis user, CouchDB database and
    /// user: one name, `s<node>_<escaped app>`, at most [`Identity::MAX_LEN`] bytes.
    pub name: String,
    /// The Unix user the app runs as (when the agent is root): `s<node6>-<app>`, 32 at most.
    pub unix_user: String,
}

impl Identity {
    /// Leaves room for a staging suffix (`-restore`) within PostgreSQL's 63 bytes and MariaDB's
    /// 64-character database names.
    pub const MAX_LEN: usize = 52;

    /// The identity of `app` on node `node` (its id, 8 hex digits).
    pub fn of(node: &str, app: &AppName) -> Identity {
        Identity {
            name: server_name(node, app),
            unix_user: unix_user(node, app),
        }
    }

    /// The Redis key prefix the app's user is confined to.
    pub fn redis_prefix(&self) -> String {
        format!("{}:", self.name)
    }

    /// A staging copy's name (`<name>-<what>`), which no app's identity can be.
    pub fn staging(&self, what: &str) -> String {
        format!("{}-{what}", self.name)
    }

    /// What the agent writes on what it makes (a PostgreSQL role, a MariaDB database) and looks
    /// for before it touches one: a thing another node, app or person made is never taken over.
    pub fn owner_comment(node: &str, app: &AppName) -> String {
        format!("silver app {app} on node {node}")
    }
}

/// `s<first 6 of the node id>-<app>`: at most 32 characters (useradd's limit), only characters
/// every distribution accepts in a user name, and distinct for two nodes on one host. A long or
/// dotted app name is cut and given a hash of the whole name, so two never share a user: the
/// plain form is at most 30 characters and the hashed one exactly 31, so neither is the other.
fn unix_user(node: &str, app: &AppName) -> String {
    const PLAIN_MAX: usize = 30;
    const HASHED_LEN: usize = 31;
    let node = &node[..node.len().min(6)];
    let plain = app
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    let name = format!("s{node}-{app}");
    if plain && name.len() <= PLAIN_MAX {
        return name;
    }
    let kept: String = app
        .as_str()
        .chars()
        .map(|c| if c == '.' { '_' } else { c })
        .take(14)
        .collect();
    let hash = blake3::hash(app.as_str().as_bytes()).to_hex();
    let head = format!("s{node}-{kept}-");
    let rest = HASHED_LEN - head.len();
    format!("{head}{}", &hash[..rest])
}

fn server_name(node: &str, app: &AppName) -> String {
    let mut escaped = String::with_capacity(app.as_str().len() * 2);
    for c in app.as_str().chars() {
        match c {
            '-' => escaped.push('_'),
            '_' => escaped.push_str("$u"),
            '.' => escaped.push_str("$d"),
            c => escaped.push(c),
        }
    }
    let name = format!("s{node}_{escaped}");
    if name.len() <= Identity::MAX_LEN {
        return name;
    }
    // `$h` + 16 hex digits of the whole name: a short name never holds `$h`, and two long names
    // share a cut only with different hashes.
    let hash = blake3::hash(app.as_str().as_bytes()).to_hex();
    let mut cut = name;
    cut.truncate(Identity::MAX_LEN - 18);
    format!("{cut}$h{}", &hash[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn check(app: &str, expected: &str) {
        let id = Identity::of("0a1b2c3d", &AppName::parse(app).unwrap());
        assert_eq!(id.name, expected, "{app}");
    }

    #[test]
    fn names_as_data() {
        check("blog", "s0a1b2c3d_blog");
        check("hello-wsgi", "s0a1b2c3d_hello_wsgi");
        check("col-a", "s0a1b2c3d_col_a");
        check("col_a", "s0a1b2c3d_col$ua");
        check("col.a", "s0a1b2c3d_col$da");
        check("x_y", "s0a1b2c3d_x$uy");
        let long = Identity::of("0a1b2c3d", &AppName::parse(&"a".repeat(64)).unwrap());
        assert_eq!(long.name.len(), Identity::MAX_LEN);
        assert!(long.name.contains("$h"), "{}", long.name);
    }

    /// Every name of up to four characters over `a`, `b`, `-`, `_`, `.` (names that differ
    /// only in those three), and long names that share a cut: no two share any identity.
    #[test]
    fn no_two_app_names_share_an_identity() {
        let alphabet = ['a', 'b', '-', '_', '.'];
        let mut names = vec![String::new()];
        let mut all = Vec::new();
        for _ in 0..4 {
            names = names
                .iter()
                .flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}")))
                .collect();
            all.extend(names.iter().filter_map(|n| AppName::parse(n).ok()));
        }
        let stem = "x".repeat(40);
        for tail in ["-a", "_a", ".a", "a", "-_", "_-", "..", "-.-"] {
            all.push(AppName::parse(&format!("{stem}{tail}")).unwrap());
        }
        assert!(all.len() > 300, "{}", all.len());
        let (mut names, mut users) = (HashMap::new(), HashMap::new());
        for app in &all {
            let id = Identity::of("0a1b2c3d", app);
            assert!(id.name.len() <= Identity::MAX_LEN && id.unix_user.len() <= 32);
            assert!(
                !id.name.contains('-'),
                "{}: staging names hold `-`",
                id.name
            );
            if let Some(other) = names.insert(id.name.clone(), app.clone()) {
                panic!("{app} and {other} share {}", id.name);
            }
            if let Some(other) = users.insert(id.unix_user.clone(), app.clone()) {
                panic!("{app} and {other} share {}", id.unix_user);
            }
        }
        // Two nodes never share one either.
        let app = AppName::parse("blog").unwrap();
        assert_ne!(
            Identity::of("0a1b2c3d", &app),
            Identity::of("0a1b2c3e", &app)
        );
    }
}
