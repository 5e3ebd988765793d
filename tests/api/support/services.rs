//! Where the services the tests need are (from the environment), and what a test does when one
//! is not configured: it skips with a message — except under `CI=true`, where it must run.

/// The variable holding the PostgreSQL server URL for tests.
pub const PG_ENV: &str = "OKRA_TEST_DATABASE_URL";

/// Whether this run is CI's (`CI=true`), where no test may skip for want of a service.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The URL in `var`, or `None` (with a message naming `example`) when it is not set; under
/// `CI=true` an unset `var` fails the test instead. `what` names the tests in the messages.
pub fn service_url(var: &str, example: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if in_ci() => panic!("{var} is not set, but CI=true: the {what} tests must run in CI"),
        _ => {
            eprintln!("skipping a {what} test: set {var}={example} to run it");
            None
        }
    }
}

/// The PostgreSQL server URL for tests, or `None` (with a message) when it is not configured.
pub fn postgres_url() -> Option<String> {
    service_url(
        PG_ENV,
        "postgres://postgres@127.0.0.1:5432/test",
        "PostgreSQL",
    )
}
