//! Headless Chromium for the tests that load a page (the dashboard file, a tearsheet,
//! the live dashboard): find it, run it, read its console errors.

use std::path::{Path, PathBuf};

/// Chromium: $CHROMIUM, or the usual names on PATH.
pub fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Chromium, or `None` after saying the test is skipped; with
/// `OPTDESK_REQUIRE_CHROMIUM` set (CI), a missing Chromium fails the test instead.
pub fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("OPTDESK_REQUIRE_CHROMIUM").is_err(),
            "OPTDESK_REQUIRE_CHROMIUM is set but no Chromium was found (install Debian's chromium)"
        );
        eprintln!("SKIPPED: no Chromium on this machine (set CHROMIUM=/path or install chromium)");
    }
    found
}

/// Run headless Chromium with a throw-away profile and logging to stderr.
pub fn headless(chrome: &Path, profile: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap()
}

/// The console errors, failed loads and Content-Security-Policy violations in
/// Chromium's stderr.
pub fn console_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            (l.contains("CONSOLE") && (l.contains("ERROR") || l.contains("Uncaught")))
                || l.contains("Failed to load resource")
                || l.contains("net::ERR_")
                || l.contains("Content Security Policy")
        })
        .collect()
}
