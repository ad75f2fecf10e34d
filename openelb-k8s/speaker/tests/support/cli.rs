//! The `openelb-speaker` binary as a command: run it, read what it said.

use std::process::{Command, Output};

/// Runs `openelb-speaker` with `args` and `env`, and without the environment's `NODE_NAME` and `KUBECONFIG`.
pub fn speaker(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_openelb-speaker"));
    cmd.args(args).env_remove("NODE_NAME").env_remove("KUBECONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
