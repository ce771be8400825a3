//! The package set a recipe resolves to against its mirror right now, so the bootstrap step's
//! cache key changes when the mirror would install different versions (a security update), not
//! only when the recipe's package list changes.
//!
//! The resolution is mmdebstrap's own, run with `--simulate`: the same apt, keyring, variant and
//! includes as the real bootstrap, without downloading or unpacking a package (a few seconds).

use std::collections::BTreeSet;
use std::process::Command;

use crate::error::Error;
use crate::recipe::Recipe;

/// `name version arch` for every package the bootstrap would install, sorted.
pub fn resolve(recipe: &Recipe) -> Result<Vec<String>, Error> {
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg("--simulate").arg("--verbose");
    cmd.args(mmdebstrap_args(recipe));
    cmd.arg(&recipe.image.suite)
        .arg("/dev/null")
        .arg(&recipe.image.mirror);
    let out = cmd.output().map_err(|source| Error::Spawn {
        tool: "mmdebstrap --simulate".into(),
        source,
    })?;
    // apt's simulation report goes to stderr with mmdebstrap's own messages.
    let report = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Error::tool_failed("mmdebstrap --simulate", &out, 10));
    }
    let packages = parse_simulation(&report);
    if packages.is_empty() {
        return Err(Error::NothingResolved {
            tool: "mmdebstrap --simulate".into(),
        });
    }
    Ok(packages)
}

/// The options the simulation and the real bootstrap share: whatever changes what apt picks.
pub fn mmdebstrap_args(recipe: &Recipe) -> Vec<String> {
    let i = &recipe.image;
    let mut args = vec![
        "--mode=root".to_string(),
        "--variant=apt".to_string(),
        format!("--architectures={}", i.architecture),
        format!("--keyring={}", i.keyring),
    ];
    if !recipe.packages.include.is_empty() {
        args.push(format!("--include={}", recipe.packages.include.join(",")));
    }
    args
}

/// apt's `Inst NAME (VERSION RELEASE [ARCH])` lines → sorted, unique `NAME VERSION ARCH`. The
/// essential set is simulated twice (download, then install): the set dedupes it.
fn parse_simulation(report: &str) -> Vec<String> {
    let mut set = BTreeSet::new();
    for line in report.lines() {
        let Some(rest) = line.strip_prefix("Inst ") else {
            continue;
        };
        let Some((name, details)) = rest.split_once(" (") else {
            continue;
        };
        let Some(version) = details.split_whitespace().next() else {
            continue;
        };
        let arch = details
            .split_once('[')
            .and_then(|(_, a)| a.split_once(']'))
            .map_or("", |(a, _)| a);
        set.insert(format!("{name} {version} {arch}").trim_end().to_string());
    }
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(report: &str, expected: &[&str]) {
        assert_eq!(parse_simulation(report), expected);
    }

    #[test]
    fn inst_lines_become_sorted_unique_packages() {
        check(
            "I: simulate downloading packages with apt...\n\
             Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []\n\
             Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])\n\
             Inst gcc-12-base (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64])\n\
             Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])\n\
             Inst tzdata (2025b-0+deb12u2 Debian:12.15/oldstable [all])\n",
            &[
                "gcc-12-base 12.2.0-14+deb12u1 amd64",
                "libc6 2.36-9+deb12u14 amd64",
                "tzdata 2025b-0+deb12u2 all",
            ],
        );
    }

    #[test]
    fn other_lines_are_ignored() {
        check(
            "I: success in 5.1 seconds\nInst broken-line\nW: skipping\n",
            &[],
        );
    }
}
