//! `switchboard admin`: what a platform operator does against a running suite, through the
//! gateway's PlatformService with an operator key: create and list top-level tenants, create
//! a tenant's first administrator, and generate operator keys.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use switchboard_proto::directory::v1 as dir;
use switchboard_proto::directory::v1::platform_service_client::PlatformServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use uuid::Uuid;

use crate::seed::ApiKey;

/// Options of `switchboard admin`.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The gateway: `host:port` (plaintext), or `http://…` / `https://…`.
    #[arg(
        long,
        env = "SWITCHBOARD_ADMIN_GATEWAY",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub gateway: String,
    /// PEM file of the CA that signed the gateway's certificate, for `https://` gateways.
    #[arg(long, env = "SWITCHBOARD_ADMIN_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// The platform operator key (`sbo_…`). Prefer the environment variable: a flag shows in
    /// the process list.
    #[arg(
        long,
        env = "SWITCHBOARD_OPERATOR_KEY",
        hide_env_values = true,
        global = true
    )]
    pub operator_key: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Subcommands of `switchboard admin`.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Top-level tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// A tenant's first administrator.
    #[command(subcommand)]
    User(UserCommand),
    /// Prints a new operator key and the hash to put in the gateway's `auth.operators`.
    OperatorKey {
        /// The operator's name, for the configuration snippet.
        #[arg(long, default_value = "ops")]
        name: String,
    },
}

/// `switchboard admin tenant …`.
#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Creates a top-level tenant and prints its id.
    Create {
        /// The tenant's name.
        #[arg(long)]
        name: String,
        /// Request id, to retry a call whose answer was lost without creating twice.
        #[arg(long)]
        request_id: Option<Uuid>,
    },
    /// Lists the top-level tenants.
    List,
}

/// `switchboard admin user …`.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Creates a tenant's first administrator and prints its API key once.
    Create {
        /// The top-level tenant's id.
        #[arg(long)]
        tenant: String,
        /// Create an administrator: the only kind of user an operator creates.
        #[arg(long, required = true)]
        admin: bool,
        /// The administrator's name.
        #[arg(long)]
        name: String,
        /// The administrator's sign-in email.
        #[arg(long)]
        email: String,
        /// Request id, to retry a call whose answer was lost without creating twice.
        #[arg(long)]
        request_id: Option<Uuid>,
    },
}

type Client = PlatformServiceClient<InterceptedService<Channel, ApiKey>>;

/// Runs one admin command and prints its outcome on stdout.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if let AdminCommand::OperatorKey { name } = &args.command {
        let key = gateway::generate_operator_key();
        writeln!(out, "operator key (keep it secret; shown once): {key}")?;
        writeln!(out, "add to the gateway's configuration (gateway.toml):")?;
        writeln!(out)?;
        writeln!(out, "[[auth.operators]]")?;
        writeln!(out, "name = \"{name}\"")?;
        writeln!(out, "sha256 = \"{}\"", gateway::operator_key_hash(&key))?;
        return Ok(());
    }
    let mut client = connect(&args).await?;
    match args.command {
        AdminCommand::Tenant(TenantCommand::Create { name, request_id }) => {
            let request_id = request_id.unwrap_or_else(Uuid::new_v4);
            let tenant = client
                .create_top_level_tenant(dir::CreateTopLevelTenantRequest {
                    request_id: request_id.to_string(),
                    tenant: Some(dir::Tenant {
                        display_name: name,
                        ..Default::default()
                    }),
                })
                .await
                .map_err(|status| refused(status, request_id))?
                .into_inner()
                .tenant
                .context("the gateway returned no tenant")?;
            writeln!(out, "tenant created: {}", tenant.display_name)?;
            writeln!(out, "tenant id:      {}", tenant.id)?;
            writeln!(
                out,
                "next: switchboard admin user create --tenant {} --admin --name NAME --email EMAIL",
                tenant.id
            )?;
        }
        AdminCommand::Tenant(TenantCommand::List) => {
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_top_level_tenants(dir::ListTopLevelTenantsRequest {
                        page_size: 500,
                        page_token,
                    })
                    .await
                    .map_err(|status| anyhow::anyhow!(describe(&status)))?
                    .into_inner();
                for tenant in page.tenants {
                    writeln!(out, "{}  {}", tenant.id, tenant.display_name)?;
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        AdminCommand::User(UserCommand::Create {
            tenant,
            admin,
            name,
            email,
            request_id,
        }) => {
            if !admin {
                bail!("operators create only a tenant's first administrator: pass --admin");
            }
            let request_id = request_id.unwrap_or_else(Uuid::new_v4);
            let created = client
                .create_tenant_administrator(dir::CreateTenantAdministratorRequest {
                    request_id: request_id.to_string(),
                    tenant_id: tenant,
                    user: Some(dir::User {
                        display_name: name,
                        email,
                        ..Default::default()
                    }),
                })
                .await
                .map_err(|status| refused(status, request_id))?
                .into_inner();
            let user = created.user.context("the gateway returned no user")?;
            let key = created.api_key.context("the gateway returned no API key")?;
            writeln!(
                out,
                "administrator created: {} <{}>",
                user.display_name, user.email
            )?;
            writeln!(out, "tenant id:   {}", user.tenant_id)?;
            writeln!(out, "user id:     {}", user.id)?;
            writeln!(out, "api key id:  {}", key.id)?;
            if created.api_key_secret.is_empty() {
                writeln!(
                    out,
                    "api key:     (already created by an earlier call with this request id; the secret is shown only once)"
                )?;
            } else {
                writeln!(
                    out,
                    "api key:     {}  (shown only once; hand it to the administrator over a safe channel)",
                    created.api_key_secret
                )?;
            }
            writeln!(
                out,
                "the administrator sends it as `x-api-key` and revokes it (DirectoryService/RevokeApiKey) once signed in with a bearer token"
            )?;
        }
        AdminCommand::OperatorKey { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// A channel to the gateway that sends the operator key with every call.
async fn connect(args: &AdminArgs) -> anyhow::Result<Client> {
    let Some(key) = args
        .operator_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
    else {
        bail!("no operator key: set SWITCHBOARD_OPERATOR_KEY or pass --operator-key");
    };
    let url = if args.gateway.contains("://") {
        args.gateway.clone()
    } else {
        format!("http://{}", args.gateway)
    };
    let mut endpoint =
        Endpoint::from_shared(url.clone()).with_context(|| format!("gateway address {url}"))?;
    if url.starts_with("https://") {
        let Some(path) = &args.ca_cert else {
            bail!("an https:// gateway needs --ca-cert (the CA that signed its certificate)");
        };
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        endpoint = endpoint
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to the gateway at {url}"))?;
    let key = ApiKey::new(key.trim()).context("the operator key must be ASCII")?;
    Ok(PlatformServiceClient::with_interceptor(channel, key))
}

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// The error of a failed mutation, with the request id to retry it safely.
fn refused(status: tonic::Status, request_id: Uuid) -> anyhow::Error {
    let retry = matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
    );
    if retry {
        anyhow::anyhow!(
            "{} (retry with --request-id {request_id}: it changes nothing if the first call went through)",
            describe(&status)
        )
    } else {
        anyhow::anyhow!(describe(&status))
    }
}
