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

/*
 * silver_task_add($path, $options): queues a task, an internal request the node makes to the
 * live release later, retried until it answers 2xx (as silversupport.tasks.add does for
 * Python). $options: 'body' (a string), 'method' (default POST), 'delay' (seconds), 'eta'
 * (a Unix time), 'key' (an idempotency key), 'content_type'. Returns the task's id once it
 * is stored durably; throws a RuntimeException saying why the node refused it (code 429: the
 * queue is full).
 */
function silver_task_add($path, $options = array()) {
    $task = array('path' => $path, 'method' => isset($options['method']) ? $options['method'] : 'POST');
    if (isset($options['body'])) {
        $task['body_base64'] = base64_encode($options['body']);
    }
    if (isset($options['delay'])) {
        $task['delay'] = (float) $options['delay'];
    }
    if (isset($options['eta'])) {
        $task['eta'] = gmdate('Y-m-d\TH:i:s\Z', (int) $options['eta']);
    }
    foreach (array('key', 'content_type') as $name) {
        if (isset($options[$name])) {
            $task[$name] = $options[$name];
        }
    }
    $json = json_encode($task);
    $socket = getenv('SILVER_TASKS_SOCKET');
    $conn = @stream_socket_client("unix://$socket", $errno, $errstr, 30);
    if ($conn === false) {
        throw new RuntimeException("cannot reach the task queue at $socket: $errstr");
    }
    fwrite($conn, "POST /tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . strlen($json) . "\r\nConnection: close\r\n\r\n" . $json);
    $answer = stream_get_contents($conn);
    fclose($conn);
    $parts = explode("\r\n\r\n", $answer, 2);
    $status = (int) substr($parts[0], 9, 3);
    $said = json_decode(isset($parts[1]) ? $parts[1] : '', true);
    if ($status === 200 || $status === 201) {
        return $said['id'];
    }
    $message = isset($said['error']) ? $said['error'] : "the node answered $status";
    throw new RuntimeException($message, $status);
}
