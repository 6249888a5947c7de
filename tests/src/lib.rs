//! End-to-end test harness: the four services in-process on loopback listeners, seeded with
//! the demo tenant of `switchboard dev`, and clients that call them through the gateway with
//! the demo credentials, exactly as a user would.

pub mod flows;

use std::time::Duration;

use anyhow::Context;
use switchboard::seed::{self, ApiKey, Bearer, DevCredentials, DevSecrets};
use switchboard::suite::{self, RunningSuite, Storage, SuiteOptions};
use switchboard_proto::conversation::v1::conversation_service_client::ConversationServiceClient;
use switchboard_proto::conversation::v1::supervisor_service_client::SupervisorServiceClient;
use switchboard_proto::directory::internal::v1::directory_internal_service_client::DirectoryInternalServiceClient;
use switchboard_proto::directory::v1 as dir;
use switchboard_proto::directory::v1::directory_service_client::DirectoryServiceClient;
use switchboard_proto::directory::v1::platform_service_client::PlatformServiceClient;
use switchboard_proto::reporting::v1::reporting_service_client::ReportingServiceClient;
use switchboard_proto::routing::v1::agent_service_client::AgentServiceClient;
use switchboard_proto::routing::v1::queue_service_client::QueueServiceClient;
use switchboard_server_kit::testing::ScratchDatabases;
use switchboard_server_kit::{Identity, IdentityKey, SignedChannel, signed_channel};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A running suite with its demo credentials.
pub struct Harness {
    suite: Option<RunningSuite>,
    /// The demo tenant's credentials.
    pub creds: DevCredentials,
    /// A channel to the gateway.
    pub channel: Channel,
    /// The suite's secrets, for tokens of users a test creates.
    secrets: DevSecrets,
    _data: Option<tempfile::TempDir>,
    /// The suite's PostgreSQL databases, dropped after the suite stops.
    databases: Option<ScratchDatabases>,
}

/// Which backend a test runs on.
pub enum Backend {
    /// SQLite files in a temporary directory.
    Sqlite,
    /// PostgreSQL at `SWITCHBOARD_TEST_POSTGRES_URL`, in fresh databases dropped with the
    /// [`Harness`].
    Postgres(String),
}

impl Backend {
    /// SQLite always, plus PostgreSQL when `SWITCHBOARD_TEST_POSTGRES_URL` is set.
    pub fn all() -> Vec<Backend> {
        let mut backends = vec![Backend::Sqlite];
        backends.extend(Backend::postgres(""));
        backends
    }

    /// PostgreSQL at `SWITCHBOARD_TEST_POSTGRES_URL`, or `None` when the run may go
    /// without it (`switchboard_server_kit::testing::postgres_url`).
    pub fn postgres(test: &str) -> Option<Backend> {
        switchboard_server_kit::testing::postgres_url(test).map(Backend::Postgres)
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// Declares, for each named `async fn(&Backend)`, the tests `<name>::on_sqlite` and
/// `<name>::on_postgres`, so every backend's run is reported by name. The PostgreSQL case
/// says it is skipped when no server is configured.
#[macro_export]
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_sqlite() {
                super::$test(&$crate::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_postgres() {
                if let Some(backend) = $crate::Backend::postgres(module_path!()) {
                    super::$test(&backend).await;
                }
            }
        }
    )+};
}

impl Harness {
    /// Starts the suite on a backend and seeds the demo tenant.
    pub async fn start(backend: &Backend) -> anyhow::Result<Harness> {
        let (storage, data, databases) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                (Storage::Directory(dir.path().to_owned()), Some(dir), None)
            }
            Backend::Postgres(url) => {
                let prefix = format!("e2e_{}", uuid::Uuid::new_v4().simple());
                let databases = ScratchDatabases::new(url, &prefix);
                let storage = Storage::Postgres {
                    server_url: url.clone(),
                    prefix,
                };
                (storage, None, Some(databases))
            }
        };
        let secrets = DevSecrets::generate();
        let running = suite::start(SuiteOptions {
            storage,
            gateway_listen: ([127, 0, 0, 1], 0).into(),
            identity_secret: secrets.identity_secret.clone(),
            jwt_secret: secrets.jwt_secret.clone(),
            operators: secrets.operators(),
            metrics: false,
        })
        .await?;
        let gateway_db = running
            .database_urls
            .iter()
            .find(|(name, _)| *name == "gateway")
            .map(|(_, url)| url.clone())
            .unwrap_or_default();
        let creds = seed::seed(&gateway_db, running.addresses.gateway, &secrets).await?;
        let channel = seed::connect(running.addresses.gateway).await?;
        Ok(Harness {
            suite: Some(running),
            creds,
            channel,
            secrets,
            _data: data,
            databases,
        })
    }

    /// Credentials of a demo user by handle (agent1, agent2, supervisor, admin).
    pub fn bearer(&self, handle: &str) -> Bearer {
        Bearer::new(&self.creds.user(handle).token).expect("tokens are ASCII")
    }

    /// Credentials of any user of the directory, for example one a test created with
    /// `DirectoryService.CreateUser` (the dev stack's identity provider signs them).
    pub fn bearer_for(&self, user_id: &str) -> Bearer {
        Bearer::new(&self.secrets.token_for(user_id)).expect("tokens are ASCII")
    }

    /// The demo bot's API key.
    pub fn bot(&self) -> ApiKey {
        ApiKey::new(&self.creds.bot.api_key).expect("keys are ASCII")
    }

    /// PlatformService as the dev stack's platform operator.
    pub fn platform(&self) -> PlatformServiceClient<InterceptedService<Channel, ApiKey>> {
        let key = ApiKey::new(&self.creds.operator.operator_key).expect("keys are ASCII");
        PlatformServiceClient::with_interceptor(self.channel.clone(), key)
    }

    /// A new top-level tenant named `tenant_name`, created by the platform operator, and
    /// the API key of its first administrator (`admin_name`, `admin_email`).
    pub async fn new_tenant_with_administrator(
        &self,
        tenant_name: &str,
        admin_name: &str,
        admin_email: &str,
    ) -> (dir::Tenant, ApiKey) {
        let mut platform = self.platform();
        let tenant = platform
            .create_top_level_tenant(dir::CreateTopLevelTenantRequest {
                request_id: rid(),
                tenant: Some(dir::Tenant {
                    display_name: tenant_name.into(),
                    ..Default::default()
                }),
            })
            .await
            .expect("operator creates a tenant")
            .into_inner()
            .tenant
            .expect("tenant");
        let created = platform
            .create_tenant_administrator(dir::CreateTenantAdministratorRequest {
                request_id: rid(),
                tenant_id: tenant.id.clone(),
                user: Some(dir::User {
                    display_name: admin_name.into(),
                    email: admin_email.into(),
                    ..Default::default()
                }),
            })
            .await
            .expect("operator creates the first administrator")
            .into_inner();
        let key = ApiKey::new(&created.api_key_secret).expect("keys are ASCII");
        (tenant, key)
    }

    /// DirectoryService as a demo user.
    pub fn directory(
        &self,
        handle: &str,
    ) -> DirectoryServiceClient<InterceptedService<Channel, Bearer>> {
        self.directory_as(self.bearer(handle))
    }

    /// DirectoryService as the user of `credentials`.
    pub fn directory_as(
        &self,
        credentials: Bearer,
    ) -> DirectoryServiceClient<InterceptedService<Channel, Bearer>> {
        DirectoryServiceClient::with_interceptor(self.channel.clone(), credentials)
    }

    /// The directory's internal API on the gateway's internal listener, called as the
    /// services of the suite call it (signed as service `service`): what another service
    /// learns from the directory.
    pub fn directory_internal(
        &self,
        service: &str,
    ) -> anyhow::Result<DirectoryInternalServiceClient<SignedChannel>> {
        let address = self.running()?.addresses.gateway_internal;
        let channel = signed_channel(
            &format!("http://{address}"),
            IdentityKey::new(&self.secrets.identity_secret)?,
            Identity::service(service),
        )?;
        Ok(DirectoryInternalServiceClient::new(channel))
    }

    /// AgentService as a demo user.
    pub fn agent(&self, handle: &str) -> AgentServiceClient<InterceptedService<Channel, Bearer>> {
        self.agent_as(self.bearer(handle))
    }

    /// AgentService as the user of `credentials`.
    pub fn agent_as(
        &self,
        credentials: Bearer,
    ) -> AgentServiceClient<InterceptedService<Channel, Bearer>> {
        AgentServiceClient::with_interceptor(self.channel.clone(), credentials)
    }

    /// QueueService as a demo user.
    pub fn queues(&self, handle: &str) -> QueueServiceClient<InterceptedService<Channel, Bearer>> {
        self.queues_as(self.bearer(handle))
    }

    /// QueueService as the user of `credentials`.
    pub fn queues_as(
        &self,
        credentials: Bearer,
    ) -> QueueServiceClient<InterceptedService<Channel, Bearer>> {
        QueueServiceClient::with_interceptor(self.channel.clone(), credentials)
    }

    /// ConversationService as a demo user.
    pub fn conversations(
        &self,
        handle: &str,
    ) -> ConversationServiceClient<InterceptedService<Channel, Bearer>> {
        self.conversations_as(self.bearer(handle))
    }

    /// ConversationService as the user of `credentials`.
    pub fn conversations_as(
        &self,
        credentials: Bearer,
    ) -> ConversationServiceClient<InterceptedService<Channel, Bearer>> {
        ConversationServiceClient::with_interceptor(self.channel.clone(), credentials)
    }

    /// SupervisorService as a demo user.
    pub fn supervisor(
        &self,
        handle: &str,
    ) -> SupervisorServiceClient<InterceptedService<Channel, Bearer>> {
        SupervisorServiceClient::with_interceptor(self.channel.clone(), self.bearer(handle))
    }

    /// ConversationService as the demo bot.
    pub fn bot_conversations(
        &self,
    ) -> ConversationServiceClient<InterceptedService<Channel, ApiKey>> {
        ConversationServiceClient::with_interceptor(self.channel.clone(), self.bot())
    }

    /// ReportingService as a demo user.
    pub fn reports(
        &self,
        handle: &str,
    ) -> ReportingServiceClient<InterceptedService<Channel, Bearer>> {
        ReportingServiceClient::with_interceptor(self.channel.clone(), self.bearer(handle))
    }

    /// Stops one service (`routing-svc`, `conversation-svc`, `reporting-svc` or `gateway`)
    /// gracefully while the others keep running: an outage of that service as its callers
    /// see it. The suite as a whole keeps running.
    pub async fn stop_service(&self, name: &str) -> anyhow::Result<()> {
        self.running()?.stop_service(name).await
    }

    /// Starts a service stopped with [`Harness::stop_service`] again, on the same address and
    /// database, once it reports SERVING.
    pub async fn start_service(&self, name: &str) -> anyhow::Result<()> {
        self.running()?.start_service(name).await
    }

    fn running(&self) -> anyhow::Result<&RunningSuite> {
        self.suite
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the suite is stopped"))
    }

    /// Stops the suite gracefully, then drops its PostgreSQL databases; every service must
    /// exit cleanly.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let stopped = match self.suite.take() {
            Some(suite) => suite.stop().await,
            None => Ok(()),
        };
        let dropped = match self.databases.take() {
            Some(databases) => databases
                .drop_all()
                .await
                .context("dropping the suite's databases"),
            None => Ok(()),
        };
        stopped.and(dropped)
    }
}

/// A fresh request id.
pub fn rid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `problem` until it finds nothing wrong, or fails after `timeout` with the last
/// thing it found.
pub async fn settles<F, Fut>(timeout: Duration, mut problem: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let Some(wrong) = problem().await else {
            return;
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "still wrong after {timeout:?}: {wrong}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
