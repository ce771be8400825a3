<?php
/*
 * silver's master runner (Silver Lining's master-runner.php): php-fpm runs this file for every
 * dynamic request of a PHP app, and it runs the app's own `runner`. Written by the agent into
 * the app's run/ directory; the router's FastCGI gateway names it as SCRIPT_FILENAME.
 *
 * Before the runner: the request's note on the board (so the gateway can end this worker if
 * the request wedges while others wait), SILVER_SECRET, and Silver Lining's helpers
 * silver_next_path() and silver_call_next().
 */

$silver_base = $_SERVER['SILVER_BASE'];
$silver_php_root = $_SERVER['SILVER_PHP_ROOT'];
$silver_runner = $_SERVER['SILVER_RUNNER'];

if (isset($_SERVER['SILVER_BOARD'], $_SERVER['SILVER_REQUEST_ID'])
    && ctype_digit($_SERVER['SILVER_REQUEST_ID'])) {
    $silver_note = $_SERVER['SILVER_BOARD'] . '/' . $_SERVER['SILVER_REQUEST_ID'];
    @file_put_contents($silver_note, (string) getmypid());
    // Removed as the request ends, after the app's own shutdown functions (this one, first in
    // line, queues the removal behind them): the gateway signals only a worker whose request
    // still runs.
    register_shutdown_function(function () use ($silver_note) {
        register_shutdown_function(function () use ($silver_note) {
            @unlink($silver_note);
        });
    });
}

if (!defined('SILVER_SECRET')) {
    define('SILVER_SECRET', trim((string) @file_get_contents(__DIR__ . '/silver-secret')));
}

require_once __DIR__ . '/silver_functions.php';

chdir(dirname("{$silver_base}/{$silver_runner}"));
unset($_SERVER['SILVER_BOARD'], $_SERVER['SILVER_REQUEST_ID'], $silver_note);
include "{$silver_base}/{$silver_runner}";
