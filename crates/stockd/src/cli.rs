//! The command line: `stockd serve | migrate | import variants|listings |
//! events | stock | rules validate|preview|apply|diff|rollback|history`.
//! Parses flags (clap reads the environment variables too), resolves the
//! configuration, sets up logging and runs the command.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.

use crate::client::{ApiClient, RulesOp, Target};
use crate::config::{ConfigError, FileConfig, LogFormat, LogSettings, Overrides, Secret, Settings};
use crate::{import, input};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Configuration: flags > environment > --config file > defaults.
Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.";

#[derive(Debug, Parser)]
#[command(
    name = "stockd",
    version,
    about = "stockd: the stock ledger and single source of truth for multichannel inventory",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "STOCKD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, env = "STOCKD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter in tracing's EnvFilter syntax (RUST_LOG is used when unset), e.g. info,stockd=debug.
    #[arg(long, global = true, env = "STOCKD_LOG", value_name = "FILTER")]
    pub log_filter: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(DatabaseArgs),
    /// Import catalog files.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Apply a file of events (one JSON object per line) in atomic chunks of 1,000;
    /// prints {"applied", "duplicate", "quarantined"}.
    Events(EventsArgs),
    /// Print the stock of one variant as JSON, with what each channel may show.
    Stock(StockArgs),
    /// Check, preview, apply, compare and roll back the channel rules
    /// (a TOML file with the same structure as the JSON `rules` of the API).
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Inspect, retry or discard updates in the dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Reconcile channels: read back what each shows, compare with what
    /// stockd wants, queue drifting listings again; prints the runs as JSON.
    Reconcile(ReconcileArgs),
    /// Run everything in one process: an embedded store in a temporary
    /// folder, channel simulators, a sample catalog, a warehouse feed and
    /// simulated customers; prints a summary at the end.
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Simulate a trading day per seed, in simulated time, with faults:
    /// the real pipeline against in-process channel simulators; prints the
    /// oversell, cancel, drift and latency figures and every broken invariant.
    #[cfg(feature = "demo")]
    Simulate(SimulateArgs),
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The scenario (TOML): catalog, channels, demand, warehouse, faults, rules.
    #[arg(long, value_name = "FILE")]
    pub scenario: PathBuf,
    /// One seed.
    #[arg(long, value_name = "N", conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Seeds A to B (B excluded), e.g. 0..100.
    #[arg(long, value_name = "A..B")]
    pub seeds: Option<String>,
    /// A candidate rules document (TOML as `stockd rules apply` takes it, or
    /// `.json` as `PUT /v1/rules` takes `rules`):
    /// every seed also runs under it, side by side with the scenario's rules.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write every channel request and webhook delivery of each run, with
    /// its simulated time, to this file: two runs of one seed compare line
    /// by line.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Days to run at once, each on a thread (default: the machine's cores;
    /// 1 with --trace). The report does not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Only this channel (default: every channel).
    #[arg(long, value_name = "ID")]
    pub channel: Option<String>,
    /// Wait until the runs finish, with a progress bar on stderr.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Print every dead letter (with the channel's status and body) as JSON.
    List(DlqTargetArgs),
    /// Send a dead letter's listing again (its latest desired state).
    Retry(DlqIdArgs),
    /// Give up a dead letter's update (the listing is sent again when it changes).
    Discard(DlqIdArgs),
}

#[derive(Debug, Args)]
pub struct DlqTargetArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct DlqIdArgs {
    /// The dead letter's id (from `stockd dlq list`).
    pub id: i64,
    #[command(flatten)]
    pub target: TargetArgs,
}

impl DlqCommand {
    fn target(&self) -> &TargetArgs {
        match self {
            DlqCommand::List(a) => &a.target,
            DlqCommand::Retry(a) | DlqCommand::Discard(a) => &a.target,
        }
    }
}

/// Whether the command is the demo (whose summary request logs would drown).
fn is_demo(command: &Command) -> bool {
    #[cfg(feature = "demo")]
    if matches!(command, Command::Demo(_) | Command::Simulate(_)) {
        return true;
    }
    let _ = command;
    false
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the API, IP:PORT [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Stop after this long, e.g. 60s, 5m (default: until Ctrl-C).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Write the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Variants in the sample catalog (kits come on top).
    #[arg(long, default_value_t = 1_000)]
    pub variants: usize,
    /// Customer orders per second on each channel that takes orders.
    #[arg(long, default_value_t = 5.0)]
    pub orders_per_second: f64,
    /// How the warehouse traffic reaches stockd: `http` (POST /v1/events) or
    /// `nats` (published on NATS JetStream and consumed by `[inbound.nats]`).
    #[arg(long, value_name = "WAY", default_value = "http", value_parser = ["http", "nats"])]
    pub inbound: String,
    /// The NATS server for `--inbound nats`.
    #[arg(
        long,
        value_name = "URL",
        env = "STOCKD_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
}

/// `90`, `90s`, `5m`, `1h`, `250ms`.
fn parse_duration(raw: &str) -> Result<std::time::Duration, String> {
    let raw = raw.trim();
    let (number, unit) = match raw.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => raw.split_at(at),
        None => (raw, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {raw:?}: expected e.g. 60s, 5m, 1h"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {raw:?}: use ms, s, m or h"
            ))
        }
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("duration {raw:?} must be positive"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check a rules file against the channels known to the database or server;
    /// exit 1 with every problem listed when it is invalid.
    Validate(RulesFileArgs),
    /// Print which listings the rules file would change (from → to) and a summary; changes nothing.
    Preview(RulesFileArgs),
    /// Store the rules file as the next version and print how many listings it moved.
    Apply(RulesApplyArgs),
    /// Print every value that differs between two versions (0 = the empty document).
    Diff(RulesDiffArgs),
    /// Store an earlier version's document as the next version.
    Rollback(RulesRollbackArgs),
    /// List every version, oldest first.
    History(RulesTargetArgs),
}

#[derive(Debug, Args)]
pub struct RulesFileArgs {
    /// The TOML rules file.
    pub file: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct RulesApplyArgs {
    /// The TOML rules file.
    pub file: PathBuf,
    /// Why (kept with the version).
    #[arg(long, short)]
    pub message: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct RulesDiffArgs {
    pub from: u32,
    pub to: u32,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct RulesRollbackArgs {
    /// The version whose document becomes the next version.
    pub version: u32,
    /// Why (kept with the version).
    #[arg(long, short)]
    pub message: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct RulesTargetArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, IP:PORT [default: 127.0.0.1:8080].
    #[arg(long, env = "STOCKD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// sqlite://PATH or postgres://… [default: sqlite://stockd.db].
    #[arg(
        long,
        env = "STOCKD_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database: Option<String>,
}

/// Where a command sends its work: the database (default) or a running server.
#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Send to a running server instead of the database, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "STOCKD_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token for --server.
    #[arg(
        long,
        env = "STOCKD_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Upsert variants from a CSV file (header sku,title,product_id,gtin) or a JSON array,
    /// in chunks of 1,000; the whole file is checked before anything is sent.
    Variants(ImportVariantsArgs),
    /// Upsert listings of one channel from a CSV file (header sku,rank and any
    /// external.<key> columns) or a JSON array of {"sku", "external", "rank"},
    /// in atomic chunks of 1,000; the whole file is checked before anything is sent.
    Listings(ImportListingsArgs),
    /// Run a supplier feed (`[[feeds]]` in the config file) over one file:
    /// good rows apply, bad rows are listed with line and column, a file that
    /// drops too many SKUs is refused whole. Prints the run as JSON.
    Feed(ImportFeedArgs),
}

#[derive(Debug, Args)]
pub struct ImportFeedArgs {
    /// The CSV or JSON file.
    pub file: PathBuf,
    /// The feed id (`id` of a `[[feeds]]` table).
    #[arg(long, value_name = "ID")]
    pub feed: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct ImportListingsArgs {
    /// The CSV or JSON file.
    pub file: PathBuf,
    /// The channel id the listings belong to.
    #[arg(long, value_name = "ID")]
    pub channel: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct ImportVariantsArgs {
    /// The CSV or JSON file.
    pub file: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The JSON-lines file (blank lines are skipped).
    pub file: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct StockArgs {
    /// The variant's SKU.
    pub sku: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad flags or configuration: exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Runtime(String),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure::Usage(e.to_string())
    }
}

impl Failure {
    fn runtime(e: impl std::fmt::Display) -> Failure {
        Failure::Runtime(e.to_string())
    }
}

/// The program: parse, run, exit with the right code.
pub fn main() -> ExitCode {
    // Exits by itself with 2 on a usage error and 0 on --help or --version.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let file = match &cli.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let (listen, database) = match &cli.command {
        Command::Serve(args) => (args.listen.clone(), args.database.database.clone()),
        Command::Migrate(args) => (None, args.database.clone()),
        Command::Import(ImportCommand::Variants(args)) => {
            (None, args.target.database.database.clone())
        }
        Command::Import(ImportCommand::Listings(args)) => {
            (None, args.target.database.database.clone())
        }
        Command::Import(ImportCommand::Feed(args)) => (None, args.database.database.clone()),
        Command::Events(args) => (None, args.target.database.database.clone()),
        Command::Stock(args) => (None, args.target.database.database.clone()),
        Command::Rules(command) => (None, command.target().database.database.clone()),
        Command::Dlq(command) => (None, command.target().database.database.clone()),
        Command::Reconcile(args) => (None, args.target.database.database.clone()),
        #[cfg(feature = "demo")]
        Command::Demo(args) => (args.listen.clone(), None),
        #[cfg(feature = "demo")]
        Command::Simulate(_) => (None, None),
    };
    let overrides = Overrides {
        listen,
        database,
        log_format: cli.log_format,
        log_filter: cli
            .log_filter
            .clone()
            .or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()))
            // The demo prints a summary; request logs would drown it.
            .or_else(|| is_demo(&cli.command).then(|| "warn".to_string())),
    };
    let settings = Settings::resolve(file, overrides, &|var| std::env::var(var).ok())?;
    init_logging(&settings.log)?;
    match cli.command {
        Command::Serve(_) => serve(settings).await,
        Command::Dlq(command) => dlq(&settings, command).await,
        Command::Reconcile(args) => reconcile(&settings, args).await,
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo(&settings, args).await,
        #[cfg(feature = "demo")]
        Command::Simulate(args) => simulate(args).await,
        Command::Migrate(_) => {
            stockd_store::migrate(&settings.serve.database_url)
                .await
                .map_err(store_failure)?;
            eprintln!("the database schema is up to date");
            Ok(())
        }
        Command::Import(ImportCommand::Variants(args)) => {
            let total = import::check_variants(&args.file)
                .await
                .map_err(Failure::runtime)?;
            let target = open_target(&settings, &args.target).await?;
            let sent = import::send_variants(&target, &args.file, total).await;
            target.close().await;
            let counts = sent.map_err(Failure::runtime)?;
            print_json(&counts);
            Ok(())
        }
        Command::Import(ImportCommand::Listings(args)) => {
            let channel = stockd_core::ChannelId::parse(args.channel.as_str()).map_err(|e| {
                Failure::Usage(format!("invalid channel id {:?}: {e}", args.channel))
            })?;
            let total = import::check_listings(&args.file, &channel)
                .await
                .map_err(Failure::runtime)?;
            let target = open_target(&settings, &args.target).await?;
            let sent = import::send_listings(&target, &channel, &args.file, total).await;
            target.close().await;
            let upserted = sent.map_err(Failure::runtime)?;
            print_json(&serde_json::json!({ "upserted": upserted }));
            Ok(())
        }
        Command::Import(ImportCommand::Feed(args)) => import_feed(&settings, args).await,
        Command::Rules(command) => run_rules(&settings, command).await,
        Command::Events(args) => {
            let target = open_target(&settings, &args.target).await?;
            let (summary, sent) = import::send_events(&target, &args.file).await;
            target.close().await;
            print_json(&summary);
            sent.map_err(Failure::runtime)
        }
        Command::Stock(args) => {
            let sku = input::parse_sku(&args.sku).map_err(|p| {
                Failure::Usage(format!("invalid sku {:?}: {}", args.sku, p.message))
            })?;
            let target = open_target(&settings, &args.target).await?;
            let view = target.stock(&sku).await;
            target.close().await;
            match view.map_err(Failure::runtime)? {
                Some(view) => {
                    print_json(&view);
                    Ok(())
                }
                None => Err(Failure::Runtime(format!("unknown sku {:?}", args.sku))),
            }
        }
    }
}

async fn import_feed(settings: &Settings, args: ImportFeedArgs) -> Result<(), Failure> {
    use crate::inbound::feeds;
    let feed = settings
        .serve
        .inbound
        .feeds
        .iter()
        .find(|f| f.id == args.feed)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "no [[feeds]] table with id {:?} in the configuration",
                args.feed
            ))
        })?;
    let bytes = std::fs::read(&args.file)
        .map_err(|e| Failure::Runtime(format!("cannot read {}: {e}", args.file.display())))?;
    let store = stockd_store::open(&settings.serve.database_url)
        .await
        .map_err(store_failure)?;
    let bar = import::progress_bar(0, "{bar:40} {pos}/{len} rows {elapsed}");
    let run = feeds::run_feed(
        &*store,
        feed,
        &args.file.display().to_string(),
        &bytes,
        Some(&bar),
    )
    .await;
    bar.finish_and_clear();
    store.close().await;
    let run = run.map_err(Failure::runtime)?;
    print_json(&run);
    match run.status {
        stockd_store::inbound::FeedRunStatus::Applied => Ok(()),
        _ => Err(Failure::Runtime(
            run.error
                .unwrap_or_else(|| "the feed run did not apply".into()),
        )),
    }
}

impl RulesCommand {
    fn target(&self) -> &TargetArgs {
        match self {
            RulesCommand::Validate(a) | RulesCommand::Preview(a) => &a.target,
            RulesCommand::Apply(a) => &a.target,
            RulesCommand::Diff(a) => &a.target,
            RulesCommand::Rollback(a) => &a.target,
            RulesCommand::History(a) => &a.target,
        }
    }
}

/// Reads a TOML rules file. Syntax errors and unknown keys come back with
/// the line and key that `toml` names.
pub fn read_rules_file(
    path: &std::path::Path,
) -> Result<stockd_core::rules::RulesDocument, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Runtime(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str::<stockd_core::rules::RulesDocument>(&text).map_err(|e| {
        let mut message = format!("{} is not a valid rules document:\n{e}", path.display());
        // Name the field by its path as well, as the API would.
        if let Ok(table) = toml::from_str::<toml::Table>(&text) {
            if let Ok(value) = serde_json::to_value(table) {
                if let Err(errors) = input::parse_rules_document(&value) {
                    for error in errors {
                        message.push_str(&format!("\n  {error}"));
                    }
                }
            }
        }
        Failure::Runtime(message)
    })
}

async fn run_rules(settings: &Settings, command: RulesCommand) -> Result<(), Failure> {
    let op = match &command {
        RulesCommand::Validate(args) => {
            let doc = read_rules_file(&args.file)?;
            let target = open_target(settings, &args.target).await?;
            let known = target.channel_ids().await;
            target.close().await;
            let known = known.map_err(Failure::runtime)?;
            return match doc.validate(&known) {
                Ok(_) => {
                    print_json(&serde_json::json!({"valid": true}));
                    Ok(())
                }
                Err(errors) => Err(Failure::Runtime(format!(
                    "{} is invalid ({} problem(s)):\n  {}",
                    args.file.display(),
                    errors.len(),
                    errors
                        .iter()
                        .map(|e| format!("{e} [{}]", e.code()))
                        .collect::<Vec<_>>()
                        .join("\n  ")
                ))),
            };
        }
        RulesCommand::Preview(args) => RulesOp::Preview(read_rules_file(&args.file)?),
        RulesCommand::Apply(args) => {
            RulesOp::Apply(read_rules_file(&args.file)?, args.message.clone())
        }
        RulesCommand::Diff(args) => RulesOp::Diff(args.from, args.to),
        RulesCommand::Rollback(args) => RulesOp::Rollback(args.version, args.message.clone()),
        RulesCommand::History(_) => RulesOp::History,
    };
    let target = open_target(settings, command.target()).await?;
    let answer = target.rules(op).await;
    target.close().await;
    match answer {
        Ok(value) => {
            print_json(&value);
            Ok(())
        }
        Err(crate::client::SendError::Refused {
            code,
            message,
            details,
        }) => {
            let mut text = format!("{code}: {message}");
            for d in details {
                text.push_str(&format!(
                    "\n  {}: {}{}",
                    d.field.unwrap_or_default(),
                    d.message,
                    d.code.map(|c| format!(" [{c}]")).unwrap_or_default()
                ));
            }
            Err(Failure::Runtime(text))
        }
        Err(e) => Err(Failure::runtime(e)),
    }
}

async fn dlq(settings: &Settings, command: DlqCommand) -> Result<(), Failure> {
    let op = match &command {
        DlqCommand::List(_) => crate::client::DlqOp::List,
        DlqCommand::Retry(a) => crate::client::DlqOp::Retry(a.id),
        DlqCommand::Discard(a) => crate::client::DlqOp::Discard(a.id),
    };
    let target = open_target(settings, command.target()).await?;
    let answer = target.dlq(op).await;
    target.close().await;
    let value = answer.map_err(Failure::runtime)?;
    print_json(&value);
    Ok(())
}

async fn reconcile(settings: &Settings, args: ReconcileArgs) -> Result<(), Failure> {
    let channel = args
        .channel
        .as_deref()
        .map(|c| {
            stockd_core::ChannelId::parse(c)
                .map_err(|e| Failure::Usage(format!("invalid channel id {c:?}: {e}")))
        })
        .transpose()?;
    let target = open_target(settings, &args.target).await?;
    let result = reconcile_on(&target, channel.as_ref(), args.wait).await;
    target.close().await;
    print_json(&result?);
    Ok(())
}

async fn reconcile_on(
    target: &crate::client::Target,
    channel: Option<&stockd_core::ChannelId>,
    wait: bool,
) -> Result<serde_json::Value, Failure> {
    let started = target
        .reconcile_start(channel)
        .await
        .map_err(Failure::runtime)?;
    if !wait {
        return Ok(started);
    }
    let ids: Vec<i64> = started["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    loop {
        let mut runs = Vec::new();
        for id in &ids {
            if let Some(run) = target.reconcile_run(*id).await.map_err(Failure::runtime)? {
                runs.push(run);
            }
        }
        let total: u64 = runs.iter().filter_map(|r| r["total"].as_u64()).sum();
        let checked: u64 = runs
            .iter()
            .filter_map(|r| r["listings_checked"].as_u64())
            .sum();
        let done = runs
            .iter()
            .all(|r| matches!(r["status"].as_str(), Some("completed" | "failed")));
        // Runs reading their channel in bulk show what the read delivered.
        let reading: Option<u64> = runs
            .iter()
            .filter_map(|r| r["channel_listings_read"].as_u64())
            .reduce(|a, b| a + b);
        let mut line = progress_bar(checked, total, runs.len());
        if let Some(n) = reading {
            line.push_str(&format!(", {n} read from the channel"));
        }
        eprint!("\r{line}");
        if done {
            eprintln!();
            return Ok(serde_json::json!({ "runs": runs }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// `[#######.............]  1234/5000 listings (2 runs)`.
fn progress_bar(checked: u64, total: u64, runs: usize) -> String {
    const WIDTH: u64 = 30;
    let filled = (checked * WIDTH).checked_div(total).unwrap_or(0).min(WIDTH);
    format!(
        "[{}{}] {checked}/{total} listings ({runs} run{})",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize),
        if runs == 1 { "" } else { "s" }
    )
}

#[cfg(feature = "demo")]
async fn demo(settings: &Settings, args: DemoArgs) -> Result<(), Failure> {
    let options = crate::demo::DemoOptions {
        listen: settings.serve.listen,
        duration: args.duration,
        variants: args.variants.max(1),
        orders_per_second: args.orders_per_second,
        report: args.report.clone(),
        inbound_nats: (args.inbound == "nats").then(|| args.nats_url.clone()),
        ..Default::default()
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let report = crate::demo::run(options, stop)
        .await
        .map_err(Failure::runtime)?;
    eprint!("{}", crate::demo::summary(&report));
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report).map_err(Failure::runtime)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// A candidate rules document for `simulate --rules`: the TOML file that
/// `stockd rules preview|apply` takes, or JSON as `PUT /v1/rules` takes
/// `rules` (by the file's extension).
#[cfg(feature = "demo")]
fn candidate_rules(path: &std::path::Path, text: &str) -> Result<serde_json::Value, Failure> {
    if path.extension().is_some_and(|e| e == "json") {
        return serde_json::from_str(text)
            .map_err(|e| Failure::Usage(format!("rules_invalid_json: {}: {e}", path.display())));
    }
    let doc: toml::Value = toml::from_str(text)
        .map_err(|e| Failure::Usage(format!("rules_invalid_toml: {}: {e}", path.display())))?;
    Ok(crate::simulate::scenario::toml_to_json(&doc))
}

#[cfg(feature = "demo")]
async fn simulate(args: SimulateArgs) -> Result<(), Failure> {
    let scenario = crate::simulate::scenario::Scenario::load(&args.scenario)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let seeds = match (&args.seed, &args.seeds) {
        (Some(seed), _) => vec![*seed],
        (None, Some(range)) => crate::simulate::parse_seeds(range).map_err(Failure::Usage)?,
        (None, None) => vec![0],
    };
    let candidate_rules = match &args.rules {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?;
            Some(candidate_rules(path, &text)?)
        }
    };
    let options = crate::simulate::SimulateOptions {
        scenario,
        seeds,
        candidate_rules,
        trace: args.trace.clone(),
        jobs: args.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        ),
    };
    // Each seed runs on a runtime of its own with paused time, off this one.
    let report = tokio::task::spawn_blocking(move || crate::simulate::run(&options))
        .await
        .map_err(Failure::runtime)?
        .map_err(Failure::runtime)?;
    print!("{}", crate::simulate::table(&report));
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report).map_err(Failure::runtime)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", path.display())))?;
    }
    if report.invariant_violations > 0 {
        return Err(Failure::Runtime(format!(
            "invariant_violations: {} (see the report)",
            report.invariant_violations
        )));
    }
    Ok(())
}

async fn serve(settings: Settings) -> Result<(), Failure> {
    let server = crate::spawn(settings.serve).await.map_err(|e| match e {
        crate::StartError::OpenOnPublicAddress(_)
        | crate::StartError::Store(stockd_store::StoreError::UnsupportedUrl(_)) => {
            Failure::Usage(e.to_string())
        }
        other => Failure::runtime(other),
    })?;
    crate::run_until_signal(server)
        .await
        .map_err(Failure::runtime)
}

async fn open_target(settings: &Settings, args: &TargetArgs) -> Result<Target, Failure> {
    match &args.server {
        Some(server) => {
            let client = ApiClient::new(server, args.token.clone().map(Secret::new))
                .map_err(|e| Failure::Usage(e.to_string()))?;
            Ok(Target::Server(client))
        }
        None => {
            let store = stockd_store::open(&settings.serve.database_url)
                .await
                .map_err(store_failure)?;
            Ok(Target::Direct(store))
        }
    }
}

/// A database URL stockd cannot use is a configuration error; anything else is not.
fn store_failure(e: stockd_store::StoreError) -> Failure {
    match e {
        stockd_store::StoreError::UnsupportedUrl(_) => Failure::Usage(e.to_string()),
        other => Failure::runtime(other),
    }
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot print the result: {e}"),
    }
}

fn init_logging(log: &LogSettings) -> Result<(), Failure> {
    let filter = tracing_subscriber::EnvFilter::try_new(&log.filter).map_err(|e| {
        Failure::from(ConfigError::LogFilter {
            filter: log.filter.clone(),
            message: e.to_string(),
        })
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init(),
    };
    // Already installed (e.g. by an embedding program): keep that one.
    let _ = installed;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_are_exit_code_2() {
        let err = Cli::try_parse_from(["stockd", "serve", "--nope"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let help = Cli::try_parse_from(["stockd", "events", "--help"]).unwrap_err();
        assert_eq!(help.exit_code(), 0);
    }

    #[cfg(feature = "demo")]
    #[test]
    fn simulate_candidate_rules_read_toml_as_rules_apply_does_and_json() {
        let toml_rules = candidate_rules(
            std::path::Path::new("candidate.toml"),
            "[defaults]\nsafety_stock = 2\n",
        )
        .expect("toml");
        let json_rules = candidate_rules(
            std::path::Path::new("candidate.json"),
            r#"{"defaults": {"safety_stock": 2}}"#,
        )
        .expect("json");
        assert_eq!(toml_rules, json_rules);
        assert_eq!(toml_rules["defaults"]["safety_stock"], 2);
        // The shipped examples are rules documents stockd accepts.
        for file in ["safety-stock-0.toml", "safety-stock-2.toml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../scenarios")
                .join(file);
            let text = std::fs::read_to_string(&path).expect("example");
            let doc: stockd_core::rules::RulesDocument = toml::from_str(&text).expect(file);
            assert!(doc.validate(&[]).is_ok(), "{file}");
            candidate_rules(&path, &text).expect(file);
        }
        for (name, text, code) in [
            ("bad.toml", "[defaults\n", "rules_invalid_toml"),
            ("bad.json", "{", "rules_invalid_json"),
        ] {
            match candidate_rules(std::path::Path::new(name), text) {
                Err(Failure::Usage(message)) => assert!(message.starts_with(code), "{message}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
