//! Short-lived copies of the directory facts that authenticate a call, so that a proxied
//! call whose credential was seen recently reads no database (docs/design.md, Identity).
//!
//! Every entry lives at most the configured freshness (`auth.cache_ttl_ms`). The gateway's
//! own directory writes drop the entries they change right after commit ([`Stale`], applied
//! by [`super::Tx::finish`] and the `ensure_*` helpers); other gateway replicas see a
//! change once their copy expires.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;

use super::{ApiKeyRecord, SettingsRecord, UserRecord};
use crate::error::GatewayError;

/// How long the facts that authenticate a call are kept unless `auth.cache_ttl_ms` says
/// otherwise.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries each cache holds at most unless `auth.cache_capacity` says otherwise.
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;

/// What a call's identity needs of its tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantFacts {
    /// The tenant's ancestors, parent first.
    pub ancestry: Vec<String>,
    /// The tenant's settings, defaults filled in.
    pub settings: SettingsRecord,
}

/// An entry a committed write made stale.
#[derive(Clone, Debug)]
pub(crate) enum Stale {
    /// A user, by id.
    User(String),
    /// An API key, by the SHA-256 of its secret (lowercase hex, as stored).
    ApiKey(String),
    /// Every API key (a seeded key may have changed its secret).
    AllApiKeys,
    /// A tenant's ancestry and settings, by tenant id.
    Tenant(String),
    /// Every tenant (a seeded tenant may have moved, changing its descendants' ancestry).
    AllTenants,
}

/// The directory's caches; shared by every clone of a [`super::Directory`].
#[derive(Debug)]
pub(crate) struct DirectoryCache {
    /// Users by id: the `active` flag, roles and display name of a bearer token's subject.
    /// Dropped by `update_user` (and `insert_user`, `ensure_user`).
    pub users: Fresh<String, Arc<UserRecord>>,
    /// API keys by the SHA-256 of their secret, never the secret: found only when a secret
    /// matched, revoked or not. Dropped by `revoke_api_key` (and `insert_api_key`;
    /// `ensure_api_key` drops them all).
    pub api_keys: Fresh<String, Arc<ApiKeyRecord>>,
    /// Tenant ancestry and settings by tenant id. Dropped by `put_settings` and
    /// `insert_tenant` (`ensure_tenant` drops them all).
    pub tenants: Fresh<String, Arc<TenantFacts>>,
}

impl DirectoryCache {
    /// Caches keeping entries for `ttl` (none when zero), each holding at most `capacity`.
    pub fn new(ttl: Duration, capacity: u64) -> DirectoryCache {
        DirectoryCache {
            users: Fresh::new(ttl, capacity),
            api_keys: Fresh::new(ttl, capacity),
            tenants: Fresh::new(ttl, capacity),
        }
    }

    /// Drops what `stale` names.
    pub fn invalidate(&self, stale: &Stale) {
        match stale {
            Stale::User(id) => self.users.invalidate(id),
            Stale::ApiKey(hash) => self.api_keys.invalidate(hash),
            Stale::AllApiKeys => self.api_keys.invalidate_all(),
            Stale::Tenant(id) => self.tenants.invalidate(id),
            Stale::AllTenants => self.tenants.invalidate_all(),
        }
    }
}

/// A bounded moka cache with a time to live, or nothing when the TTL is zero.
pub(crate) fn bounded<K, V>(ttl: Duration, capacity: u64) -> Option<Cache<K, V>>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    (!ttl.is_zero()).then(|| {
        Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .build()
    })
}

/// A cache that never keeps a value loaded before an invalidation that raced the load:
/// a load that overlaps an invalidation of the same cache is answered but not kept.
pub(crate) struct Fresh<K, V> {
    cache: Option<Cache<K, V>>,
    /// Moves on every invalidation.
    generation: AtomicU64,
}

impl<K, V> std::fmt::Debug for Fresh<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the entries: they are credentials' facts.
        f.debug_struct("Fresh")
            .field("enabled", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl<K, V> Fresh<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn new(ttl: Duration, capacity: u64) -> Fresh<K, V> {
        Fresh {
            cache: bounded(ttl, capacity),
            generation: AtomicU64::new(0),
        }
    }

    /// The value for `key`, from the cache or else from `load` (which reads the database);
    /// a loaded `Some` is kept.
    pub async fn get_or_load<Fut>(
        &self,
        key: K,
        load: impl FnOnce() -> Fut,
    ) -> Result<Option<V>, GatewayError>
    where
        Fut: Future<Output = Result<Option<V>, GatewayError>>,
    {
        let Some(cache) = &self.cache else {
            return load().await;
        };
        if let Some(value) = cache.get(&key) {
            return Ok(Some(value));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let loaded = load().await?;
        if let Some(value) = &loaded {
            cache.insert(key.clone(), value.clone());
            // An invalidation since the load began may have come before the insert: then
            // the value may predate the write, so it must not stay.
            if self.generation.load(Ordering::SeqCst) != generation {
                cache.invalidate(&key);
            }
        }
        Ok(loaded)
    }

    fn invalidate(&self, key: &K) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(cache) = &self.cache {
            cache.invalidate(key);
        }
    }

    fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }
}
