//! The directory's storage: tenants, tenant settings, users, teams, API keys, the audit log
//! and the request log, on SQLite or PostgreSQL through server-kit's [`Db`].

pub(crate) mod cache;
mod queries;
mod teams;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::migrate::Migrator;
use switchboard_proto::directory::v1::{Role, SupervisorAction};
use switchboard_server_kit::Db;
use switchboard_server_kit::db::{Dialect, now_micros};
use switchboard_server_kit::idempotency::{self, Fingerprint, RequestKey};
use tracing::info;
use uuid::Uuid;

use crate::domain::api_key;
use crate::domain::directory::{DEFAULT_REOPEN_WINDOW, FieldError};
use crate::domain::page::{Cursor, PageRequest, finish};
use crate::error::GatewayError;
pub use cache::{DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL, TenantFacts};
use cache::{DirectoryCache, Stale};
pub use teams::TeamRecord;

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// A tenant as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRecord {
    /// UUID.
    pub id: String,
    /// The parent tenant, if any.
    pub parent_tenant_id: Option<String>,
    /// Name shown to people.
    pub display_name: String,
    /// Creation time, microseconds since the epoch.
    pub created_at: i64,
}

/// A tenant's settings, with defaults filled in when the tenant has set none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsRecord {
    /// The tenant.
    pub tenant_id: String,
    /// Supervisor actions the tenant allows.
    pub enabled_supervisor_actions: Vec<SupervisorAction>,
    /// How long after close a customer message reopens a conversation.
    pub reopen_window: Duration,
    /// IANA zone for reports; empty for UTC.
    pub time_zone: String,
}

impl SettingsRecord {
    /// The settings of a tenant that has changed nothing.
    pub fn defaults(tenant_id: &str) -> SettingsRecord {
        SettingsRecord {
            tenant_id: tenant_id.to_owned(),
            enabled_supervisor_actions: Vec::new(),
            reopen_window: DEFAULT_REOPEN_WINDOW,
            time_zone: String::new(),
        }
    }
}

/// A user as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    /// UUID.
    pub id: String,
    /// The user's tenant.
    pub tenant_id: String,
    /// Name shown to customers and colleagues.
    pub display_name: String,
    /// Lowercase sign-in email.
    pub email: String,
    /// The user's roles.
    pub roles: Vec<Role>,
    /// Whether the user may sign in.
    pub active: bool,
    /// Creation time, microseconds since the epoch.
    pub created_at: i64,
}

/// An API key as stored; the secret itself is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// UUID, also embedded in the secret.
    pub id: String,
    /// The key's tenant.
    pub tenant_id: String,
    /// What the key is for.
    pub display_name: String,
    /// Roles the key acts with.
    pub roles: Vec<Role>,
    /// First characters of the secret.
    pub prefix: String,
    /// Lowercase hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Creation time, microseconds since the epoch.
    pub created_at: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
}

/// One administrative change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// UUID.
    pub id: String,
    /// The tenant.
    pub tenant_id: String,
    /// User or API key that made the change.
    pub actor_id: String,
    /// The full gRPC method.
    pub method: String,
    /// The object changed.
    pub target_id: String,
    /// The request_id of the call.
    pub request_id: String,
    /// When, microseconds since the epoch.
    pub created_at: i64,
}

/// Who changes what, for the request log and the audit log.
#[derive(Clone, Debug)]
pub struct Mutation {
    /// The caller's tenant: request ids are scoped to it.
    pub tenant_id: String,
    /// The caller's principal id.
    pub actor_id: String,
    /// The full gRPC method.
    pub method: &'static str,
    /// The caller's request_id.
    pub request_id: Uuid,
    /// The request's fingerprint: the same request_id with another request is refused.
    pub fingerprint: Fingerprint,
}

impl Mutation {
    /// The request log key: request ids are scoped to the tenant, the actor and the method.
    fn log_key<'a>(&'a self, request_id: &'a str) -> RequestKey<'a> {
        RequestKey {
            tenant_id: &self.tenant_id,
            caller: &self.actor_id,
            method: self.method,
            request_id,
            fingerprint: self.fingerprint,
        }
    }
}

/// The directory: what the gateway authenticates against and what DirectoryService serves.
///
/// Also the Rust API that seeds a development stack: its `ensure_*` helpers create or
/// update rows with caller-chosen ids, so running them again changes nothing.
#[derive(Clone, Debug)]
pub struct Directory {
    db: Db,
    cache: Arc<DirectoryCache>,
    db_uses: Arc<AtomicU64>,
}

impl Directory {
    /// Opens the directory on `db`, applying pending migrations, with the default caches
    /// ([`DEFAULT_CACHE_TTL`]).
    pub async fn open(db: &Db) -> Result<Directory, GatewayError> {
        migrate(db).await?;
        Ok(Directory {
            db: db.clone(),
            cache: Arc::new(DirectoryCache::new(
                DEFAULT_CACHE_TTL,
                DEFAULT_CACHE_CAPACITY,
            )),
            db_uses: Arc::default(),
        })
    }

    /// This directory with caches of its own that keep the facts authenticating a call
    /// for `ttl` (nothing when zero), at most `capacity` entries each. Writes through
    /// other [`Directory`] values reach these caches only when their entries expire.
    pub fn with_cache(self, ttl: Duration, capacity: u64) -> Directory {
        Directory {
            cache: Arc::new(DirectoryCache::new(ttl, capacity)),
            ..self
        }
    }

    /// How many times this directory and its clones went to the database outside a write
    /// transaction, plus the write transactions begun: lets tests see that a call was
    /// answered from the caches.
    pub fn db_uses(&self) -> u64 {
        self.db_uses.load(Ordering::Relaxed)
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, GatewayError> {
        self.db_uses.fetch_add(1, Ordering::Relaxed);
        Ok(self.db.pool.acquire().await?)
    }

    /// The writer, for the seeding upserts that are single statements.
    async fn write_conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, GatewayError> {
        self.db_uses.fetch_add(1, Ordering::Relaxed);
        Ok(self.db.writer().acquire().await?)
    }

    /// Connects to `database_url` (`sqlite://PATH`, `sqlite::memory:`, `postgres://…`) and
    /// opens the directory there.
    pub async fn connect(database_url: &str) -> Result<Directory, GatewayError> {
        let db = Db::connect(database_url).await?;
        Directory::open(&db).await
    }

    /// The database underneath.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Creates tenant `id` or updates its parent and name.
    pub async fn ensure_tenant(
        &self,
        id: Uuid,
        parent: Option<Uuid>,
        display_name: &str,
    ) -> Result<(), GatewayError> {
        let display_name = crate::domain::directory::display_name("display_name", display_name)?;
        let mut conn = self.write_conn().await?;
        queries::upsert_tenant(
            &mut conn,
            &TenantRecord {
                id: id.to_string(),
                parent_tenant_id: parent.map(|p| p.to_string()),
                display_name,
                created_at: now_micros(),
            },
        )
        .await?;
        self.cache.invalidate(&Stale::AllTenants);
        Ok(())
    }

    /// Creates user `id` or updates it to the given values; the user ends up active.
    ///
    /// Fails with [`GatewayError::AlreadyExists`] when another user has the email.
    pub async fn ensure_user(
        &self,
        id: Uuid,
        tenant: Uuid,
        display_name: &str,
        email: &str,
        roles: &[Role],
    ) -> Result<(), GatewayError> {
        let record = UserRecord {
            id: id.to_string(),
            tenant_id: tenant.to_string(),
            display_name: crate::domain::directory::display_name("display_name", display_name)?,
            email: crate::domain::directory::email("email", email)?,
            roles: roles.to_vec(),
            active: true,
            created_at: now_micros(),
        };
        let mut conn = self.write_conn().await?;
        queries::upsert_user(&mut conn, &record).await?;
        self.cache.invalidate(&Stale::User(record.id));
        Ok(())
    }

    /// Creates API key `id` with `secret` (which must have the form
    /// `sbk_<id as 32 hex digits>_<32+ letters and digits>`, see [`api_key_secret`]) or
    /// updates it to the given values; the key ends up valid (not revoked).
    ///
    /// [`api_key_secret`]: crate::api_key_secret
    pub async fn ensure_api_key(
        &self,
        id: Uuid,
        tenant: Uuid,
        display_name: &str,
        roles: &[Role],
        secret: &str,
    ) -> Result<(), GatewayError> {
        if api_key::parse_secret(secret) != Some(id) {
            return Err(GatewayError::Config(format!(
                "the secret of API key {id} must have the form sbk_{}_<32 to 128 letters and digits>",
                id.simple()
            )));
        }
        let record = ApiKeyRecord {
            id: id.to_string(),
            tenant_id: tenant.to_string(),
            display_name: crate::domain::directory::display_name("display_name", display_name)?,
            roles: roles.to_vec(),
            prefix: api_key::display_prefix(secret),
            secret_sha256: api_key::hash_secret(secret),
            created_at: now_micros(),
            revoked_at: None,
        };
        let mut conn = self.write_conn().await?;
        queries::upsert_api_key(&mut conn, &record).await?;
        self.cache.invalidate(&Stale::AllApiKeys);
        Ok(())
    }

    /// Sets which supervisor actions tenant `tenant` allows, keeping its other settings.
    pub async fn set_enabled_supervisor_actions(
        &self,
        tenant: Uuid,
        actions: &[SupervisorAction],
    ) -> Result<(), GatewayError> {
        let mut tx = self.db.begin().await?;
        let tenant = tenant.to_string();
        let mut settings = queries::settings(&mut tx, &tenant).await?;
        settings.enabled_supervisor_actions = actions.to_vec();
        queries::upsert_settings(&mut tx, &settings).await?;
        tx.commit().await?;
        self.cache.invalidate(&Stale::Tenant(tenant));
        Ok(())
    }

    /// User `id`, as authentication needs it: from the cache when read within the
    /// freshness, else from the database.
    pub async fn cached_user(&self, id: &str) -> Result<Option<Arc<UserRecord>>, GatewayError> {
        self.cache
            .users
            .get_or_load(id.to_owned(), || async {
                Ok(self.user(id).await?.map(Arc::new))
            })
            .await
    }

    /// The API key whose secret is `secret` (revoked or not), as authentication needs it:
    /// from the cache, keyed by the secret's hash, when seen within the freshness.
    pub async fn cached_api_key(
        &self,
        secret: &str,
    ) -> Result<Option<Arc<ApiKeyRecord>>, GatewayError> {
        let Some(id) = api_key::parse_secret(secret) else {
            return Ok(None);
        };
        self.cache
            .api_keys
            .get_or_load(api_key::hash_secret(secret), || async {
                Ok(self
                    .api_key(&id.to_string())
                    .await?
                    .filter(|key| api_key::secret_matches(secret, &key.secret_sha256))
                    .map(Arc::new))
            })
            .await
    }

    /// Tenant `id`'s ancestry and settings, as a call's identity needs them: from the
    /// cache when read within the freshness.
    pub async fn cached_tenant(&self, id: &str) -> Result<Arc<TenantFacts>, GatewayError> {
        let facts = self
            .cache
            .tenants
            .get_or_load(id.to_owned(), || async {
                let mut conn = self.conn().await?;
                let ancestry = queries::ancestry(&mut conn, id).await?;
                let settings = queries::settings(&mut conn, id).await?;
                Ok(Some(Arc::new(TenantFacts { ancestry, settings })))
            })
            .await?;
        Ok(facts.expect("the loader always finds tenant facts"))
    }

    /// Tenant `id`.
    pub async fn tenant(&self, id: &str) -> Result<Option<TenantRecord>, GatewayError> {
        let mut conn = self.conn().await?;
        queries::tenant(&mut conn, id).await
    }

    /// The ancestors of tenant `id`, parent first.
    pub async fn tenant_ancestry(&self, id: &str) -> Result<Vec<String>, GatewayError> {
        let mut conn = self.conn().await?;
        queries::ancestry(&mut conn, id).await
    }

    /// The settings of tenant `id`, defaults filled in.
    pub async fn tenant_settings(&self, id: &str) -> Result<SettingsRecord, GatewayError> {
        let mut conn = self.conn().await?;
        queries::settings(&mut conn, id).await
    }

    /// User `id`, in any tenant.
    pub async fn user(&self, id: &str) -> Result<Option<UserRecord>, GatewayError> {
        let mut conn = self.conn().await?;
        queries::user(&mut conn, id).await
    }

    /// The users among `ids` that belong to tenant `tenant_id`, in no particular order.
    pub async fn users_in_tenant(
        &self,
        tenant_id: &str,
        ids: &[String],
    ) -> Result<Vec<UserRecord>, GatewayError> {
        let mut conn = self.conn().await?;
        queries::users_by_ids(&mut conn, tenant_id, ids).await
    }

    /// API key `id`, in any tenant.
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, GatewayError> {
        let mut conn = self.conn().await?;
        queries::api_key(&mut conn, id).await
    }

    /// A page of the children of tenant `parent`, by name.
    pub async fn child_tenants(
        &self,
        parent: &str,
        page: &PageRequest,
    ) -> Result<(Vec<TenantRecord>, String), GatewayError> {
        let mut conn = self.conn().await?;
        let rows = queries::child_tenants(&mut conn, parent, page).await?;
        Ok(finish(rows, page.size, |t| Cursor {
            key: t.display_name.clone(),
            id: t.id.clone(),
        }))
    }

    /// A page of the tenants without a parent, by name.
    pub async fn top_level_tenants(
        &self,
        page: &PageRequest,
    ) -> Result<(Vec<TenantRecord>, String), GatewayError> {
        let mut conn = self.conn().await?;
        let rows = queries::top_level_tenants(&mut conn, page).await?;
        Ok(finish(rows, page.size, |t| Cursor {
            key: t.display_name.clone(),
            id: t.id.clone(),
        }))
    }

    /// A page of the users of `tenant`, optionally only those with `role` and only the
    /// members of team `team_id`, by display name.
    pub async fn users(
        &self,
        tenant: &str,
        role: Option<Role>,
        team_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<(Vec<UserRecord>, String), GatewayError> {
        let mut conn = self.conn().await?;
        let rows = queries::users(&mut conn, tenant, role, team_id, page).await?;
        Ok(finish(rows, page.size, |u| Cursor {
            key: u.display_name.clone(),
            id: u.id.clone(),
        }))
    }

    /// A page of the API keys of `tenant`, newest first.
    pub async fn api_keys(
        &self,
        tenant: &str,
        page: &PageRequest,
    ) -> Result<(Vec<ApiKeyRecord>, String), GatewayError> {
        let mut conn = self.conn().await?;
        let rows = queries::api_keys(&mut conn, tenant, page).await?;
        Ok(finish(rows, page.size, |k| Cursor {
            key: k.created_at.to_string(),
            id: k.id.clone(),
        }))
    }

    /// A page of the audit log of `tenant`, newest first.
    pub async fn audit_entries(
        &self,
        tenant: &str,
        page: &PageRequest,
    ) -> Result<(Vec<AuditRecord>, String), GatewayError> {
        let mut conn = self.conn().await?;
        let rows = queries::audit_entries(&mut conn, tenant, page).await?;
        Ok(finish(rows, page.size, |a| Cursor {
            key: a.created_at.to_string(),
            id: a.id.clone(),
        }))
    }

    /// Starts the write transaction of `mutation`.
    ///
    /// On PostgreSQL, concurrent calls with the same request_id wait for each other here,
    /// so that the second one finds the first one's answer instead of racing it (SQLite
    /// write transactions are serialized anyway).
    pub async fn begin(&self, mutation: Mutation) -> Result<Tx, GatewayError> {
        self.db_uses.fetch_add(1, Ordering::Relaxed);
        let mut tx = self.db.begin().await?;
        if self.db.dialect == Dialect::Postgres {
            let key = format!(
                "{}\n{}\n{}\n{}",
                mutation.tenant_id, mutation.actor_id, mutation.method, mutation.request_id
            );
            sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        Ok(Tx {
            tx,
            mutation,
            cache: self.cache.clone(),
            stale: Vec::new(),
            dialect: self.db.dialect,
        })
    }
}

/// Applies the migrations, retrying briefly: several processes of a development stack may
/// open the same SQLite file at once, and only one of them can create the tables.
async fn migrate(db: &Db) -> Result<(), GatewayError> {
    let mut attempt = 0;
    loop {
        match db.migrate(&SQLITE, &POSTGRES).await {
            Ok(()) => return Ok(()),
            Err(err) if attempt < 5 => {
                attempt += 1;
                info!(error = %err, attempt, "directory migration failed, retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// A directory write transaction for one mutation: what it changes, its audit row and its
/// recorded answer commit together, and the cached entries it changes are dropped right
/// after the commit.
pub struct Tx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    mutation: Mutation,
    cache: Arc<DirectoryCache>,
    /// What to drop from the caches once committed.
    stale: Vec<Stale>,
    dialect: Dialect,
}

impl Tx {
    /// The answer recorded for this request_id, if the same request was already applied;
    /// INVALID_ARGUMENT on `request_id` when it was used for another request.
    pub async fn replay<R: prost::Message + Default>(&mut self) -> Result<Option<R>, GatewayError> {
        let request_id = self.mutation.request_id.to_string();
        let key = self.mutation.log_key(&request_id);
        idempotency::lookup(&mut self.tx, &key)
            .await?
            .into_replay(&key)
            .map_err(|reused| FieldError::new(idempotency::FIELD, reused.to_string()).into())
    }

    /// Makes transactions that pass the same `key` take turns until commit: a check that
    /// nothing exists yet followed by the insert (a tenant's first administrator) cannot be
    /// passed by two of them at once. PostgreSQL: a transaction-scoped advisory lock;
    /// SQLite serializes every write transaction anyway.
    pub async fn serialize_on(&mut self, key: &str) -> Result<(), GatewayError> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    /// Tenant `id`, read in the transaction.
    pub async fn tenant(&mut self, id: &str) -> Result<Option<TenantRecord>, GatewayError> {
        queries::tenant(&mut self.tx, id).await
    }

    /// The ancestors of tenant `id`, parent first, read in the transaction.
    pub async fn tenant_ancestry(&mut self, id: &str) -> Result<Vec<String>, GatewayError> {
        queries::ancestry(&mut self.tx, id).await
    }

    /// The settings of tenant `id`, read in the transaction.
    pub async fn tenant_settings(&mut self, id: &str) -> Result<SettingsRecord, GatewayError> {
        queries::settings(&mut self.tx, id).await
    }

    /// User `id`, read in the transaction.
    pub async fn user(&mut self, id: &str) -> Result<Option<UserRecord>, GatewayError> {
        queries::user(&mut self.tx, id).await
    }

    /// API key `id`, read in the transaction.
    pub async fn api_key(&mut self, id: &str) -> Result<Option<ApiKeyRecord>, GatewayError> {
        queries::api_key(&mut self.tx, id).await
    }

    /// Whether tenant `id` has an active user with `role`, read in the transaction.
    pub async fn has_active_user_with_role(
        &mut self,
        id: &str,
        role: Role,
    ) -> Result<bool, GatewayError> {
        queries::has_active_user_with_role(&mut self.tx, id, role).await
    }

    /// Also records the change in the audit log of `tenant_id`, for a mutation whose caller
    /// acts on another tenant than its own (a platform operator, a parent's administrator):
    /// the tenant changed sees who changed it, besides the caller's own log.
    pub async fn audit_in(&mut self, tenant_id: &str, target_id: &str) -> Result<(), GatewayError> {
        let m = &self.mutation;
        queries::insert_audit(
            &mut self.tx,
            &AuditRecord {
                id: Uuid::new_v4().to_string(),
                tenant_id: tenant_id.to_owned(),
                actor_id: m.actor_id.clone(),
                method: m.method.to_owned(),
                target_id: target_id.to_owned(),
                request_id: m.request_id.to_string(),
                created_at: now_micros(),
            },
        )
        .await
    }

    /// Adds a tenant.
    pub async fn insert_tenant(&mut self, tenant: &TenantRecord) -> Result<(), GatewayError> {
        self.stale.push(Stale::Tenant(tenant.id.clone()));
        queries::insert_tenant(&mut self.tx, tenant).await
    }

    /// Stores a tenant's settings.
    pub async fn put_settings(&mut self, settings: &SettingsRecord) -> Result<(), GatewayError> {
        self.stale.push(Stale::Tenant(settings.tenant_id.clone()));
        queries::upsert_settings(&mut self.tx, settings).await
    }

    /// Adds a user; ALREADY_EXISTS when the email is taken.
    pub async fn insert_user(&mut self, user: &UserRecord) -> Result<(), GatewayError> {
        self.stale.push(Stale::User(user.id.clone()));
        queries::insert_user(&mut self.tx, user).await
    }

    /// Stores a user's display name, roles and active flag.
    pub async fn update_user(&mut self, user: &UserRecord) -> Result<(), GatewayError> {
        self.stale.push(Stale::User(user.id.clone()));
        queries::update_user(&mut self.tx, user).await
    }

    /// Adds an API key.
    pub async fn insert_api_key(&mut self, key: &ApiKeyRecord) -> Result<(), GatewayError> {
        self.stale.push(Stale::ApiKey(key.secret_sha256.clone()));
        queries::insert_api_key(&mut self.tx, key).await
    }

    /// Marks an API key revoked at `at`.
    pub async fn revoke_api_key(&mut self, id: &str, at: i64) -> Result<(), GatewayError> {
        // The cache knows keys by the hash of their secret.
        if let Some(key) = queries::api_key(&mut self.tx, id).await? {
            self.stale.push(Stale::ApiKey(key.secret_sha256));
        }
        queries::revoke_api_key(&mut self.tx, id, at).await
    }

    /// Writes the audit row for `target_id`, records `response` as the answer to the
    /// request_id, and commits.
    pub async fn finish<R: prost::Message>(
        mut self,
        target_id: &str,
        response: &R,
    ) -> Result<(), GatewayError> {
        let m = &self.mutation;
        let request_id = m.request_id.to_string();
        queries::insert_audit(
            &mut self.tx,
            &AuditRecord {
                id: Uuid::new_v4().to_string(),
                tenant_id: m.tenant_id.clone(),
                actor_id: m.actor_id.clone(),
                method: m.method.to_owned(),
                target_id: target_id.to_owned(),
                request_id: request_id.clone(),
                created_at: now_micros(),
            },
        )
        .await?;
        idempotency::record(&mut self.tx, &m.log_key(&request_id), response).await?;
        self.tx.commit().await?;
        for stale in &self.stale {
            self.cache.invalidate(stale);
        }
        Ok(())
    }

    /// Ends the transaction without changing anything (a replay or a refusal).
    pub async fn abandon(self) -> Result<(), GatewayError> {
        self.tx.rollback().await?;
        Ok(())
    }
}
