//! The demo tenant of `switchboard dev`: a program, a web-chat queue, two agents, a
//! supervisor, an administrator and a bot credential. Every step is idempotent (fixed ids
//! and fixed request ids), so restarting on the same data creates nothing twice.

use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use switchboard_proto::common::v1::Channel;
use switchboard_proto::conversation::v1 as conv;
use switchboard_proto::directory::v1::{Role, SupervisorAction};
use switchboard_proto::routing::v1 as routing;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::Channel as GrpcChannel;
use uuid::Uuid;

/// Namespace of the demo data's fixed ids.
const DEMO_NAMESPACE: Uuid = Uuid::from_u128(0x5b1d_0a4d_7e2f_4c61_9a3e_0d15_c0de_0001);
/// How long the printed development tokens stay valid.
const TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

fn demo_id(name: &str) -> Uuid {
    Uuid::new_v5(&DEMO_NAMESPACE, name.as_bytes())
}

/// Everything a developer needs to call the dev stack; written to `dev-credentials.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevCredentials {
    /// Where clients connect (host:port, plaintext).
    pub gateway: String,
    /// The demo tenant.
    pub tenant_id: String,
    /// The demo program.
    pub program_id: String,
    /// The demo web-chat queue.
    pub queue_id: String,
    /// Capacity profile of the demo agents.
    pub capacity_profile_id: String,
    /// Wrap-up reasons offered in the queue.
    pub wrap_up_reason_ids: Vec<String>,
    /// The demo users with their bearer tokens.
    pub users: Vec<DevUser>,
    /// The bot's API key.
    pub bot: DevApiKey,
    /// The platform operator's key, for `switchboard admin` and PlatformService.
    pub operator: DevOperator,
}

/// The dev stack's platform operator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevOperator {
    /// The operator's name at the gateway.
    pub name: String,
    /// `x-api-key: <operator_key>`; only PlatformService accepts it.
    pub operator_key: String,
}

/// A demo user and a bearer token for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevUser {
    /// Short handle: agent1, agent2, supervisor, admin.
    pub handle: String,
    /// User id.
    pub id: String,
    /// Name shown to customers and colleagues.
    pub display_name: String,
    /// Sign-in email.
    pub email: String,
    /// Role names.
    pub roles: Vec<String>,
    /// `authorization: Bearer <token>`.
    pub token: String,
}

/// The demo bot's API key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevApiKey {
    /// Key id.
    pub id: String,
    /// What the key is for.
    pub display_name: String,
    /// `x-api-key: <api_key>`.
    pub api_key: String,
}

impl DevCredentials {
    /// The demo user with this handle.
    pub fn user(&self, handle: &str) -> &DevUser {
        self.users
            .iter()
            .find(|u| u.handle == handle)
            .unwrap_or_else(|| panic!("no demo user {handle}"))
    }
}

/// Secrets the dev stack keeps across restarts of the same data directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DevSecrets {
    /// Gateway-to-service identity signing key.
    pub identity_secret: String,
    /// HS256 key of the development bearer tokens.
    pub jwt_secret: String,
    /// Secret part of the bot's API key.
    pub bot_key_secret: String,
    /// The platform operator's key; empty in secrets files written before operators existed.
    #[serde(default)]
    pub operator_key: String,
}

impl DevSecrets {
    /// Fresh random secrets.
    pub fn generate() -> DevSecrets {
        DevSecrets {
            identity_secret: random_secret(),
            jwt_secret: random_secret(),
            bot_key_secret: random_secret(),
            operator_key: gateway::generate_operator_key(),
        }
    }

    /// A development bearer token for user `user_id`, signed with these secrets as the dev
    /// stack's gateway accepts it.
    pub fn token_for(&self, user_id: &str) -> String {
        gateway::mint_hs256_token(
            &self.jwt_secret,
            "switchboard",
            "switchboard",
            user_id,
            TOKEN_TTL,
        )
    }

    /// The operator keys the gateway accepts, by name.
    pub fn operators(&self) -> Vec<(String, String)> {
        vec![(DEV_OPERATOR.to_owned(), self.operator_key.clone())]
    }
}

/// Name of the dev stack's platform operator.
pub const DEV_OPERATOR: &str = "dev-operator";

fn random_secret() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

struct DemoUser {
    handle: &'static str,
    display_name: &'static str,
    email: &'static str,
    roles: &'static [Role],
}

const DEMO_USERS: &[DemoUser] = &[
    DemoUser {
        handle: "agent1",
        display_name: "Alex Rivera",
        email: "alex@demo.switchboard.invalid",
        roles: &[Role::Agent],
    },
    DemoUser {
        handle: "agent2",
        display_name: "Sam Chen",
        email: "sam@demo.switchboard.invalid",
        roles: &[Role::Agent],
    },
    DemoUser {
        handle: "supervisor",
        display_name: "Jordan Lee",
        email: "jordan@demo.switchboard.invalid",
        roles: &[Role::Supervisor, Role::Analyst],
    },
    DemoUser {
        handle: "admin",
        display_name: "Morgan Blake",
        email: "morgan@demo.switchboard.invalid",
        roles: &[Role::Administrator, Role::Analyst],
    },
];

/// Creates the demo tenant (or finds it again) and returns its credentials.
///
/// The directory part is written through the gateway's directory store (there is no caller
/// yet who could create the first tenant); everything else goes through the gateway's public
/// API with the demo administrator's token, exactly as an administrator would do it.
pub async fn seed(
    gateway_db_url: &str,
    gateway_addr: std::net::SocketAddr,
    secrets: &DevSecrets,
) -> anyhow::Result<DevCredentials> {
    let tenant_id = demo_id("tenant");
    let directory = gateway::Directory::connect(gateway_db_url)
        .await
        .context("opening the gateway's directory")?;
    directory
        .ensure_tenant(tenant_id, None, "Demo Company")
        .await?;
    directory
        .set_enabled_supervisor_actions(
            tenant_id,
            &[
                SupervisorAction::Monitor,
                SupervisorAction::Join,
                SupervisorAction::Assign,
                SupervisorAction::Transfer,
                SupervisorAction::ForceClose,
            ],
        )
        .await?;
    let mut users = Vec::new();
    for demo in DEMO_USERS {
        let id = demo_id(demo.handle);
        directory
            .ensure_user(id, tenant_id, demo.display_name, demo.email, demo.roles)
            .await?;
        users.push(DevUser {
            handle: demo.handle.to_owned(),
            id: id.to_string(),
            display_name: demo.display_name.to_owned(),
            email: demo.email.to_owned(),
            roles: demo
                .roles
                .iter()
                .map(|r| r.as_str_name().trim_start_matches("ROLE_").to_lowercase())
                .collect(),
            token: secrets.token_for(&id.to_string()),
        });
    }
    let bot_id = demo_id("bot");
    let api_key = format!("sbk_{}_{}", bot_id.simple(), secrets.bot_key_secret);
    directory
        .ensure_api_key(bot_id, tenant_id, "Web chat bot", &[Role::Bot], &api_key)
        .await?;

    let admin_token = users
        .iter()
        .find(|u| u.handle == "admin")
        .map(|u| u.token.clone())
        .unwrap_or_default();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{gateway_addr}"))?
        .connect()
        .await
        .context("connecting to the gateway")?;
    let auth = Bearer::new(&admin_token)?;
    let mut queues = routing::queue_service_client::QueueServiceClient::with_interceptor(
        channel.clone(),
        auth.clone(),
    );
    let mut config =
        conv::conversation_config_service_client::ConversationConfigServiceClient::with_interceptor(
            channel, auth,
        );

    let program = queues
        .create_program(routing::CreateProgramRequest {
            request_id: demo_id("request:program").to_string(),
            program: Some(routing::Program {
                display_name: "Customer Care".into(),
                ..Default::default()
            }),
        })
        .await
        .context("creating the demo program")?
        .into_inner()
        .program
        .context("CreateProgram returned no program")?;
    let profile = queues
        .create_capacity_profile(routing::CreateCapacityProfileRequest {
            request_id: demo_id("request:capacity-profile").to_string(),
            capacity_profile: Some(routing::CapacityProfile {
                display_name: "Standard agent".into(),
                total_units: 3,
                channel_costs: vec![routing::ChannelCost {
                    channel: Channel::Webchat as i32,
                    units: 1,
                }],
                ..Default::default()
            }),
        })
        .await
        .context("creating the demo capacity profile")?
        .into_inner()
        .capacity_profile
        .context("CreateCapacityProfile returned no profile")?;
    let queue = queues
        .create_queue(routing::CreateQueueRequest {
            request_id: demo_id("request:queue").to_string(),
            queue: Some(routing::Queue {
                program_id: program.id.clone(),
                display_name: "Web chat".into(),
                accepted_channels: vec![Channel::Webchat as i32],
                assignment_method: routing::AssignmentMethod::MostAvailableCapacity as i32,
                max_open_per_agent: 3,
                // Two minutes: long enough for a person following the README by hand.
                offer_timeout: Some(prost_types::Duration {
                    seconds: 120,
                    nanos: 0,
                }),
                offer_waiting_on_login: Some(true),
                ..Default::default()
            }),
        })
        .await
        .context("creating the demo queue")?
        .into_inner()
        .queue
        .context("CreateQueue returned no queue")?;
    for user in users.iter().filter(|u| u.handle.starts_with("agent")) {
        queues
            .set_agent_profile(routing::SetAgentProfileRequest {
                request_id: demo_id(&format!("request:profile:{}", user.handle)).to_string(),
                agent_profile: Some(routing::AgentProfile {
                    agent_id: user.id.clone(),
                    display_name: user.display_name.clone(),
                    capacity_profile_id: profile.id.clone(),
                    queue_ids: vec![queue.id.clone()],
                    ..Default::default()
                }),
            })
            .await
            .with_context(|| format!("setting the routing profile of {}", user.handle))?;
    }
    let mut wrap_up_reason_ids = Vec::new();
    for name in ["Resolved", "Follow-up needed"] {
        let reason = config
            .create_wrap_up_reason(conv::CreateWrapUpReasonRequest {
                request_id: demo_id(&format!("request:wrap-up:{name}")).to_string(),
                wrap_up_reason: Some(conv::WrapUpReason {
                    display_name: name.into(),
                    queue_ids: vec![queue.id.clone()],
                    active: true,
                    ..Default::default()
                }),
            })
            .await
            .with_context(|| format!("creating the wrap-up reason {name}"))?
            .into_inner()
            .wrap_up_reason
            .context("CreateWrapUpReason returned no reason")?;
        wrap_up_reason_ids.push(reason.id);
    }

    Ok(DevCredentials {
        gateway: gateway_addr.to_string(),
        tenant_id: tenant_id.to_string(),
        program_id: program.id,
        queue_id: queue.id,
        capacity_profile_id: profile.id,
        wrap_up_reason_ids,
        users,
        bot: DevApiKey {
            id: bot_id.to_string(),
            display_name: "Web chat bot".into(),
            api_key,
        },
        operator: DevOperator {
            name: DEV_OPERATOR.to_owned(),
            operator_key: secrets.operator_key.clone(),
        },
    })
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// An interceptor sending this token.
    pub fn new(token: &str) -> anyhow::Result<Bearer> {
        Ok(Bearer(format!("Bearer {token}").parse()?))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Adds `x-api-key: <key>` to every call.
#[derive(Clone)]
pub struct ApiKey(MetadataValue<tonic::metadata::Ascii>);

impl ApiKey {
    /// An interceptor sending this key.
    pub fn new(key: &str) -> anyhow::Result<ApiKey> {
        Ok(ApiKey(key.parse()?))
    }
}

impl Interceptor for ApiKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("x-api-key", self.0.clone());
        Ok(request)
    }
}

/// A channel to the gateway, for clients built with `with_interceptor`.
pub async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<GrpcChannel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await?,
    )
}
