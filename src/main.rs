//! `contact-hub`: the Contact Hub server and its admin commands.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use contact_hub::config::Config;
use contact_hub::domain::{now_ms, Role};
use contact_hub::{auth, demo, import, server};

#[derive(Parser)]
#[command(
    name = "contact-hub",
    version,
    about = "Contact Hub: phone, email, fax and web chat for your customers, in one contact center.",
    long_about = "Contact Hub: phone, email, fax and web chat for your customers, in one contact center.\n\n\
        With no command it serves: the agent console at http://127.0.0.1:8080, the REST API under /api/v1,\n\
        an embedded SQLite database under ./data/ (created on first start). Try `contact-hub demo` to see it\n\
        with a sample company.",
    after_help = "Configuration: contact-hub.toml in the current directory (or --config FILE); every key can be\n\
        overridden by an env var: HUB_DATA_DIR, HUB_HTTP_LISTEN, HUB_SIP_LISTEN, HUB_SMTP_LISTEN,\n\
        HUB_ARCHIVE_DEFAULT_REGION, ... and DATABASE_URL=postgres://user:pass@host/db selects PostgreSQL.\n\n\
        Examples:\n  contact-hub                                  serve with the defaults\n  \
        contact-hub demo                             sample company + serve; prints the logins\n  \
        echo 'secret-pass' | contact-hub user add alice --role agent\n  \
        contact-hub import customers customers.csv   bulk import (re-import updates)"
)]
struct Cli {
    /// Configuration file (default: ./contact-hub.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the console, API and channels (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Import data from files.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Seed a sample company (queues, agents, customers, history), print the logins, and serve.
    /// Scripted customers open web chats while agents are available.
    Demo {
        /// Serve the sample company without the scripted customers (for tests).
        #[arg(long)]
        no_sample_traffic: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from standard input (one line).
    Add {
        /// Login name (letters, digits, . _ - @).
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Name shown in the console (default: the login name).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List users.
    List,
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Import customers from a CSV file with a header row. Columns: external_ref, kind, name,
    /// tier, tags, preferred_channel, language, phone, email, fax, chat_id, region,
    /// do_not_call, do_not_email, notes (only name is required).
    Customers {
        file: PathBuf,
        /// auto (UTF-8, else GB18030/GBK), utf-8, gb18030, big5.
        #[arg(long, default_value = "auto")]
        encoding: import::Encoding,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn main() {
    let cli = Cli::parse();
    // rsipstack logs whole SIP messages (phone numbers) at info: personal data stays out of
    // info-level logs unless RUST_LOG asks for rsipstack by name.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into());
    let filter = if filter.contains("rsipstack") {
        filter
    } else {
        format!("{filter},rsipstack=warn")
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| "info,sqlx=warn,rsipstack=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => server::serve(config).await,
        Command::Migrate => {
            server::open_store(&config).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::User { command } => user(config, command).await,
        Command::Import {
            command: ImportCommand::Customers { file, encoding },
        } => import_customers(config, file, encoding).await,
        Command::Demo { no_sample_traffic } => {
            let store = server::open_store(&config).await?;
            let accounts = demo::seed(&store, &config).await?;
            let scheme = if config.http.tls_cert.is_empty() {
                "http"
            } else {
                "https"
            };
            let url = format!("{scheme}://{}", config.http.listen);
            println!("\nContact Hub demo: a sample company is ready at {url}\n");
            println!("  {:<8} {:<12} {:<24} password", "login", "role", "name");
            for a in &accounts {
                println!(
                    "  {:<8} {:<12} {:<24} {}",
                    a.username,
                    a.role.as_str(),
                    a.display_name,
                    a.password
                );
            }
            println!(
                "\n  Desk phones register to sip:{} with digest:",
                config.sip.listen
            );
            for a in &accounts {
                if let Some((sip_user, pw)) = &a.phone {
                    println!("  sip:{sip_user:<6} for {:<14} {pw}", a.username);
                }
            }
            println!("\n(Passwords are new each time `contact-hub demo` runs.)");
            println!("The sample shop with the chat widget: {url}/chat/example");
            println!(
                "Call the hotline from a softphone on this machine: sip:+864008001234@{}\n",
                config.sip.listen.replace("0.0.0.0", "127.0.0.1")
            );
            store.close().await;
            server::serve_with(config, move |running| {
                if !no_sample_traffic {
                    tokio::spawn(demo::sample_chats(running.addr, running.state.hub.clone()));
                }
            })
            .await
        }
    }
}

async fn user(config: Config, command: UserCommand) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    match command {
        UserCommand::Add {
            name,
            role,
            display_name,
        } => {
            let name = name.trim().to_lowercase();
            auth::check_username(&name).map_err(anyhow::Error::msg)?;
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprint!("Password for {name}: ");
                std::io::stderr().flush().ok();
            }
            let mut password = String::new();
            stdin
                .lock()
                .read_line(&mut password)
                .context("cannot read the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            if password.is_empty() {
                bail!("no password on standard input: echo 'a-strong-password' | contact-hub user add {name} --role {role}");
            }
            auth::check_password_policy(&password).map_err(anyhow::Error::msg)?;
            let hash =
                tokio::task::spawn_blocking(move || auth::hash_password(&password)).await??;
            let display = display_name.unwrap_or_else(|| name.clone());
            let user = store
                .create_user(&name, &display, role, &hash, now_ms())
                .await?;
            println!(
                "added {} ({}) with id {}",
                user.username, user.role, user.id
            );
        }
        UserCommand::List => {
            for u in store.list_users().await? {
                println!(
                    "{:>5}  {:<24} {:<11} {}",
                    u.id,
                    u.username,
                    u.role.as_str(),
                    u.display_name
                );
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn import_customers(
    config: Config,
    file: PathBuf,
    encoding: import::Encoding,
) -> anyhow::Result<()> {
    let store = server::open_store(&config).await?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} importing [{bar:40}] {percent:>3}%  {binary_bytes}/{binary_total_bytes}  {elapsed_precise} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let report = import::import_file(&store, &config.archive, &file, encoding, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    const SHOWN: usize = 1000;
    for (line, reason) in report.rejected.iter().take(SHOWN) {
        eprintln!("line {line}: {reason}");
    }
    if report.rejected.len() > SHOWN {
        eprintln!(
            "... and {} more rejected rows",
            report.rejected.len() - SHOWN
        );
    }
    println!(
        "{}: {} rows in {:.1} s ({:.0} rows/s): {} created, {} updated, {} rejected",
        file.display(),
        report.rows(),
        report.seconds,
        report.rows() as f64 / report.seconds.max(1e-9),
        report.created,
        report.updated,
        report.rejected.len()
    );
    store.close().await;
    Ok(())
}
