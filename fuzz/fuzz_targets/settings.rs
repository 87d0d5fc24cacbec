//! Fuzz target: the whole settings path as an operator feeds it: `vipd manager <args>` with the
//! input split on NUL bytes into the arguments, through kube-vip's flag stripping
//! (`vipd::cli::set_aside_kube_vip_flags`, and `config::kube_vip::strip_flags` on its own), the
//! clap command line (`vipd::cli::Cli`), `ManagerArgs::raw_settings` and
//! `vipd::config::validate`, as `main.rs` does.
//!
//! Environment: every variable a clap argument of vipd reads (`env = …`), and the few
//! `raw_settings` reads itself (`address`, `POD_NAMESPACE`, `enableUPNP`), are removed from this
//! process once at the start, so only the input decides. (`raw_settings` also reads the host
//! name and the ServiceAccount namespace file: constant on one machine.)
//!
//! Asserted (besides "no panic"):
//! - errors (clap's and vipd's) render; a `ConfigError` is never empty;
//! - `strip_flags` keeps arguments in order and names only flags;
//! - no password reaches an error or the checked `Config`'s `Debug`: the settings are validated
//!   again twice, with every password (`bgp_peerpass`, and each `bgp_peers` entry's password
//!   field) replaced by two different secrets of the same shape; both outcomes must be the
//!   same, character for character (see `shared/passwords.rs`), and a valid `Config` must
//!   carry exactly the substituted password.

#![no_main]

#[path = "shared/passwords.rs"]
mod passwords;

use clap::{CommandFactory, FromArgMatches};
use libfuzzer_sys::fuzz_target;
use passwords::{replace_in_bgp_peers, SECRET_A, SECRET_B};
use std::ffi::OsString;
use std::sync::Once;
use vipd::cli::{Cli, Command};
use vipd::config::{self, kube_vip, RawSettings};

/// More arguments add nothing but time.
const MAX_ARGS: usize = 64;

thread_local! {
    /// The command line, built once: building clap's command for every input cost 20 times
    /// the parse itself. `try_get_matches_from_mut` parses with it as `try_parse_from` does.
    static COMMAND: std::cell::RefCell<clap::Command> = std::cell::RefCell::new(Cli::command());
}

fn clear_environment() {
    static CLEARED: Once = Once::new();
    CLEARED.call_once(|| {
        let mut names: Vec<OsString> = ["address", "POD_NAMESPACE", "enableUPNP"]
            .iter()
            .map(|n| OsString::from(*n))
            .collect();
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                if let Some(env) = arg.get_env() {
                    names.push(env.to_owned());
                }
            }
        }
        for name in names {
            // Edition 2021: safe to call; the fuzzer runs the target on one thread.
            std::env::remove_var(name);
        }
    });
}

fuzz_target!(|data: &[u8]| {
    clear_environment();
    let args: Vec<String> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|b| *b == 0)
            .take(MAX_ARGS)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    };

    // kube-vip's flag stripping on its own, every flag treated as foreign.
    let (kept, ignored) = kube_vip::strip_flags(&args, |_| false);
    let mut from = args.iter();
    for k in &kept {
        assert!(from.any(|a| a == k), "{k:?} kept out of order or invented");
    }
    for i in &ignored {
        assert!(i.name.starts_with('-'), "ignored {i} is not a flag");
    }

    // As main.rs: set aside kube-vip's flags, parse, take the raw settings, validate.
    let mut argv = vec!["vipd".to_owned(), "manager".to_owned()];
    argv.extend(args);
    let (argv, ignored) =
        COMMAND.with_borrow(|c| vipd::cli::set_aside_kube_vip_flags_of(c, argv));
    for i in &ignored {
        assert!(!i.to_string().is_empty());
    }
    let parsed = COMMAND
        .with_borrow_mut(|c| c.try_get_matches_from_mut(&argv))
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own message (usage and did-you-mean suggestions over ~200 flags) costs
            // a hundred parses: rendered for one input in 256 only.
            if data.first().is_some_and(|b| *b == 0x2d) && data.len() % 256 == 0 {
                let _ = e.to_string();
            }
            let _ = e.kind();
            return;
        }
    };
    let Command::Manager(manager) = cli.command else {
        panic!("`vipd manager …` parsed as another subcommand");
    };
    let raw = manager.raw_settings();
    match config::validate(&raw) {
        Ok(cfg) => {
            for i in kube_vip::ignored_in(&cfg) {
                assert!(!i.to_string().is_empty());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }

    passwords_never_shown(&raw);
});

fn with_passwords(raw: &RawSettings, secret: &str) -> RawSettings {
    let mut r = raw.clone();
    if r.bgp_peerpass.as_deref().is_some_and(|p| !p.is_empty()) {
        r.bgp_peerpass = Some(secret.to_owned());
    }
    if let Some(peers) = &raw.bgp_peers {
        r.bgp_peers = Some(replace_in_bgp_peers(peers, secret));
    }
    r
}

fn passwords_never_shown(raw: &RawSettings) {
    let a = config::validate(&with_passwords(raw, SECRET_A));
    let b = config::validate(&with_passwords(raw, SECRET_B));
    match (a, b) {
        (Err(ea), Err(eb)) => {
            let (ta, tb) = (ea.to_string(), eb.to_string());
            assert_eq!(ta, tb, "a setting error shows a password");
            // The same, said directly (unless the operator typed the secret elsewhere too).
            if !format!("{raw:?}").contains(SECRET_A) {
                assert!(!ta.contains(SECRET_A), "a setting error shows a password: {ta}");
            }
        }
        (Ok(ca), Ok(cb)) => {
            assert_eq!(
                format!("{ca:?}"),
                format!("{cb:?}"),
                "the checked settings' Debug shows a password"
            );
            for peer in &ca.bgp.peers {
                if let Some(pw) = &peer.password {
                    assert_eq!(pw.expose(), SECRET_A, "a password read from the wrong field");
                }
            }
        }
        (a, b) => panic!(
            "the value of a password decided whether the settings are valid: {:?} / {:?}",
            a.err(),
            b.err()
        ),
    }
}
