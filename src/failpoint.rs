//! Test hook (failpoints): `OPTDESK_FAILPOINT=<job>:<point>:<action>` makes `<job>`
//! panic, abort the process (as a crash or kill -9 would), sleep N seconds or fail at
//! `<point>` (`mid` inside a job, `before_commit` in the runner, `after_submit` between
//! a broker's acceptance of an order and the record of its fills). For testing the
//! envelope's atomicity and the order life cycle; never set it in production.

/// `Err(message)` when the failpoint asks for an error; may panic, abort or sleep.
pub fn hit(job: &str, point: &str) -> Result<(), String> {
    let Ok(spec) = std::env::var("OPTDESK_FAILPOINT") else {
        return Ok(());
    };
    let mut parts = spec.splitn(3, ':');
    let (j, p, action) = (parts.next(), parts.next(), parts.next().unwrap_or("panic"));
    if j != Some(job) || p != Some(point) {
        return Ok(());
    }
    match action {
        "abort" => std::process::abort(),
        "error" => Err(format!("failpoint {job}:{point} triggered")),
        a if a.starts_with("sleep") => {
            let secs: u64 = a
                .trim_start_matches("sleep")
                .trim_start_matches('=')
                .parse()
                .unwrap_or(60);
            eprintln!("failpoint {job}:{point}: sleeping {secs} s");
            std::thread::sleep(std::time::Duration::from_secs(secs));
            Ok(())
        }
        _ => panic!("failpoint {job}:{point} triggered"),
    }
}
