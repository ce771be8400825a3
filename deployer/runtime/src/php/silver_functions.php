<?php
/*
 * Silver Lining's PHP helpers, for runners that dispatch to the file a URL names:
 *
 *     $path = silver_call_next("{$silver_base}/site/index.php");
 *     include $path;
 *
 * silver_next_path() maps the request's path (below the location's prefix) to a file under
 * php_root: a directory with an index.php gets it (and a 301 to the path with a slash when the
 * slash is missing); a path that names nothing gives $default (or NULL). It never climbs out
 * of php_root, and never names a dotfile. silver_call_next() does the same and changes to the file's directory, as a web
 * server running that file would.
 */

function silver_request_path() {
    $path = $_SERVER['SCRIPT_NAME'];
    $prefix = rtrim(isset($_SERVER['SILVER_MATCH_PATH']) ? $_SERVER['SILVER_MATCH_PATH'] : '', '/');
    if ($prefix !== '' && strpos($path, $prefix) === 0) {
        $path = substr($path, strlen($prefix));
    }
    return $path === '' ? '/' : $path;
}

function silver_next_path($default = NULL, $url_path = NULL) {
    global $silver_base, $silver_php_root;
    if (!$url_path) {
        $url_path = silver_request_path();
    }
    // `..` (or a NUL byte) would climb out of php_root to any file the app's user can read;
    // a dotfile (`.htaccess`, `.env`, `.git/`) is configuration, never a page: the router does
    // not serve one, and this does not hand one to `include` either.
    if (strpos($url_path, "\0") !== false || preg_match('#(^|/)\.#', $url_path)) {
        return $default ? $default : NULL;
    }
    $root = rtrim("{$silver_base}/{$silver_php_root}", '/');
    $path = $root . '/' . ltrim($url_path, '/');
    if (is_dir($path) && file_exists(rtrim($path, '/') . '/index.php')) {
        if (substr($url_path, -1) !== '/') {
            $query = isset($_SERVER['QUERY_STRING']) && $_SERVER['QUERY_STRING'] !== ''
                ? '?' . $_SERVER['QUERY_STRING'] : '';
            header('Location: ' . $_SERVER['SCRIPT_NAME'] . '/' . $query, true, 301);
            exit();
        }
        $path = rtrim($path, '/') . '/index.php';
    }
    if (!is_file($path)) {
        return $default ? $default : NULL;
    }
    return $path;
}

function silver_call_next($default = NULL, $url_path = NULL) {
    $path = silver_next_path($default, $url_path);
    if ($path) {
        chdir(dirname($path));
    }
    $_SERVER['PHP_SELF'] = $path;
    return $path;
}
