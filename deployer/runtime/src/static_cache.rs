//! Small static files of releases, served from memory. A release's files never change (its
//! directory is named by its id), so a file read once is good for as long as it is asked for;
//! serving it then takes no file-system call and no hop to the blocking pool, which is most of
//! the cost of a small file otherwise.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::Response;
use bytes::Bytes;

/// Files larger than this are streamed from disk every time.
const MAX_FILE_BYTES: u64 = 256 << 10;
/// The whole cache: past this it starts afresh (releases come and go; it never grows).
const MAX_TOTAL_BYTES: usize = 64 << 20;

#[derive(Debug, Default)]
pub struct StaticCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    files: HashMap<PathBuf, Arc<Cached>>,
    bytes: usize,
}

#[derive(Debug)]
struct Cached {
    body: Bytes,
    content_type: HeaderValue,
    etag: HeaderValue,
    last_modified: Option<HeaderValue>,
}

impl StaticCache {
    /// The answer for `path` (a regular file inside a release, checked by the caller) when it
    /// is small and the request is a plain GET or HEAD; None sends the request to the file
    /// server (ranges, other methods, large files).
    pub fn serve(&self, request: &Request<Body>, path: &Path) -> Option<Response> {
        let plain = matches!(*request.method(), Method::GET | Method::HEAD)
            && !request.headers().contains_key(header::RANGE);
        if !plain {
            return None;
        }
        let cached = self.get(path)?;
        let fresh = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .is_some_and(|tag| tag == cached.etag);
        let mut builder = Response::builder()
            .header(header::CONTENT_TYPE, cached.content_type.clone())
            .header(header::ETAG, cached.etag.clone());
        if let Some(modified) = &cached.last_modified {
            builder = builder.header(header::LAST_MODIFIED, modified.clone());
        }
        let response = match (fresh, request.method() == Method::HEAD) {
            (true, _) => builder.status(StatusCode::NOT_MODIFIED).body(Body::empty()),
            (false, true) => builder
                .header(header::CONTENT_LENGTH, cached.body.len())
                .body(Body::empty()),
            (false, false) => builder.body(Body::from(cached.body.clone())),
        };
        response.ok()
    }

    /// Whether `path` is held (so it is a file: only files are).
    pub fn holds(&self, path: &Path) -> bool {
        self.lock().files.contains_key(path)
    }

    fn get(&self, path: &Path) -> Option<Arc<Cached>> {
        if let Some(hit) = self.lock().files.get(path) {
            return Some(hit.clone());
        }
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
            return None;
        }
        let body = Bytes::from(std::fs::read(path).ok()?);
        let mime = mime_guess::from_path(path).first_or_octet_stream();
        let modified = meta.modified().ok();
        let stamp = modified
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let cached = Arc::new(Cached {
            content_type: HeaderValue::from_str(mime.as_ref()).ok()?,
            etag: HeaderValue::from_str(&format!("\"{:x}-{stamp:x}\"", body.len())).ok()?,
            last_modified: modified
                .and_then(|m| HeaderValue::from_str(&httpdate::fmt_http_date(m)).ok()),
            body,
        });
        let mut inner = self.lock();
        if inner.bytes + cached.body.len() > MAX_TOTAL_BYTES {
            inner.files.clear();
            inner.bytes = 0;
        }
        inner.bytes += cached.body.len();
        inner.files.insert(path.to_path_buf(), cached.clone());
        Some(cached)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, headers: &[(&str, &str)]) -> Request<Body> {
        let mut b = Request::builder().method(method).uri("/x.css");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn serves_small_files_from_memory_with_their_tag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.css");
        std::fs::write(&path, "a{}").unwrap();
        let cache = StaticCache::default();
        let first = cache.serve(&request(Method::GET, &[]), &path).unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()[header::CONTENT_TYPE], "text/css");
        let tag = first.headers()[header::ETAG].to_str().unwrap().to_string();
        // Served from memory now: the file can go and the answer stays.
        std::fs::remove_file(&path).unwrap();
        let again = cache
            .serve(&request(Method::GET, &[("if-none-match", &tag)]), &path)
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let head = cache.serve(&request(Method::HEAD, &[]), &path).unwrap();
        assert_eq!(head.headers()[header::CONTENT_LENGTH], "3");
        assert!(cache
            .serve(&request(Method::GET, &[("range", "bytes=0-1")]), &path)
            .is_none());
        assert!(cache.serve(&request(Method::POST, &[]), &path).is_none());
    }

    #[test]
    fn large_files_are_left_to_the_file_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        std::fs::write(&path, vec![0u8; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(StaticCache::default()
            .serve(&request(Method::GET, &[]), &path)
            .is_none());
    }
}
