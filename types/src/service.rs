//! The services a node provides: one list, which every part that handles services matches on.

/// The services, each with its name in app.ini, backups and messages: the one list, from
/// which the enum, [`ServiceKind::ALL`] and [`ServiceKind::name`] are all made, so none can
/// miss a service the others have.
macro_rules! service_kinds {
    ($($variant:ident => $name:literal,)*) => {
        /// A service an app asks for with `service.<name> =` in app.ini.
        ///
        /// Adding one is adding a line to this list; every `match` over it (the runtime's
        /// service registry, `dump_file`) then fails to compile until it handles the new one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ServiceKind {
            $($variant,)*
        }

        impl ServiceKind {
            /// Every service, in the order of the list.
            pub const ALL: &'static [ServiceKind] = &[$(ServiceKind::$variant,)*];

            /// The name in app.ini, backups and messages.
            pub fn name(self) -> &'static str {
                match self {
                    $(ServiceKind::$variant => $name,)*
                }
            }
        }
    };
}

service_kinds! {
    Files => "files",
    WritableRoot => "writable_root",
    Postgresql => "postgresql",
    Postgis => "postgis",
    Mysql => "mysql",
    Couchdb => "couchdb",
    Redis => "redis",
}

impl ServiceKind {
    /// The name its data goes by in a backup's `backup.json` and a restore's journal:
    /// `postgis` keeps `postgresql`'s (the same database, with an extension).
    pub fn data_name(self) -> &'static str {
        match self {
            ServiceKind::Postgis => ServiceKind::Postgresql.name(),
            kind => kind.name(),
        }
    }

    /// The file its data takes in a backup.
    pub fn dump_file(self) -> &'static str {
        match self {
            ServiceKind::Files => "files.tar",
            ServiceKind::WritableRoot => "writable_root.tar",
            ServiceKind::Postgresql | ServiceKind::Postgis => "postgresql.sql",
            ServiceKind::Mysql => "mysql.sql",
            ServiceKind::Couchdb => "couchdb.jsonl",
            ServiceKind::Redis => "redis.jsonl",
        }
    }

    /// The service called `name`; `postgres` is read as `postgresql`, as Silver Lining did.
    pub fn parse(name: &str) -> Option<ServiceKind> {
        let name = if name == "postgres" {
            "postgresql"
        } else {
            name
        };
        ServiceKind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Every service's name, in the order of [`ServiceKind::ALL`].
    pub fn names() -> Vec<&'static str> {
        ServiceKind::ALL.iter().map(|k| k.name()).collect()
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ServiceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<ServiceKind, String> {
        ServiceKind::parse(s).ok_or_else(|| {
            format!(
                "`{s}` is not a service silver offers ({})",
                ServiceKind::names().join(", ")
            )
        })
    }
}

impl serde::Serialize for ServiceKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for ServiceKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ServiceKind, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_kind() {
        for &kind in ServiceKind::ALL {
            assert_eq!(ServiceKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(
            ServiceKind::parse("postgres"),
            Some(ServiceKind::Postgresql)
        );
        assert_eq!(ServiceKind::parse("mongodb"), None);
    }
}
