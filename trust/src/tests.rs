//! The trust policy's refusals, one case per line: each record is made and signed as a user
//! would, then changed the way an attacker would.

use std::path::Path;

use silver_types::{AppName, ArtifactId};

use crate::keys;
use crate::records::{self, Build, Promotion, SignedRecord, Statement};
use crate::{Policy, Request};

struct Keys {
    public: String,
    secret: keys::SecretKey,
}

fn key() -> Keys {
    let (public, secret) = keys::generate("test").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.key");
    std::fs::write(&path, secret).unwrap();
    Keys {
        public: public.lines().nth(1).unwrap().to_string(),
        secret: keys::read_secret(&path).unwrap(),
    }
}

fn id(n: u8) -> ArtifactId {
    ArtifactId::parse(&format!("b3:{}", format!("{n:02x}").repeat(32))).unwrap()
}

fn app(name: &str) -> AppName {
    AppName::parse(name).unwrap()
}

fn signed(statement: &Statement, by: &[&Keys]) -> SignedRecord {
    let text = statement.to_text();
    SignedRecord {
        signatures: by
            .iter()
            .map(|k| records::sign(statement, &text, &k.secret).unwrap())
            .collect(),
        statement: text,
    }
}

fn build(app_name: &str, artifact: u8) -> Statement {
    Statement::Build(Build {
        app: app(app_name),
        id: id(artifact),
        sha256: format!("sha256:{}", "0".repeat(64)),
        commit: Some("abc123".into()),
        built_at: "2026-12-03T06:00:00Z".into(),
        built_by: "ci@runner".into(),
        ci_run: None,
    })
}

fn promotion(app_name: &str, env: &str, artifact: u8, sequence: u64, expires: &str) -> Statement {
    Statement::Promotion(Promotion {
        app: app(app_name),
        environment: env.into(),
        id: id(artifact),
        sequence,
        expires: expires.into(),
        promoted_at: "2026-12-03T06:00:00Z".into(),
        promoted_by: "alice@laptop".into(),
    })
}

const FUTURE: &str = "2030-01-01T00:00:00Z";
/// 2026-12-03T06:00:00Z.
const NOW: u64 = 1_796_277_600;

#[test]
fn a_node_with_a_policy_takes_only_what_both_roles_signed() {
    let (ci, ops, ops2, stranger) = (key(), key(), key(), key());
    let policy_text = format!(
        "environment = \"production\"\n[build]\nkeys = [\"{}\"]\n[promote]\nkeys = [\"{}\", \"{}\"]\nthreshold = 1\n",
        ci.public, ops.public, ops2.public
    );
    let policy = Policy::parse(&policy_text, Path::new("trust.toml")).unwrap();
    let good_build = signed(&build("shop", 1), &[&ci]);
    let check = |records: Vec<SignedRecord>, seen: Option<u64>, expected: Result<u64, &str>| {
        let req = Request {
            app: &app("shop"),
            id: &id(1),
            seen,
            now: NOW,
        };
        match (policy.check(req, &records, &[]), expected) {
            (Ok(accepted), Ok(sequence)) => assert_eq!(accepted.promotion.0.sequence, sequence),
            (Err(e), Err(why)) => assert!(e.to_string().contains(why), "wanted {why:?}, got: {e}"),
            (got, want) => panic!("got {got:?}, wanted {want:?}"),
        }
    };
    let promote = |env: &str, artifact: u8, seq: u64, expires: &str, by: &[&Keys]| {
        signed(&promotion("shop", env, artifact, seq, expires), by)
    };
    check(
        vec![
            good_build.clone(),
            promote("production", 1, 5, FUTURE, &[&ops]),
        ],
        None,
        Ok(5),
    );
    check(
        vec![
            good_build.clone(),
            promote("production", 1, 5, FUTURE, &[&ops2]),
        ],
        Some(4),
        Ok(5),
    );
    // Each refusal names its reason.
    check(
        vec![good_build.clone(), promote("production", 1, 5, FUTURE, &[])],
        None,
        Err("is unsigned"),
    );
    check(
        vec![
            good_build.clone(),
            promote("production", 1, 5, FUTURE, &[&stranger]),
        ],
        None,
        Err("does not name for promote"),
    );
    check(
        vec![
            good_build.clone(),
            promote("production", 1, 5, FUTURE, &[&ci]),
        ],
        None,
        Err("does not name for promote"),
    );
    check(
        vec![
            good_build.clone(),
            promote("staging", 1, 5, FUTURE, &[&ops]),
        ],
        None,
        Err("for environment `staging`; this node is `production`"),
    );
    check(
        vec![
            good_build.clone(),
            promote("production", 2, 5, FUTURE, &[&ops]),
        ],
        None,
        Err("names artifact"),
    );
    check(
        vec![
            good_build.clone(),
            promote("production", 1, 5, FUTURE, &[&ops]),
        ],
        Some(5),
        Err("a replay or a downgrade"),
    );
    check(
        vec![
            good_build.clone(),
            promote("production", 1, 3, FUTURE, &[&ops]),
        ],
        Some(5),
        Err("a replay or a downgrade"),
    );
    check(
        vec![
            good_build.clone(),
            promote("production", 1, 5, "2026-12-01T00:00:00Z", &[&ops]),
        ],
        None,
        Err("expired at 2026-12-01"),
    );
    check(vec![good_build.clone()], None, Err("no promotion record"));
    check(
        vec![promote("production", 1, 5, FUTURE, &[&ops])],
        None,
        Err("no build record"),
    );
    check(
        vec![
            signed(&build("shop", 1), &[&ops]),
            promote("production", 1, 5, FUTURE, &[&ops]),
        ],
        None,
        Err("does not name for build"),
    );
    check(
        vec![
            signed(&build("blog", 1), &[&ci]),
            promote("production", 1, 5, FUTURE, &[&ops]),
        ],
        None,
        Err("is for app `blog`, not `shop`"),
    );
    let other_app = signed(&promotion("blog", "production", 1, 5, FUTURE), &[&ops]);
    check(
        vec![good_build.clone(), other_app],
        None,
        Err("is for app `blog`"),
    );
    // Changed after signing: the environment edited from staging to production.
    let mut tampered = promote("staging", 1, 5, FUTURE, &[&ops]);
    tampered.statement = tampered.statement.replace("staging", "production");
    check(
        vec![good_build.clone(), tampered],
        None,
        Err("does not verify"),
    );
    let mut junk = promote("production", 1, 5, FUTURE, &[&ops]);
    junk.signatures = vec!["untrusted comment: x\nnot base64\n".into()];
    check(vec![good_build, junk], None, Err("not minisign's format"));
}

#[test]
fn a_threshold_counts_distinct_keys() {
    let (ci, a, b) = (key(), key(), key());
    let text = format!(
        "environment = \"prod\"\n[build]\nkeys = [\"{}\"]\n[promote]\nkeys = [\"{}\", \"{}\"]\nthreshold = 2\n",
        ci.public, a.public, b.public
    );
    let policy = Policy::parse(&text, Path::new("trust.toml")).unwrap();
    let req = Request {
        app: &app("shop"),
        id: &id(1),
        seen: None,
        now: NOW,
    };
    let b1 = signed(&build("shop", 1), &[&ci]);
    let twice_by_one = signed(&promotion("shop", "prod", 1, 1, FUTURE), &[&a, &a]);
    let e = policy
        .check(req, &[b1.clone(), twice_by_one], &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1 valid signature(s); the trust policy wants 2"),
        "{e}"
    );
    let by_both = signed(&promotion("shop", "prod", 1, 1, FUTURE), &[&a, &b]);
    policy.check(req, &[b1, by_both], &[]).unwrap();
}

#[test]
fn a_rollback_brings_a_promotion_and_uses_the_build_record_kept() {
    let (ci, ops) = (key(), key());
    let text = format!(
        "environment = \"prod\"\n[build]\nkeys = [\"{}\"]\n[promote]\nkeys = [\"{}\"]\n",
        ci.public, ops.public
    );
    let policy = Policy::parse(&text, Path::new("trust.toml")).unwrap();
    let kept = vec![
        signed(&build("shop", 1), &[&ci]),
        signed(&promotion("shop", "prod", 1, 9, FUTURE), &[&ops]),
    ];
    let req = Request {
        app: &app("shop"),
        id: &id(1),
        seen: Some(9),
        now: NOW,
    };
    // The kept promotion is not taken again.
    let e = policy.check(req, &[], &kept).unwrap_err().to_string();
    assert!(e.contains("no promotion record"), "{e}");
    let rollback = signed(&promotion("shop", "prod", 1, 10, FUTURE), &[&ops]);
    policy.check(req, &[rollback], &kept).unwrap();
}

#[test]
fn policies_are_refused_naming_the_line_and_rotate_only_with_root_signatures() {
    let check = |text: &str, why: &str| {
        let e = Policy::parse(text, Path::new("/etc/silver/trust.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/silver/trust.toml") && e.contains(why),
            "{e}"
        );
    };
    let (ci, ops, next) = (key(), key(), key());
    check(
        "environment = \"p\"\n[build]\nkeys = [\"RWQnot-a-key\"]\n[promote]\nkeys = []\n",
        "line 2",
    );
    check(&format!("environment = \"p\"\n[build]\nkeys = [\"{}\"]\n[promote]\nkeys = [\"{}\"]\nthreshold = 2\n", ci.public, ops.public), "threshold is 2, with 1 key");
    check("environment = \"p\"\nbuild = 3\n", "line 2");
    check(&format!("environment = \"p\"\nsurprise = 1\n[build]\nkeys = [\"{}\"]\n[promote]\nkeys = [\"{}\"]\n", ci.public, ops.public), "unknown field");

    let old = Policy::parse(&format!("environment = \"p\"\n[build]\nkeys = [\"{}\"]\n[promote]\nkeys = [\"{}\"]\n[root]\nkeys = [\"{}\"]\n", ci.public, ops.public, ops.public), Path::new("t")).unwrap();
    let new_text = format!(
        "environment = \"p\"\n[build]\nkeys = [\"{}\"]\n[promote]\nkeys = [\"{}\"]\n",
        ci.public, next.public
    );
    let sign = |k: &Keys| {
        let s = Statement::parse(&build("shop", 1).to_text()).unwrap();
        records::sign(&s, &new_text, &k.secret).unwrap()
    };
    let e = old
        .check_rotation(&new_text, &[], Path::new("t"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("signed by 1 of the current policy's `root` keys; it has 0"),
        "{e}"
    );
    let e = old
        .check_rotation(&new_text, &[sign(&next)], Path::new("t"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not name for root"), "{e}");
    let rotated = old
        .check_rotation(&new_text, &[sign(&ops)], Path::new("t"))
        .unwrap();
    assert_eq!(
        keys::public_id(&rotated.promote.keys[0]),
        keys::public_id(&keys::parse_public(&next.public).unwrap())
    );
}
