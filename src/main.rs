//! The `gatehouse` binary: parse the CLI, load and validate config (exit 2 before any
//! port is bound), start logging, start the app, wait for a signal, drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse::{App, Config};

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "A caching, authorizing, coordinating sidecar for HTTP app servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run gatehouse with a config file (an empty file is the embedded default).
    Run {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config file (with the environment applied) and exit.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a demo check-in API on loopback with gatehouse in front, and print curl
    /// lines to try.
    Demo,
    /// Run only the demo origin (the load harness's origin).
    #[command(hide = true)]
    DemoOrigin {
        #[arg(long, default_value = gatehouse::demo::DEMO_ORIGIN)]
        listen: SocketAddr,
    },
}

/// Reads, validates and preflights the config (`check` and `run` alike): every
/// problem printed, exit 2.
fn load(path: Option<&PathBuf>) -> Result<Config, ExitCode> {
    let env = std::env::vars().collect();
    let result = gatehouse::app::load::load_checked(path.map(|p| p.as_path()), &env);
    result.map_err(|errors| {
        eprintln!(
            "gatehouse: invalid configuration ({} problem{}):",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        );
        for e in &errors {
            eprintln!("  {e}");
        }
        ExitCode::from(2)
    })
}

fn init_logging(cfg: &Config) {
    gatehouse::logging::init(&cfg.log);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(Some(&config)) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config } => {
            let cfg = match load(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(&cfg);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(run(cfg, config))
        }
        Command::Demo => runtime().block_on(demo()),
        Command::DemoOrigin { listen } => runtime().block_on(demo_origin(listen)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn demo() -> ExitCode {
    let started = match gatehouse::demo::Demo::prepare().await {
        Ok(prepared) => {
            init_logging(&prepared.config);
            prepared.start().await
        }
        Err(e) => Err(e),
    };
    let demo = match started {
        Ok(d) => d,
        Err(e) => {
            eprintln!("gatehouse demo: {e:#}");
            return ExitCode::from(1);
        }
    };
    println!("{}", demo.guide());
    shutdown_signal().await;
    eprintln!("gatehouse demo: stopping");
    demo.shutdown().await;
    ExitCode::SUCCESS
}

async fn demo_origin(listen: SocketAddr) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("gatehouse demo-origin: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    if let Ok(addr) = listener.local_addr() {
        // The load harness reads this line to learn the port when given port 0.
        println!("demo origin listening on http://{addr}");
    }
    match gatehouse::demo::serve_demo_origin(listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse demo-origin: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cfg: Config, path: Option<PathBuf>) -> ExitCode {
    // Handlers first: a SIGTERM during start-up drains like any other.
    let stop = shutdown_signal();
    let app = match App::start(cfg, path).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("gatehouse: {e:#}");
            return ExitCode::from(1);
        }
    };
    stop.await;
    tracing::info!("shutting down: readiness off, draining in-flight requests");
    app.shutdown().await;
    ExitCode::SUCCESS
}

/// Registers the SIGTERM and SIGINT handlers now; the future ends at the first signal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
