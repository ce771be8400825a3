//! Who an app's processes run as. As root, each app gets its own system user, made by the agent
//! with `useradd --system` and named after the node and the app (`s<node>-<app>`), so that one app
//! cannot read, write or signal another's files, processes or environment. Without root,
//! everything runs as the invoking user.

use std::process::Command;

use silver_types::AppName;

use crate::error::Error;
use crate::supervise::AppUser;

/// How the runtime picks an app's user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AppUsers {
    /// The agent is not root: apps run as the agent's own user, as it does.
    #[default]
    Invoker,
    /// Every app as this one user (`--app-user`): no isolation between apps.
    Shared(AppUser),
    /// Each app as its own system user, made on first use (the default as root).
    PerApp,
}

/// The comment on every user the agent makes: how it knows the user is its own to use.
pub fn comment(node: &str, app: &AppName) -> String {
    crate::identity::Identity::owner_comment(node, app)
}

/// The app's Unix user's name: part of its [`crate::identity::Identity`], the one place
/// every app identity is named.
pub fn user_name(node: &str, app: &AppName) -> String {
    crate::identity::Identity::of(node, app).unix_user
}

/// The app's user, made now if it does not exist. A user of that name that the agent did not
/// make (its comment differs) is refused: taking it over would hand the app its files.
pub fn ensure(node: &str, app: &AppName) -> Result<AppUser, Error> {
    let name = user_name(node, app);
    let wanted = comment(node, app);
    if let Some(found) = existing(&name, &wanted)? {
        return Ok(found);
    }
    let mut useradd = Command::new("useradd");
    useradd
        .args(["--system", "--user-group", "--no-create-home"])
        .args(["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
        .args(["--comment", &wanted])
        .arg(&name);
    let out = crate::command::run(useradd, crate::command::Stdin::Null, crate::command::ADMIN)
        .map_err(|source| Error::UserAdd {
            name: name.clone(),
            source,
        })?;
    // Another activation may have made it a moment ago; `existing` then finds it.
    if let Some(found) = existing(&name, &wanted)? {
        return Ok(found);
    }
    Err(Error::UserAddRefused {
        name,
        message: crate::command::error_line(&out.stderr, &[]),
    })
}

/// The user named `name` if it exists and is the one the agent made for this app: one made for
/// another app, or by someone else, is refused with its comment, which names its owner.
fn existing(name: &str, wanted: &str) -> Result<Option<AppUser>, Error> {
    let Some(user) = nix::unistd::User::from_name(name).ok().flatten() else {
        return Ok(None);
    };
    let gecos = user.gecos.to_string_lossy().into_owned();
    if gecos != wanted {
        return Err(Error::UserTaken {
            name: name.to_string(),
            comment: gecos,
        });
    }
    Ok(Some(AppUser {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(node: &str, app: &str, expected: &str) {
        let app = AppName::parse(app).unwrap();
        let name = user_name(node, &app);
        assert_eq!(name, expected);
        assert!(name.len() <= 32, "{name}");
        assert!(name.starts_with('s'));
    }

    #[test]
    fn user_names() {
        check("3f9a1c0b", "blog", "s3f9a1c-blog");
        check("3f9a1c0b", "9lives", "s3f9a1c-9lives");
        check("3f9a1c0b", "my_app-2", "s3f9a1c-my_app-2");
        // Dotted or long: cut, with a hash of the whole name.
        let dotted = user_name("3f9a1c0b", &AppName::parse("example.com").unwrap());
        assert!(dotted.starts_with("s3f9a1c-example_com-"), "{dotted}");
        let long = "a".repeat(60);
        let one = user_name("3f9a1c0b", &AppName::parse(&long).unwrap());
        let other = user_name("3f9a1c0b", &AppName::parse(&format!("{long}b")).unwrap());
        assert_ne!(one, other);
        assert!(one.len() <= 32 && other.len() <= 32);
        assert_eq!(dotted.len(), 31);
    }
}
