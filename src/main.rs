//! [I/O] The `vipd` binary: parse the command line, set up logging, run. All logic is in the library.

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;
use vipd::cli::{Cli, Command};

fn main() -> ExitCode {
    let (argv, ignored_flags) = vipd::cli::set_aside_kube_vip_flags(std::env::args().collect());
    let cli = Cli::parse_from(argv);
    let result: anyhow::Result<()> = match cli.command {
        Command::Manifest(args) => {
            for i in &ignored_flags {
                eprintln!("vipd: warning: kube-vip's {i} is not supported; left out of the YAML");
            }
            let (vipd::cli::ManifestKind::Daemonset(f)
            | vipd::cli::ManifestKind::Pod(f)
            | vipd::cli::ManifestKind::Rbac(f)) = &args.kind;
            for w in vipd::manifest::warnings(f) {
                eprintln!("vipd: warning: {w}");
            }
            return manifest(&args);
        }
        Command::Manager(args) => {
            let cfg = match vipd::config::validate(&args.raw_settings()) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("vipd: bad setting: {e}");
                    return ExitCode::from(2);
                }
            };
            // Checked here rather than by clap, whose message names the flag but not the
            // variable a DaemonSet sets.
            let json = match args.log_format.as_str() {
                "text" => false,
                "json" => true,
                other => {
                    eprintln!("vipd: bad setting: vipd_log_format (--log-format): {other:?} is not a log format (text or json)");
                    return ExitCode::from(2);
                }
            };
            init_logging(&cfg.log_filter, json);
            let mut ignored = ignored_flags;
            ignored.extend(vipd::config::kube_vip::ignored_in(&cfg));
            warn_ignored(ignored);
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("vipd: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            return match rt.block_on(vipd::run(cfg, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let setting = e.is_setting();
                    eprintln!(
                        "vipd: {}{}",
                        if setting { "bad setting: " } else { "" },
                        vipd_providers::error_chain(&e)
                    );
                    ExitCode::from(if setting { 2 } else { 1 })
                }
            };
        }
        Command::Ipam(args) => {
            let settings = match args.settings() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("vipd: bad setting: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&args.log, false);
            runtime().and_then(|rt| {
                rt.block_on(vipd::ipam::task::run_standalone(
                    settings,
                    shutdown_signal(),
                ))
                .map_err(Into::into)
            })
        }
        Command::Status(args) => return status(&args),
        Command::Migrate(args) => return migrate(&args),
        Command::Demo(args) => {
            init_logging("error", false);
            runtime().and_then(|rt| rt.block_on(vipd::demo::run(args.keep)).map_err(Into::into))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vipd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

/// `vipd manifest`: the YAML on stdout, or why not (exit status 2, as for a bad setting).
fn manifest(args: &vipd::cli::ManifestArgs) -> ExitCode {
    match vipd::manifest::render(args) {
        Ok(yaml) => print_out(&yaml),
        Err(e) => {
            eprintln!("vipd: {e}");
            ExitCode::from(2)
        }
    }
}

/// `vipd migrate`: exit status 2 when the input cannot be read or migrated.
fn migrate(args: &vipd::cli::MigrateArgs) -> ExitCode {
    use std::io::Read;
    let mut input = String::new();
    let read = match args.file.as_deref() {
        None => std::io::stdin().read_to_string(&mut input).map(|_| ()),
        Some(p) if p.as_os_str() == "-" => std::io::stdin().read_to_string(&mut input).map(|_| ()),
        Some(p) => std::fs::read_to_string(p).map(|t| input = t),
    };
    if let Err(e) = read {
        eprintln!("vipd: cannot read the kube-vip manifest: {e}");
        return ExitCode::from(2);
    }
    match vipd::migrate::plan(&input).and_then(|m| vipd::migrate::render(&m)) {
        Ok(text) => print_out(&text),
        Err(e) => {
            eprintln!("vipd: {e}");
            ExitCode::from(2)
        }
    }
}

/// `vipd status`: exit status 1 when the agent cannot be asked.
fn status(args: &vipd::cli::StatusArgs) -> ExitCode {
    let report = runtime().and_then(|rt| {
        rt.block_on(vipd::http::fetch_status(&args.server))
            .map_err(Into::into)
    });
    match report {
        Ok(r) if args.output == "json" => match serde_json::to_string_pretty(&r) {
            Ok(json) => print_out(&(json + "\n")),
            Err(e) => {
                eprintln!("vipd: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(r) => print_out(&vipd::report::render_text(&r)),
        Err(e) => {
            eprintln!("vipd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print_out(text: &str) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vipd: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One warning naming every kube-vip setting (environment or flag) that asks for what vipd does
/// not do: never silently ignored.
fn warn_ignored(flags: Vec<vipd::config::kube_vip::Ignored>) {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut all =
        vipd::config::kube_vip::ignored_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    all.extend(flags);
    if !all.is_empty() {
        let list: Vec<String> = all.iter().map(ToString::to_string).collect();
        tracing::warn!(
            settings = %list.join("; "),
            "kube-vip settings that vipd does not implement are ignored"
        );
    }
}

/// `RUST_LOG` wins over `vip_loglevel`.
fn init_logging(default: &str, json: bool) {
    // kube's client logs every failed request at ERROR; vipd's own watch log says it once per
    // failure streak, with what it keeps doing meanwhile.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default},kube_client::client::builder=off")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.init();
    }
}

/// SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
