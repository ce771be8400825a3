//! `service.writable_root`: files an app writes that the front door serves publicly, before the
//! app is asked: `ROOT/HOST/path` for that host, else `ROOT/path`. The directory belongs to the
//! app's user and the agent may be root, so every file is opened so that nothing the app plants
//! (a symlink, a FIFO, a `..`) can make the agent serve or block on anything outside it.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;

/// The file for `rest` (the path below the app's prefix) at `host`, if the app wrote one.
pub async fn serve(root: &Path, host: &str, rest: &str, method: &Method) -> Option<Response> {
    let relative = relative(rest)?;
    let mut candidates = Vec::new();
    if is_plain_host(host) {
        candidates.push(Path::new(host).join(&relative));
    }
    candidates.push(relative);
    let root = root.to_path_buf();
    let found = tokio::task::spawn_blocking(move || {
        candidates
            .into_iter()
            .find_map(|rel| open_inside(&root, &rel).map(|f| (f, rel)))
    })
    .await
    .ok()??;
    Some(respond(found.0, &found.1, method))
}

/// `rest` percent-decoded, as a path of plain components.
fn relative(rest: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .ok()?;
    let parts: Vec<&str> = decoded.split('/').filter(|c| !c.is_empty()).collect();
    // `..` climbs out of the root (path traversal); NUL cuts a path short in C.
    let plain = |c: &&str| *c != ".." && *c != "." && !c.contains('\0');
    (!parts.is_empty() && parts.iter().all(plain)).then(|| parts.iter().collect())
}

/// A host usable as one directory name: a Host header of `..` or `a/b` would climb or descend.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with('.')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// Opens `root/rel` if it is a regular file really inside `root`.
fn open_inside(root: &Path, rel: &Path) -> Option<std::fs::File> {
    let real_root = root.canonicalize().ok()?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        // A symlink as the last component is refused outright; O_NONBLOCK keeps a FIFO the app
        // made from blocking the open (it is refused below as not a regular file).
        .custom_flags(libc_flags())
        .open(root.join(rel))
        .ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    // A symlink earlier in the path (the app replaced a directory with a link to /etc) is
    // followed by open(2): where the file really is decides.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let real = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    real.starts_with(&real_root).then_some(file)
}

fn libc_flags() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32 | rustix::fs::OFlags::NONBLOCK.bits() as i32
}

fn respond(file: std::fs::File, rel: &Path, method: &Method) -> Response {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mime = mime_guess::from_path(rel).first_or_octet_stream();
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let file = tokio::fs::File::from_std(file);
        Body::from_stream(tokio_util::io::ReaderStream::new(file))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.as_ref()) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    // The app rewrites these files whenever it likes.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rest: &str, expected: Option<&str>) {
        assert_eq!(relative(rest), expected.map(PathBuf::from), "{rest}");
    }

    #[test]
    fn paths_stay_inside() {
        check("/a/b.txt", Some("a/b.txt"));
        check("/a%20b", Some("a b"));
        check("/", None);
        check("/../etc/passwd", None);
        check("/a/%2e%2e/%2e%2e/etc", None);
        check("/a/./b", None);
        check("/a%00b", None);
    }

    #[test]
    fn planted_links_and_fifos_are_not_served() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("host.test")).unwrap();
        std::fs::write(root.join("ok.txt"), "ok").unwrap();
        std::fs::write(tmp.path().join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), root.join("dir")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(open_inside(&root, Path::new("ok.txt")).is_some());
        for planted in ["link", "dir/secret", "fifo", "host.test", "missing"] {
            assert!(
                open_inside(&root, Path::new(planted)).is_none(),
                "{planted}"
            );
        }
        assert!(!is_plain_host(".."));
        assert!(!is_plain_host("a/b"));
        assert!(is_plain_host("example.com"));
    }
}
