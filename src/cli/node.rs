//! Flags shared by every command that talks to a node: its address and the credential.

use std::path::PathBuf;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// The node: ssh://[user@]host[:port] (a tunnel to the agent with your ssh setup), the
    /// agent's http(s)://host:port, or the name of a local node from `silver node boot`.
    #[arg(long, env = "SILVER_NODE", value_name = "URL")]
    pub node: String,
    /// With ssh://: the agent's address on the node.
    #[arg(
        long,
        env = "SILVER_AGENT_ADDR",
        default_value = "127.0.0.1:7330",
        value_name = "ADDR"
    )]
    pub agent_addr: String,
    /// With https://: a CA certificate (PEM) to trust, e.g. a node's self-signed one.
    #[arg(long, env = "SILVER_CA_CERT", value_name = "FILE")]
    #[arg(value_parser = super::common::absolute_path)]
    pub ca_cert: Option<PathBuf>,
    /// With ssh:// and no token here: the agent's token file on the node, read over ssh.
    #[arg(
        long,
        env = "SILVER_REMOTE_TOKEN_FILE",
        default_value = "/var/lib/silver/token",
        value_name = "PATH"
    )]
    pub remote_token_file: String,
    /// A file holding the agent's token (else SILVER_TOKEN; with ssh://, else read on the node).
    #[arg(long, value_name = "FILE")]
    #[arg(value_parser = super::common::absolute_path)]
    pub token_file: Option<PathBuf>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// A token file other users can read hands them the node; refuse it, as ssh refuses a key.
pub(super) fn read_token_file(path: &std::path::Path) -> anyhow::Result<String> {
    if let Some(mode) = safefs::too_open(path)
        .with_context(|| format!("failed to read the token file `{}`", path.display()))?
    {
        return Err(crate::ui::hinted(
            format!(
                "the token file `{}` is mode {mode:04o}: other users can read or change it",
                path.display()
            ),
            format!("`chmod 600 {}`", path.display()),
        ));
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("failed to read the token file `{}`", path.display()))
}

impl NodeArgs {
    pub fn connect(&self) -> anyhow::Result<silver_client::Node> {
        if !self.node.contains("://") {
            return self.connect_local();
        }
        let token = match &self.token_file {
            Some(path) => Some(read_token_file(path)?.trim().to_string()),
            None => std::env::var("SILVER_TOKEN").ok().filter(|t| !t.is_empty()),
        };
        let config = silver_client::NodeConfig {
            url: self.node.clone(),
            token,
            agent_addr: self.agent_addr.clone(),
            // Like git's GIT_SSH_COMMAND: the ssh program and options to use.
            ssh_command: std::env::var("SILVER_SSH").unwrap_or_else(|_| "ssh".into()),
            ca_cert: self.ca_cert.clone(),
            remote_token_file: self.remote_token_file.clone(),
        };
        Ok(silver_client::Node::connect(&config)?)
    }

    /// A local node by name: needs the `bake` feature, which boots them.
    #[cfg(not(feature = "bake"))]
    fn connect_local(&self) -> anyhow::Result<silver_client::Node> {
        Err(crate::ui::hinted(
            format!(
                "`{}` is not a URL, and this silver was built without `bake`, which knows local nodes",
                self.node
            ),
            "use ssh://user@host or https://host:port",
        ))
    }

    /// A local node by name: its agent's TLS port, its CA and its token, from its state.
    #[cfg(feature = "bake")]
    fn connect_local(&self) -> anyhow::Result<silver_client::Node> {
        let nodes_dir = match std::env::var_os("SILVER_NODES_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => super::nodes::default_nodes_dir()?,
        };
        let Some(info) = builder::vm::find(&nodes_dir, &self.node) else {
            return Err(crate::ui::hinted(
                format!(
                    "`{}` is neither a URL nor a local node in `{}`",
                    self.node,
                    nodes_dir.display()
                ),
                "use ssh://user@host, https://host:port, or a name from `silver node list`",
            ));
        };
        if info.agent_url.is_empty() {
            return Err(crate::ui::hinted(
                format!(
                    "local node `{}` was booted by an older silver, without a TLS control port",
                    info.name
                ),
                format!("use --node {}", info.node_url),
            ));
        }
        let token = std::fs::read_to_string(&info.token_file).with_context(|| {
            format!(
                "failed to read the token file `{}`",
                info.token_file.display()
            )
        })?;
        let config = silver_client::NodeConfig {
            ca_cert: Some(info.ca_cert.clone()),
            ..silver_client::NodeConfig::new(&info.agent_url, Some(token.trim().to_string()))
        };
        Ok(silver_client::Node::connect(&config)?)
    }
}

/// `user@host`, as recorded in a node's history.
pub fn who() -> String {
    format!("{}@{}", user_name(), rustix_hostname())
}

/// The invoking account's name.
pub fn user_name() -> String {
    // The account itself first: `USER` is unset under sudo -i, cron and CI runners.
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| format!("uid{uid}"))
}

fn rustix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// A tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}
