//! `siteward check-config FILE`: every shipped example passes; a broken file reports
//! each of its errors with its field path and exits 1.

use std::process::Command;

use siteward_tests::{repo_root, siteward_bin};

fn check_config(file: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(siteward_bin())
        .arg("check-config")
        .arg(file)
        .output()
        .expect("running siteward check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every `config/examples/*.toml` is valid. The directory may not exist yet (examples are
/// written by another change): the test then has nothing to check and says so.
#[test]
fn every_example_passes() {
    let dir = repo_root().join("config/examples");
    let mut examples: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("reading config/examples").path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("reading {}: {e}", dir.display()),
    };
    examples.sort();
    if examples.is_empty() {
        eprintln!("note: no examples in {} yet", dir.display());
    }
    for example in &examples {
        let (code, stdout, stderr) = check_config(example);
        assert_eq!(
            code,
            0,
            "{} is rejected:\n{stdout}{stderr}",
            example.display()
        );
        assert!(
            stdout.contains("OK"),
            "{}: unexpected output {stdout:?}",
            example.display()
        );
    }
}

#[test]
fn a_valid_file_passes_and_counts_its_checks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ok.toml");
    std::fs::write(
        &file,
        r#"
[appliance]
name = "plant-01"
state_dir = "state"

[[checks]]
name = "db"
kind = "tcp"
target = "127.0.0.1:1521"

[[checks]]
name = "pbx"
kind = "sip-options"
target = "127.0.0.1"
transport = "tcp"
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = check_config(&file);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("OK (2 checks)"), "{stdout}");
}

/// Several independent mistakes: each is printed on its own line as `path: message`.
#[test]
fn a_broken_file_reports_every_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    std::fs::write(
        &file,
        r#"
[appliance]
name = "bad name!"

[admin]
listen = "localhost"

[[checks]]
name = "db"
kind = "tcp"
target = "127.0.0.1"
rise = 0

[[checks]]
name = "db"
kind = "oracle-tns"
target = "db.example:1521"
interval = "1s"
timeout = "2s"

[[checks]]
name = "pbx"
kind = "warp-drive"
target = "127.0.0.1:5060"

[[checks]]
name = "ami"
kind = "asterisk-ami"
target = "127.0.0.1"
username = "mon"
secret_file = "no-such-secret"
count = 3
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = check_config(&file);
    assert_eq!(code, 1, "exit code; stdout:\n{stdout}\nstderr:\n{stderr}");

    let lines: Vec<&str> = stdout.lines().collect();
    let expected: &[(&str, &str)] = &[
        ("appliance.name", "\"bad name!\""),
        ("admin.listen", "\"localhost\""),
        ("checks[0].target", "needs a port"),
        ("checks[0].rise", "between 1 and 100"),
        ("checks[1].name", "duplicate check name \"db\""),
        ("checks[1].timeout", "shorter than the interval"),
        ("checks[2].kind", "unknown kind \"warp-drive\""),
        ("checks[3].count", "not used by kind \"asterisk-ami\""),
        ("checks[3].secret_file", "no-such-secret"),
    ];
    for (path, fragment) in expected {
        let prefix = format!("{path}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(fragment)),
            "no line \"{path}: ...{fragment}...\" in:\n{stdout}"
        );
    }
    // Nothing else: one line per error, each with a path.
    assert_eq!(lines.len(), expected.len(), "unexpected lines:\n{stdout}");
    assert!(
        stderr.contains(&format!("{} error(s)", expected.len())),
        "stderr: {stderr}"
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = check_config(&dir.path().join("nope.toml"));
    assert_eq!(code, 1);
    assert!(
        stdout.contains("cannot read configuration file"),
        "{stdout}"
    );
}

#[test]
fn not_toml_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("garbage.toml");
    std::fs::write(&file, "[appliance\nname = \n").unwrap();
    let (code, stdout, _) = check_config(&file);
    assert_eq!(code, 1);
    assert!(stdout.contains("not valid TOML"), "{stdout}");
}
