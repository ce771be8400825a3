//! WordPress from Debian's own package (`apt-get download` and `dpkg -x`, nothing installed),
//! with Silver Lining's runner and a wp-config.php that reads `CONFIG_MYSQL_*` and its salts from
//! `SILVER_SECRET`: installed by `update_fetch`, a post made with `silver run`, seen on the front
//! page, redeployed under load, and brought back on another node by backup and restore.
//! System tier: php-fpm, MariaDB, and Debian's package archive for the download.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::servers::*;
use common::*;

/// WordPress, its theme, and the packages its 24 links point into.
const PACKAGES: &[&str] = &[
    "wordpress",
    "wordpress-theme-twentytwentyone",
    "php-getid3",
    "libjs-underscore",
    "libjs-cropper",
];

/// The packages, downloaded once per target directory, unpacked into `root`; the app is
/// `root/usr/share/wordpress`.
fn debian_wordpress(root: &Path) -> PathBuf {
    let debs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wordpress-debs");
    std::fs::create_dir_all(&debs).unwrap();
    for package in PACKAGES {
        let have = std::fs::read_dir(&debs).unwrap().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
        });
        if !have {
            let out = std::process::Command::new("apt-get")
                .args(["download", package])
                .current_dir(&debs)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "apt-get download {package}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    for deb in std::fs::read_dir(&debs).unwrap().flatten() {
        let status = std::process::Command::new("dpkg")
            .arg("-x")
            .arg(deb.path())
            .arg(root)
            .status()
            .unwrap();
        assert!(status.success(), "dpkg -x {}", deb.path().display());
    }
    root.join("usr/share/wordpress")
}

const APP_INI: &str = "[production]
app_name = wp
runner = runner.php
php_root = .
default_location = wp.test
service.mysql =
update_fetch = script:php silver-update.php
";

/// Silver Lining's docs/examples/wordpress/runner.php, without its debugging line.
const RUNNER: &str = r#"<?php
$path = silver_call_next("{$silver_base}/index.php");
include $path;
"#;

const WP_CONFIG: &str = r#"<?php
// The database silver made for this app on this node, and salts from the app's own secret.
define('DB_NAME', getenv('CONFIG_MYSQL_DBNAME'));
define('DB_USER', getenv('CONFIG_MYSQL_USER'));
define('DB_PASSWORD', getenv('CONFIG_MYSQL_PASSWORD'));
define('DB_HOST', getenv('CONFIG_MYSQL_HOST'));
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
$silver_salt = defined('SILVER_SECRET') ? SILVER_SECRET : 'command line';
foreach (['AUTH', 'SECURE_AUTH', 'LOGGED_IN', 'NONCE'] as $i => $name) {
    define("{$name}_KEY", hash('sha256', "key $i $silver_salt"));
    define("{$name}_SALT", hash('sha256', "salt $i $silver_salt"));
}
define('WP_HOME', 'http://' . getenv('SILVER_CANONICAL_HOSTNAME'));
define('WP_SITEURL', WP_HOME);
define('WP_DEFAULT_THEME', 'twentytwentyone');
define('DISALLOW_FILE_MODS', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
$table_prefix = 'wp_';
if (!defined('ABSPATH')) {
    define('ABSPATH', __DIR__ . '/');
}
require_once ABSPATH . 'wp-settings.php';
"#;

/// `update_fetch`: installs the blog unless it is there (Silver Lining's silver-update.php,
/// without its questions).
const UPDATE: &str = r#"<?php
$_SERVER['HTTP_HOST'] = getenv('SILVER_CANONICAL_HOSTNAME');
define('WP_INSTALLING', true);
require __DIR__ . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
if (is_blog_installed()) {
    echo "already installed\n";
} else {
    wp_install('Silver Blog', 'admin', 'admin@wp.test', true, '', wp_generate_password(24));
    echo "installed\n";
}
"#;

const MAKE_POST: &str = r#"<?php
$_SERVER['HTTP_HOST'] = getenv('SILVER_CANONICAL_HOSTNAME');
require __DIR__ . '/wp-load.php';
$id = wp_insert_post(['post_title' => $argv[1], 'post_content' => 'Posted by silver run.',
                      'post_status' => 'publish'], true);
if (is_wp_error($id)) { fwrite(STDERR, $id->get_error_message() . "\n"); exit(1); }
echo "post $id\n";
"#;

fn wordpress_app(root: &Path) -> PathBuf {
    let app = debian_wordpress(root);
    for (name, text) in [
        ("app.ini", APP_INI),
        ("runner.php", RUNNER),
        ("wp-config.php", WP_CONFIG),
        ("silver-update.php", UPDATE),
        ("make-post.php", MAKE_POST),
        // Debian's own link to /etc/wordpress/htaccess: Apache's, and nothing here.
        (".silverignore", ".htaccess\n"),
    ] {
        let path = app.join(name);
        let _ = std::fs::remove_file(&path);
        std::fs::write(path, text).unwrap();
    }
    app
}

fn pack(app: &Path, out: &Path) -> PathBuf {
    let packed = silver()
        .arg("pack")
        .arg(app)
        .arg("-o")
        .arg(out)
        .args(["--dereference", "--json"])
        .output()
        .unwrap();
    assert!(packed.status.success(), "{}", stderr(&packed));
    let report: serde_json::Value = serde_json::from_slice(&packed.stdout).unwrap();
    PathBuf::from(report["archive"].as_str().unwrap())
}

fn deployed(agent: &Agent, tmp: &Path, archive: &Path) {
    let out = agent.deploy(&tmp.join("cache"), archive, &[]);
    if !out.status.success() {
        let logs = agent
            .silver()
            .args(["logs", "wp", "-n", "60"])
            .output()
            .unwrap();
        panic!("{}\n{}", stderr(&out), stdout(&logs));
    }
}

#[test]
#[ignore = "system tier (php-fpm, MariaDB, Debian's archive): cargo test -- --include-ignored"]
fn wordpress_from_debians_package_posts_redeploys_and_restores_on_another_node() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = MariaDb::start(tmp.path());
    let env = [("SILVER_MYSQL_URL", db.admin_url())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let one = Agent::start_with_env(&tmp.path().join("node1"), &[], &env);
    let app = wordpress_app(&tmp.path().join("debian"));
    let archive = pack(&app, &tmp.path().join("dist"));
    deployed(&one, tmp.path(), &archive);

    let made = one
        .silver()
        .args([
            "run",
            "wp",
            "--",
            "php",
            "make-post.php",
            "Hello from silver",
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let front = get(&one.front, "wp.test", "/");
    assert_eq!(
        front.status,
        200,
        "{}",
        &front.body[..front.body.len().min(2000)]
    );
    assert!(
        front.body.contains("Hello from silver"),
        "no post on the front page"
    );
    // Static files under php_root come from the router, dereferenced links included.
    let js = get(&one.front, "wp.test", "/wp-includes/js/underscore.min.js");
    assert_eq!(js.status, 200);
    assert!(
        js.body.contains("define(\"underscore\""),
        "{}",
        &js.body[..js.body.len().min(200)]
    );

    // A redeploy (a new release: one more file) under load drops no request.
    std::fs::write(app.join("version.txt"), "2\n").unwrap();
    let second = pack(&app, &tmp.path().join("dist"));
    let load = Load::start(&one.front, "wp.test", "/", 3, |got| {
        got.status == 200 && got.body.contains("Hello from silver")
    });
    deployed(&one, tmp.path(), &second);
    // Requests on the new release too: a few more answers after the deploy returned.
    let page = get(&one.front, "wp.test", "/");
    assert!(page.body.contains("Hello from silver"));
    assert!(load.stop_all_good() > 0);
    assert_eq!(get(&one.front, "wp.test", "/version.txt").body, "2\n");

    // Backup here, restore on another node: the post comes back there.
    let backup = tmp.path().join("wp.tar.zst");
    let saved = one
        .silver()
        .args(["backup", "wp"])
        .arg(&backup)
        .output()
        .unwrap();
    assert!(saved.status.success(), "{}", stderr(&saved));
    let two = Agent::start_with_env(&tmp.path().join("node2"), &[], &env);
    deployed(&two, tmp.path(), &second);
    assert!(!get(&two.front, "wp.test", "/")
        .body
        .contains("Hello from silver"));
    let restored = two
        .silver()
        .arg("restore")
        .arg(&backup)
        .arg("wp")
        .output()
        .unwrap();
    assert!(restored.status.success(), "{}", stderr(&restored));
    let front = get(&two.front, "wp.test", "/");
    assert_eq!(front.status, 200);
    assert!(
        front.body.contains("Hello from silver"),
        "the post did not come back"
    );
}
