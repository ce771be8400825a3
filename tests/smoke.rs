//! The node smoke test (issue 5): bake the Debian recipe, boot it in QEMU, wait for the agent,
//! deploy a fixture app over ssh with `silver deploy`, and fetch a page through the node's front
//! door. Real mmdebstrap, real QEMU (KVM where it works, TCG otherwise). Needs root, as baking
//! does; `.ci/run` runs as root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// P, P+1 and P+2 free: SSH, the front door and the agent's TLS port.
fn free_ports() -> u16 {
    for _ in 0..100 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if port < 65000 && free(port + 1) && free(port + 2) {
            return port;
        }
    }
    panic!("no three free consecutive ports");
}

#[test]
#[ignore = "system tier (root, mmdebstrap, QEMU): cargo test -- --include-ignored"]
fn bake_boot_deploy_and_fetch_a_page() {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    assert!(
        is_root,
        "baking needs root (mmdebstrap --mode=root): run the tests as root, as .ci/run does"
    );
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let image = tmp.path().join("image");
    let recipe = fixtures().join("../image-recipes/debian-bookworm.toml");

    // 1. Bake.
    let out = silver()
        .arg("bake")
        .arg(&recipe)
        .arg("-o")
        .arg(&image)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .arg("--json")
        .timeout(std::time::Duration::from_secs(1500))
        .output()
        .unwrap();
    assert!(out.status.success(), "bake failed:\n{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = &report["manifest"];
    assert!(manifest["packages"]["gunicorn"].is_string(), "{manifest}");
    // PHP apps' php-fpm, php and mysqli, as their packages name them (Debian's php8.2-*).
    for package in ["php-fpm", "php-cli", "php-mysql"] {
        assert!(
            manifest["packages"][package].is_string(),
            "{package}: {manifest}"
        );
    }
    for output in [
        "rootfs.tar.zst",
        "disk.raw",
        "disk.qcow2",
        "vmlinuz",
        "initrd.img",
    ] {
        assert!(
            manifest["outputs"][output].is_string(),
            "{output} missing from {manifest}"
        );
        assert!(image.join(output).is_file(), "{output}");
    }
    // Generalized: no machine-id, host keys, snakeoil key or agent token in the image.
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc {} | tar -tv",
            image.join("rootfs.tar.zst").display()
        ))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for secret in [
        "ssh_host_",
        "ssl-cert-snakeoil.key",
        "var/lib/silver/token",
        "postgresql/15/main/global",
    ] {
        assert!(!listing.contains(secret), "the image carries {secret}");
    }
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with("./etc/machine-id") && l.contains(" 0 ")),
        "machine-id is not empty"
    );

    // A files-only change reuses the bootstrap, and --explain names the file.
    let recipes = tmp.path().join("recipes");
    std::fs::create_dir_all(recipes.join("files")).unwrap();
    std::fs::copy(
        fixtures().join("../image-recipes/files/silver-firstboot.service"),
        recipes.join("files/silver-firstboot.service"),
    )
    .unwrap();
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "formats = [\"rootfs\", \"raw\", \"qcow2\", \"kernel\"]",
        "formats = [\"rootfs\"]",
    ) + "\n[[files]]\npath = \"/etc/motd\"\ncontent = \"a silver node\\n\"\n";
    std::fs::write(recipes.join("debian-bookworm.toml"), text).unwrap();
    let rebake = silver()
        .arg("bake")
        .arg(recipes.join("debian-bookworm.toml"))
        .arg("-o")
        .arg(tmp.path().join("image2"))
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .args(["--explain", "--json"])
        .timeout(std::time::Duration::from_secs(900))
        .output()
        .unwrap();
    assert!(
        rebake.status.success(),
        "re-bake failed:\n{}",
        stderr(&rebake)
    );
    let report: serde_json::Value = serde_json::from_slice(&rebake.stdout).unwrap();
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"], "bootstrap");
    assert_eq!(steps[0]["reused"], true, "{report}");
    assert_eq!(steps[1]["reused"], false, "{report}");
    let why = steps[1]["why"].as_str().unwrap();
    assert!(why.contains("file /etc/motd"), "{why}");

    // 2. Boot, and 3. wait for the agent.
    let key = tmp.path().join("id_ed25519");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(ok.success());
    let port = free_ports();
    let nodes = tmp.path().join("nodes");
    let boot = silver()
        .args(["node", "boot"])
        .arg(&image)
        .args([
            "--name",
            "smoke",
            "--port-base",
            &port.to_string(),
            "--json",
        ])
        .arg("--ssh-key")
        .arg(key.with_extension("pub"))
        .arg("--nodes-dir")
        .arg(&nodes)
        .timeout(std::time::Duration::from_secs(900))
        .output()
        .unwrap();
    // Stop the VM whatever happens next.
    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = silver()
                .args(["node", "stop", "smoke", "--nodes-dir"])
                .arg(&self.0)
                .output();
        }
    }
    let _stop = Stop(nodes.clone());
    assert!(boot.status.success(), "boot failed:\n{}", stderr(&boot));
    let node: serde_json::Value = serde_json::from_slice(&boot.stdout).unwrap();
    let url = node["node_url"].as_str().unwrap();

    // 4. Deploy over ssh (the token is read on the node).
    let ssh = format!(
        "ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        key.display()
    );
    let app = tmp.path().join("hello");
    copy_fixture("hello-wsgi", &app);
    // The node is emulated (TCG) when the machine has no KVM: gunicorn's first start there can
    // take longer than the default 30 s, more so on a busy 2-core machine.
    let ini = std::fs::read_to_string(app.join("app.ini")).unwrap();
    std::fs::write(app.join("app.ini"), ini + "health_timeout = 240\n").unwrap();
    let deploy = |app: &Path| {
        let out = silver()
            .env("SILVER_SSH", &ssh)
            .env("SILVER_CACHE_DIR", tmp.path().join("manifests"))
            .arg("deploy")
            .arg(app)
            .args(["--node", url])
            .timeout(std::time::Duration::from_secs(300))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "deploy of {} failed:\n{}",
            app.display(),
            stderr(&out)
        );
    };
    deploy(&app);

    // 5. A page through the node's front door.
    let page = get(node["front_url"].as_str().unwrap(), "hello.localhost", "/");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body.contains("<h1>Hello, hello.localhost!</h1>"),
        "{}",
        page.body
    );

    // The agent's own port, forwarded: TLS with the node's certificate, by the node's name.
    let releases = silver()
        .env("SILVER_NODES_DIR", &nodes)
        .args(["releases", "hello", "--node", "smoke", "--json"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(releases.status.success(), "{}", stderr(&releases));
    assert!(
        stdout(&releases).contains("\"active\""),
        "{}",
        stdout(&releases)
    );

    // 6. A PHP app on the same node: the image's php-fpm and php-mysql, run.
    let php = tmp.path().join("php");
    std::fs::create_dir_all(php.join("site")).unwrap();
    std::fs::write(
        php.join("app.ini"),
        "[production]\napp_name = phpsmoke\nplatform = php\nphp_root = site/\n\
         runner = site/runner.php\ndefault_location = php.localhost\nhealth_timeout = 240\n",
    )
    .unwrap();
    std::fs::write(
        php.join("site/runner.php"),
        "<?php echo 'php ', PHP_MAJOR_VERSION, ' mysqli ', extension_loaded('mysqli') ? 'yes' : 'no';",
    )
    .unwrap();
    deploy(&php);
    let page = get(node["front_url"].as_str().unwrap(), "php.localhost", "/");
    assert_eq!(page.body, "php 8 mysqli yes", "{page:?}");

    let list = silver()
        .args(["node", "list", "--json", "--nodes-dir"])
        .arg(&nodes)
        .output()
        .unwrap();
    assert!(
        stdout(&list).contains("\"running\":true"),
        "{}",
        stdout(&list)
    );
}
