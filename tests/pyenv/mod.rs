//! Python virtualenvs under target/ for the tests that run independent Python clients: one per
//! requirements file, made on first use (PyPI must be reachable then; `FG_PYTHON` overrides
//! the `python3` used to create it) and reused while the requirements are unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A virtualenv with the pinned requirements, made once and reused while they are unchanged.
pub fn virtualenv(name: &str, requirements: &Path) -> PathBuf {
    // Tests of one binary run side by side: one of them makes a virtualenv, the others wait.
    static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _making = MAKING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pyenv-{name}"));
    let python = dir.join("bin/python");
    let wanted = std::fs::read_to_string(requirements).expect("requirements file");
    let stamp = dir.join("installed-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let base = std::env::var("FG_PYTHON").unwrap_or_else(|_| "python3".into());
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("{what}: cannot run: {e} (is Python 3 installed? set FG_PYTHON)")
        });
        assert!(
            out.status.success(),
            "{what} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new(&base).args(["-m", "venv"]).arg(&dir),
        "creating the virtualenv",
    );
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(requirements),
        &format!("installing {} from PyPI", requirements.display()),
    );
    std::fs::write(&stamp, wanted).expect("stamp");
    python
}
