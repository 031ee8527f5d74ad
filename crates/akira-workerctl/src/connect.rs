//! Connection options shared by every command, named like the `nats` CLI's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use akira_workers::config::{read_secret, resolve_secret_path, split_list};
use async_nats::jetstream;
use async_nats::{Client, ConnectOptions, ServerAddr};

/// Default server when neither `--server` nor `NATS_URL` is set.
pub const DEFAULT_SERVER: &str = "nats://127.0.0.1:4222";

/// Connection name shown by the server.
pub const CONNECTION_NAME: &str = "akira-workerctl";

/// How to reach and authenticate to NATS.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "NATS connection")]
pub struct NatsArgs {
    /// NATS server URLs, comma-separated.
    #[arg(short = 's', long = "server", env = "NATS_URL", value_name = "URL", default_value = DEFAULT_SERVER, global = true)]
    pub server: String,

    /// NATS credentials file (JWT and NKey seed).
    #[arg(long, env = "NATS_CREDS", value_name = "FILE", global = true)]
    pub creds: Option<PathBuf>,

    /// User name for user and password authentication; the password comes from --password-file.
    #[arg(long, env = "NATS_USER", value_name = "NAME", global = true)]
    pub user: Option<String>,

    /// File that contains the password for --user.
    #[arg(long, value_name = "FILE", requires = "user", global = true)]
    pub password_file: Option<PathBuf>,

    /// File that contains an authentication token.
    #[arg(long, value_name = "FILE", global = true)]
    pub token_file: Option<PathBuf>,

    /// File that contains an NKey seed.
    #[arg(long, value_name = "FILE", global = true)]
    pub nkey: Option<PathBuf>,

    /// CA certificate file (PEM) that verifies the server; enables TLS.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate file (PEM) for TLS authentication; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// Private key file (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert", global = true)]
    pub tls_key: Option<PathBuf>,

    /// Time limit for connecting and for each JetStream API request, such as 5s.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,
}

/// Parses a command-line duration such as `30s` or `14d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    akira_workers::duration::parse(text)
}

/// A failure to reach or authenticate to NATS.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid NATS server URL {url:?}: {message}; write it as nats://HOST:PORT")]
    InvalidUrl { url: String, message: String },
    #[error("no NATS server URL given; set --server or NATS_URL")]
    NoServer,
    #[error("cannot read {kind} {path}: {source}; check the path and its permissions")]
    File {
        kind: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to NATS at {servers}: {message}; check that nats-server runs there, or set --server or NATS_URL")]
    Unreachable { servers: String, message: String },
    #[error("NATS at {servers} did not answer JetStream requests within {waited:?}: {message}; check that JetStream is enabled")]
    NoJetStream {
        servers: String,
        waited: Duration,
        message: String,
    },
}

impl NatsArgs {
    /// Returns the server URLs of `--server`, split at commas.
    pub fn servers(&self) -> Vec<String> {
        split_list(&self.server)
    }

    async fn options(&self) -> Result<ConnectOptions, ConnectError> {
        let mut options = match &self.creds {
            Some(path) => {
                let path = resolve_secret_path(path);
                ConnectOptions::with_credentials_file(&path)
                    .await
                    .map_err(|source| ConnectError::File {
                        kind: "credentials file",
                        path,
                        source,
                    })?
            }
            None => ConnectOptions::new(),
        };
        options = options
            .name(CONNECTION_NAME)
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout));

        if let Some(user) = &self.user {
            let password = match &self.password_file {
                Some(path) => read_file("password file", path)?,
                None => String::new(),
            };
            options = options.user_and_password(user.clone(), password);
        }
        if let Some(path) = &self.token_file {
            options = options.token(read_file("token file", path)?);
        }
        if let Some(path) = &self.nkey {
            options = options.nkey(read_file("NKey seed file", path)?);
        }
        if let Some(path) = &self.tls_ca {
            options = options
                .add_root_certificates(resolve_secret_path(path))
                .require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options
                .add_client_certificate(resolve_secret_path(cert), resolve_secret_path(key))
                .require_tls(true);
        }
        Ok(options)
    }

    fn server_addrs(&self) -> Result<Vec<ServerAddr>, ConnectError> {
        let servers = self.servers();
        if servers.is_empty() {
            return Err(ConnectError::NoServer);
        }
        servers
            .iter()
            .map(|url| {
                url.parse::<ServerAddr>()
                    .map_err(|err| ConnectError::InvalidUrl {
                        url: url.clone(),
                        message: err.to_string(),
                    })
            })
            .collect()
    }

    /// Connects once and fails when no server responds within `--timeout`.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let addrs = self.server_addrs()?;
        let options = self.options().await?;
        options
            .connect(addrs)
            .await
            .map_err(|err| ConnectError::Unreachable {
                servers: self.server.clone(),
                message: error_chain(&err),
            })
    }

    /// Connects and waits until JetStream responds, retrying for up to `wait`, so a command can
    /// run right after nats-server starts.
    pub async fn connect_jetstream_waiting(
        &self,
        wait: Duration,
    ) -> Result<(Client, jetstream::Context), ConnectError> {
        let deadline = Instant::now() + wait;
        let mut reported = false;
        loop {
            let attempt = self.try_connect_jetstream().await;
            let err = match attempt {
                Ok(connected) => return Ok(connected),
                Err(
                    err @ (ConnectError::InvalidUrl { .. }
                    | ConnectError::NoServer
                    | ConnectError::File { .. }),
                ) => return Err(err),
                Err(err) => err,
            };
            if Instant::now() + Duration::from_millis(250) >= deadline {
                return Err(match err {
                    ConnectError::Unreachable { servers, message } => ConnectError::Unreachable {
                        servers,
                        message: format!(
                            "{message} (kept trying for {})",
                            akira_workers::duration::format(wait)
                        ),
                    },
                    other => other,
                });
            }
            if !reported {
                eprintln!(
                    "waiting up to {} for NATS JetStream at {}: {err}",
                    akira_workers::duration::format(wait),
                    self.server
                );
                reported = true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn try_connect_jetstream(&self) -> Result<(Client, jetstream::Context), ConnectError> {
        let client = self.connect().await?;
        let jetstream = self.jetstream(client.clone());
        match jetstream.query_account().await {
            Ok(_) => Ok((client, jetstream)),
            Err(err) => Err(ConnectError::NoJetStream {
                servers: self.server.clone(),
                waited: self.timeout,
                message: error_chain(&err),
            }),
        }
    }

    /// Returns a JetStream context whose requests time out after `--timeout`.
    pub fn jetstream(&self, client: Client) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(self.timeout)
            .build(client)
    }
}

fn read_file(kind: &'static str, path: &std::path::Path) -> Result<String, ConnectError> {
    read_secret(kind, path).map_err(|err| match err {
        akira_workers::ConfigError::Secret { path, source, .. } => {
            ConnectError::File { kind, path, source }
        }
        other => ConnectError::File {
            kind,
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

/// Joins an error and its sources into one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}
