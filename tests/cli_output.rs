//! What each subcommand says to a person: its main success and its most common error, run
//! against a real agent on loopback and kept as one transcript (an inline insta snapshot with
//! filters for what changes from run to run: temp paths, ids, ports, times, users, sizes).
//! A change to any message shows up here as a diff to review.

mod common;

use common::*;

/// One step of the transcript: the arguments, and what goes to its stdin.
struct Step {
    args: Vec<String>,
    stdin: Option<&'static str>,
}

fn step(args: &[&str]) -> Step {
    Step {
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: None,
    }
}

/// Runs every step in `dir` (against `agent`, if any), and writes each as `$ silver ARGS`, its
/// stderr, its stdout and its exit code.
fn transcript(agent: Option<&Agent>, dir: &std::path::Path, steps: &[Step]) -> String {
    let mut text = String::new();
    for s in steps {
        let mut cmd = agent.map_or_else(silver, Agent::silver);
        cmd.current_dir(dir)
            .env("SILVER_NODES_DIR", dir.join("nodes"))
            .env("HOME", dir)
            .env("SILVER_CACHE_DIR", dir.join("cache"))
            .args(&s.args);
        if let Some(input) = s.stdin {
            cmd.write_stdin(input);
        }
        let out = cmd.output().unwrap();
        text += &format!("$ silver {}\n", s.args.join(" "));
        for line in stderr(&out).lines().chain(stdout(&out).lines()) {
            text += &format!("{line}\n");
        }
        text += &format!("[exit {}]\n", out.status.code().unwrap_or(-1));
    }
    text
}

/// What changes from run to run, replaced by placeholders.
fn filters(tmp: &std::path::Path) -> Vec<(String, String)> {
    [
        (regex_lite::escape(tmp.to_str().unwrap()), "[TMP]"),
        (r"b3:[0-9a-f]{64}".into(), "[ID]"),
        (r"\b[0-9a-f]{12}\b".into(), "[ID12]"),
        (r"127\.0\.0\.1:\d+".into(), "127.0.0.1:[PORT]"),
        (
            r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?( UTC|Z)?".into(),
            "[TIME]",
        ),
        (r"\b\w+@[\w.-]+\b".into(), "[WHO]"),
        (r"\d+(\.\d+)? (B|KiB|MiB)\b".into(), "[SIZE]"),
        (r"\b\d+(\.\d+)?(ms|s)\b".into(), "[DURATION]"),
        (r"\bpid \d+".into(), "pid [PID]"),
        (r"\b[0-9A-F]{16}\b".into(), "[KEY ID]"),
        (r"\bRW[A-Za-z0-9+/]{54}".into(), "[PUBLIC KEY]"),
        (r"\b[0-9a-f]{64}\b".into(), "[SHA256]"),
        // Who apps run as depends on whether the tests run as root.
        (r"(?m)^ +Apps .*$".into(), "[WHO APPS RUN AS]"),
    ]
    .into_iter()
    .map(|(re, to)| (re, to.to_string()))
    .collect()
}

fn redacted(text: &str, tmp: &std::path::Path) -> String {
    filters(tmp).iter().fold(text.to_string(), |acc, (re, to)| {
        regex_lite::Regex::new(re)
            .unwrap()
            .replace_all(&acc, to.as_str())
            .into_owned()
    })
}

#[test]
fn every_node_subcommand_says_what_it_did_or_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    // Two versions of the sample app; paths are relative to the directory the steps run in.
    for (dir, version) in [("v1", "1"), ("v2", "2")] {
        copy_fixture("hello-wsgi", &tmp.path().join(dir));
        std::fs::write(tmp.path().join(dir).join("version.txt"), version).unwrap();
    }
    let (v1, _) = pack_dir(&tmp.path().join("v1"), &tmp.path().join("dist"));
    let v1 = &v1[3..15];
    let steps = [
        step(&["pack", "v1", "-o", "dist"]),
        step(&["pack", "nowhere"]),
        step(&["inspect", "dist/no-such.silver"]),
        step(&["verify", "dist/no-such.silver"]),
        step(&["deploy", "v1"]),
        step(&["deploy", "v2"]),
        step(&["deploy", "no-such-dir"]),
        step(&["releases", "hello"]),
        step(&["releases", "nosuch"]),
        step(&["rollback", "hello"]),
        step(&["rollback", "nosuch"]),
        step(&["activate", "hello", v1]),
        step(&["activate", "hello", "000000000000"]),
        step(&["pin", "hello", v1]),
        step(&["pin", "hello", "000000000000"]),
        step(&["unpin", "hello", v1]),
        step(&["gc"]),
        step(&["query"]),
        step(&["logs", "nosuch"]),
        step(&["run", "hello", "--", "echo", "hi"]),
        step(&["run", "nosuch", "--", "true"]),
        Step {
            stdin: Some("hi"),
            ..step(&["config", "set", "hello", "GREETING=-"])
        },
        step(&["config", "set", "hello", "PATH=/tmp"]),
        step(&["config", "list", "hello"]),
        step(&["disable", "hello"]),
        step(&["enable", "hello"]),
        step(&["backup", "hello", "backup"]),
        step(&["backup", "hello", "backup"]),
        step(&["restore", "backup", "hello"]),
        step(&["restore", "v1", "hello"]),
        step(&["checkpoints", "hello"]),
        step(&["clear", "hello", "--yes"]),
        step(&["clear", "hello"]),
        step(&["deactivate", "nowhere.test"]),
        step(&["deactivate", "hello.localhost"]),
    ];
    let text = transcript(Some(&agent), tmp.path(), &steps);
    insta::assert_snapshot!(redacted(&text, tmp.path()), @r#"
    $ silver pack v1 -o dist
          Packed hello [ID] (6 files, [SIZE] -> [SIZE], 0 fixups) into [TMP]/dist/hello-[ID12].silver
    [ID]
    [exit 0]
    $ silver pack nowhere
    error: failed to pack `[TMP]/nowhere`
      caused by: `[TMP]/nowhere` is not an app directory: it does not exist or is not a directory
    hint: give the directory that holds the app's `app.ini`
    [exit 1]
    $ silver inspect dist/no-such.silver
    error: cannot inspect `[TMP]/dist/no-such.silver`
      caused by: failed to read `[TMP]/dist/no-such.silver`
      caused by: No such file or directory (os error 2)
    [exit 1]
    $ silver verify dist/no-such.silver
    error: `[TMP]/dist/no-such.silver` did not verify
      caused by: failed to read `[TMP]/dist/no-such.silver`
      caused by: No such file or directory (os error 2)
    [exit 1]
    $ silver deploy v1
          Packed hello [ID]
          Update update_fetch /update | updated
        Deployed hello [ID] to http://127.0.0.1:[PORT] ([SIZE] sent, 6 objects sent, 0 already there)
         Serving at hello.localhost (processes: web)
    [ID]
    [exit 0]
    $ silver deploy v2
          Packed hello [ID]
          Update update_fetch /update | updated
        Deployed hello [ID] to http://127.0.0.1:[PORT] ([SIZE] sent, 1 object sent, 5 already there)
         Serving at hello.localhost (processes: web)
    [ID]
    [exit 0]
    $ silver deploy no-such-dir
    error: `[TMP]/no-such-dir` is neither an app directory nor a .silver artifact
      caused by: No such file or directory (os error 2)
    [exit 1]
    $ silver releases hello
    active    [ID]  [TIME]  [WHO]
    previous  [ID]  [TIME]  [WHO]
    [exit 0]
    $ silver releases nosuch
    error: node http://127.0.0.1:[PORT] answered 404: app `nosuch` has never been deployed to this node
    hint: deploy it first: `silver deploy APP_DIR --node URL`
    [exit 1]
    $ silver rollback hello
     Rolled back hello: [ID] is live (before: [ID])
    [ID]
    [exit 0]
    $ silver rollback nosuch
    error: node http://127.0.0.1:[PORT] answered 404: app `nosuch` has never been deployed to this node
    hint: deploy it first: `silver deploy APP_DIR --node URL`
    [exit 1]
    $ silver activate hello [ID12]
       Activated hello: [ID] is live (before: [ID])
    [ID]
    [exit 0]
    $ silver activate hello [ID12]
    error: node http://127.0.0.1:[PORT] answered 404: no artifact on this node has an id starting with b3:[ID12]
    hint: `silver releases APP` lists the releases this node has
    [exit 1]
    $ silver pin hello [ID12]
          Pinned hello b3:[ID12]
    [exit 0]
    $ silver pin hello [ID12]
    error: node http://127.0.0.1:[PORT] answered 404: no artifact on this node has an id starting with b3:[ID12]
    hint: `silver releases APP` lists the releases this node has
    [exit 1]
    $ silver unpin hello [ID12]
        Unpinned hello b3:[ID12]
    [exit 0]
    $ silver gc
           Freed [SIZE] in 0 objects
    [exit 0]
    $ silver query
    Site: hello
      hello.[ID12]: hello.localhost
    [exit 0]
    $ silver logs nosuch
    error: failed to read the logs of `nosuch` on http://127.0.0.1:[PORT]
      caused by: node http://127.0.0.1:[PORT] answered 404: app `nosuch` has no logs on this node
    hint: deploy it first: `silver deploy APP_DIR --node URL`
    [exit 1]
    $ silver run hello -- echo hi
    hi
    [exit 0]
    $ silver run nosuch -- true
    error: failed to run `true` in `nosuch` on http://127.0.0.1:[PORT]
      caused by: node http://127.0.0.1:[PORT] answered 404: app `nosuch` has no current release on this node
    hint: deploy it first: `silver deploy APP_DIR --node URL`
    [exit 1]
    $ silver config set hello GREETING=-
          Config hello v1: GREETING set
       Restarted hello runs with config v1
    [exit 0]
    $ silver config set hello PATH=/tmp
    error: config variable `PATH` decides which programs and libraries the app loads, which silver sets (PATH, PYTHONPATH, PYTHONHOME, PYTHONUSERBASE, VIRTUAL_ENV, LD_*, GLIBC_TUNABLES, GCONV_PATH)
    hint: ship libraries in the app's virtualenv or lib/python, and programs in its bin/
    [exit 1]
    $ silver config list hello
    GREETING
    [exit 0]
    $ silver disable hello
        Disabled hello shows the maintenance page (503)
    [exit 0]
    $ silver enable hello
         Enabled hello serves again
    [exit 0]
    $ silver backup hello backup
       Backed up hello (release [ID12], [TIME]) to backup: no service data
    [exit 0]
    $ silver backup hello backup
    error: failed to back up `hello` on http://127.0.0.1:[PORT] to backup
      caused by: `backup` already exists; a backup never overwrites one
    hint: choose a new name (a date in it helps), or remove the old one first
    [exit 1]
    $ silver restore backup hello
        Restored hello from the backup of hello (release [ID12], [TIME]): no service data
    [exit 0]
    $ silver restore v1 hello
    error: failed to restore v1 onto `hello` on http://127.0.0.1:[PORT]
      caused by: `v1` is not a backup silver can restore: it holds no `backup.json`, so it is not what `silver backup` wrote
    hint: give the directory or file `silver backup` wrote, unchanged
    [exit 1]
    $ silver checkpoints hello
            None hello has no checkpoints (they are taken before update_fetch, for apps with data services)
    [exit 0]
    $ silver clear hello --yes
          Update update_fetch /update | updated
         Cleared hello: its data was dropped and update_fetch ran again on [ID]
    [exit 0]
    $ silver clear hello
    error: `silver clear` drops every row and file of `hello` and asks first, but stdin is not a terminal
    hint: give --yes to clear without asking
    [exit 1]
    $ silver deactivate nowhere.test
    error: no app on node http://127.0.0.1:[PORT] serves `nowhere.test`
    hint: its apps serve at hello.localhost; give one of those, as `silver query` lists them
    [exit 1]
    $ silver deactivate hello.localhost
     Deactivated hello at hello.localhost: it serves nowhere now; its processes stopped
    [exit 0]
    "#);
}

#[test]
fn every_local_subcommand_says_what_it_did_or_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    copy_fixture("hello-wsgi", &tmp.path().join("hello"));
    let (id, archive) = pack_dir(&tmp.path().join("hello"), &tmp.path().join("dist"));
    let archive = archive.to_str().unwrap().to_string();
    // An empty store for fsck, and one whose token any user may read, which the agent refuses.
    for dir in ["store/objects/tmp", "store/artifacts", "store/apps", "open"] {
        std::fs::create_dir_all(tmp.path().join(dir)).unwrap();
    }
    std::fs::write(tmp.path().join("open/token"), "secret").unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(tmp.path().join("open/token"), mode).unwrap();
    let wrong = format!("b3:{}", "0".repeat(64));
    let steps = [
        step(&["inspect", &archive]),
        step(&["verify", &archive, "--id", &id]),
        step(&["verify", &archive, "--id", &wrong]),
        step(&["unpack", &archive, "out"]),
        step(&["unpack", &archive, "out"]),
        step(&["fsck", "--root", "store"]),
        step(&["fsck", "--root", "nowhere"]),
        step(&["agent", "--root", "open", "--listen", "127.0.0.1:0"]),
        step(&["serve", "nowhere"]),
        step(&["up", "nowhere"]),
        step(&["bake", "no-such-recipe.toml"]),
        step(&["node", "list"]),
        step(&["node", "boot", "no-such-image", "--name", "n1"]),
    ];
    let text = transcript(None, tmp.path(), &steps);
    insta::assert_snapshot!(redacted(&text, tmp.path()), @r#"
    $ silver inspect [TMP]/dist/hello-[ID12].silver
    format    silver-manifest 1
    app       hello
    id        [ID]
    archive   1429 bytes, sha256 [SHA256]
    content   1628 bytes in 5 files
    entries   5 (0 symlinks, 0 empty directories)
    fixups    0

    file  0644         16  .silverignore
    file  0644        183  app.ini
    file  0644       1260  app.py
    file  0644        135  lib/python/greeting/__init__.py
    file  0644         34  static/css/site.css
    [exit 0]
    $ silver verify [TMP]/dist/hello-[ID12].silver --id [ID]
        Verified [ID] (5 files, [SIZE])
    [ID]
    [exit 0]
    $ silver verify [TMP]/dist/hello-[ID12].silver --id [ID]
    error: `[TMP]/dist/hello-[ID12].silver` did not verify
      caused by: artifact `[TMP]/dist/hello-[ID12].silver` is [ID], not [ID]
    hint: the archive is not the artifact you named; check the id you were given
    [exit 3]
    $ silver unpack [TMP]/dist/hello-[ID12].silver out
        Unpacked [ID] (5 files) into [TMP]/out
    [ID]
    [exit 0]
    $ silver unpack [TMP]/dist/hello-[ID12].silver out
    error: failed to unpack `[TMP]/dist/hello-[ID12].silver`
      caused by: `[TMP]/out` already exists
    hint: choose a new destination; unpack never writes into an existing directory
    [exit 1]
    $ silver fsck --root store
         Checked 0 objects, 0 releases
    [exit 0]
    $ silver fsck --root nowhere
    error: `[TMP]/nowhere` is not an agent's store (no objects/)
    [exit 1]
    $ silver agent --root open --listen 127.0.0.1:[PORT]
    [WHO APPS RUN AS]
    error: the agent over `[TMP]/open` stopped
      caused by: `[TMP]/open/token` is mode 0644: other users can read or change it
    hint: it guards access to the node: `chmod 600 [TMP]/open/token` (and keep it owned by the agent's user)
    [exit 1]
    $ silver serve nowhere
    error: failed to open the app directory `[TMP]/nowhere`
      caused by: No such file or directory (os error 2)
    [exit 1]
    $ silver up nowhere
    error: failed to read `[TMP]/nowhere/app.ini`
      caused by: `[TMP]/nowhere` is not an app directory: it does not exist or is not a directory
    hint: give the directory that holds the app's `app.ini`
    [exit 1]
    $ silver bake no-such-recipe.toml
    error: cannot read the recipe `[TMP]/no-such-recipe.toml`
      caused by: No such file or directory (os error 2)
    [exit 1]
    $ silver node list
    [exit 0]
    $ silver node boot no-such-image --name n1
    error: no SSH public key to authorize on the node (looked for [TMP]/.ssh/id_ed25519.pub, [TMP]/.ssh/id_rsa.pub)
    hint: pass --ssh-key FILE, or make one with ssh-keygen -t ed25519
    [exit 1]
    "#);
}

#[test]
fn every_release_subcommand_says_what_it_did_or_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::start(&tmp.path().join("node"), &[]);
    copy_fixture("hello-wsgi", &tmp.path().join("v1"));
    let (id, archive) = pack_dir(&tmp.path().join("v1"), &tmp.path().join("dist"));
    let archive = format!("dist/{}", archive.file_name().unwrap().to_str().unwrap());
    std::fs::write(
        tmp.path().join("typo.toml"),
        "[environments.production]\nhosts = [\"http://127.0.0.1:9\"]\nobserve = \"soon\"\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("fleet.toml"),
        "[environments.production]\nhosts = [\"http://127.0.0.1:9\"]\n",
    )
    .unwrap();
    let steps_before_policy = [
        step(&["key", "new", "ci"]),
        step(&["key", "new", "ci"]),
        step(&["sign", &archive, "--key", "ci.key"]),
        step(&["sign", &archive, "--key", "no-such.key"]),
        step(&[
            "promote",
            "hello",
            "production",
            &id,
            "--key",
            "ci.key",
            "--sequence",
            "7",
        ]),
        step(&[
            "promote",
            "hello",
            "production",
            "b3:0123456789ab",
            "--key",
            "ci.key",
        ]),
        step(&["push", "v1", "library/hello"]),
        step(&["pull", "127.0.0.1:9/hello:v1"]),
        step(&["trust", "show"]),
        step(&[
            "fleet",
            "deploy",
            "v1",
            "--env",
            "production",
            "--inventory",
            "typo.toml",
        ]),
        step(&[
            "fleet",
            "status",
            "hello",
            "--env",
            "staging",
            "--inventory",
            "fleet.toml",
        ]),
    ];
    let mut text = transcript(Some(&agent), tmp.path(), &steps_before_policy);
    let public = std::fs::read_to_string(tmp.path().join("ci.pub")).unwrap();
    let key = public.lines().nth(1).unwrap();
    std::fs::write(
        agent.root.join("trust.toml"),
        format!("environment = \"production\"\n[build]\nkeys = [\"{key}\"]\n[promote]\nkeys = [\"{key}\"]\n"),
    )
    .unwrap();
    let build = format!("{archive}.build.json");
    let steps = [
        step(&["trust", "show"]),
        step(&["deploy", &archive]),
        step(&["deploy", &archive, "--record", &build]),
        step(&[
            "deploy",
            &archive,
            "--record",
            &build,
            "--record",
            "promote-hello-production-7.json",
        ]),
        step(&[
            "deploy",
            &archive,
            "--record",
            &build,
            "--record",
            "promote-hello-production-7.json",
        ]),
    ];
    text += &transcript(Some(&agent), tmp.path(), &steps);
    insta::assert_snapshot!(redacted(&text, tmp.path()), @r#"
    $ silver key new ci
         Created key [KEY ID] ([TMP]/ci.pub and [TMP]/ci.key)
    [PUBLIC KEY]
    [exit 0]
    $ silver key new ci
    error: `[TMP]/ci.pub` exists: a key is never overwritten
    hint: choose another name, or move the old key away first
    [exit 1]
    $ silver sign dist/hello-[ID12].silver --key ci.key
          Signed the build record of hello b3:[ID12]
    [TMP]/dist/hello-[ID12].silver.build.json
    [exit 0]
    $ silver sign dist/hello-[ID12].silver --key no-such.key
    error: cannot read `[TMP]/no-such.key`
      caused by: No such file or directory (os error 2)
    hint: give the path of a key or record that exists (`silver key new NAME` makes a key pair)
    [exit 1]
    $ silver promote hello production [ID] --key ci.key --sequence 7
        Promoted the promotion of hello b3:[ID12] to production (sequence 7)
    [TMP]/promote-hello-production-7.json
    [exit 0]
    $ silver promote hello production b3:[ID12] --key ci.key
    error: invalid value 'b3:[ID12]' for '<ID>': `b3:[ID12]` is not a whole artifact id: write b3: and 64 hex digits, as `silver pack` prints it

    For more information, try '--help'.
    [exit 2]
    $ silver push v1 library/hello
    error: invalid value 'library/hello' for '<REFERENCE>': `library/hello` is not a registry reference: its first part is not a registry host (it needs a dot, a port or `localhost`): write REGISTRY/REPO, e.g. ghcr.io/team/myapp

    For more information, try '--help'.
    [exit 2]
    $ silver pull 127.0.0.1:[PORT]/hello:v1
    error: 127.0.0.1:[PORT]/hello:v1 names no digest: a tag can move
    hint: pull by digest, as `silver push` prints it: REGISTRY/[WHO]:…
    [exit 1]
    $ silver trust show
    error: node http://127.0.0.1:[PORT] answered 404: this node has no trust policy
    hint: install the first policy on the node itself, as <root>/trust.toml (README: "Signed build and promotion records")
    [exit 1]
    $ silver fleet deploy v1 --env production --inventory typo.toml
    error: [TMP]/typo.toml line 3: invalid type: string "soon", expected u64
    hint: an inventory's keys are listed in the README, under "Fleets"
    [exit 1]
    $ silver fleet status hello --env staging --inventory fleet.toml
    error: [TMP]/fleet.toml has no environment `staging` (it has: production)
    hint: add [environments.staging] to it, or name one it has with --env
    [exit 1]
    $ silver trust show
    environment production
    build    1 of [KEY ID]
    promote  1 of [KEY ID]
    [exit 0]
    $ silver deploy dist/hello-[ID12].silver
    error: failed to deploy `hello` to http://127.0.0.1:[PORT]
      caused by: node http://127.0.0.1:[PORT] answered 403: no build record for [ID] of `hello`: the trust policy wants one signed by the build role
    hint: send the build record with --record FILE (`silver sign` wrote it beside the artifact)
    [exit 1]
    $ silver deploy dist/hello-[ID12].silver --record dist/hello-[ID12].silver.build.json
    error: failed to deploy `hello` to http://127.0.0.1:[PORT]
      caused by: node http://127.0.0.1:[PORT] answered 403: no promotion record for [ID] of `hello` to `production`: the trust policy wants one
    hint: promote it (`silver promote APP ENV ID`) and send the record with --record FILE
    [exit 1]
    $ silver deploy dist/hello-[ID12].silver --record dist/hello-[ID12].silver.build.json --record promote-hello-production-7.json
          Update update_fetch /update | updated
        Deployed hello [ID] to http://127.0.0.1:[PORT] ([SIZE] sent, 0 objects sent, 5 already there)
         Serving at hello.localhost (processes: web)
    [ID]
    [exit 0]
    $ silver deploy dist/hello-[ID12].silver --record dist/hello-[ID12].silver.build.json --record promote-hello-production-7.json
    error: failed to deploy `hello` to http://127.0.0.1:[PORT]
      caused by: node http://127.0.0.1:[PORT] answered 403: the promotion of hello b3:[ID12] to production (sequence 7) has sequence 7, at or below 7, the highest this node has taken for it: a replay or a downgrade
    hint: promote again: `silver promote` gives a new record a higher sequence number
    [exit 1]
    "#);
}
