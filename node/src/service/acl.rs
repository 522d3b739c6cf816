//! Access control (contract section 12): who a request is, and what it may do.
//!
//! A request presents a bearer secret. The management secret (`GRIDNODE_ADMIN_TOKEN`,
//! `[acl] admin_token_file` or `<data-dir>/admin.token`) is this node's own and holds every
//! scope; every other token is an [`AclToken`] record, replicated like the registry, that holds
//! the SHA-256 of its secret, its scopes, an optional org and an expiry. A token made on one node
//! works on all of them; deleting it revokes it everywhere once the delete has replicated.
//!
//! Checking a secret costs one SHA-256 and one hash-map lookup: the tokens are kept in memory by
//! the hash of their secret, brought up to date from the store's change feed when the store has
//! moved (like the catalog), so a token made or deleted on this node counts at once. The map is
//! keyed by the digest, not the secret: timing a lookup tells an attacker only about digests of
//! secrets they chose, never about a stored secret; the digest found is then compared in constant
//! time all the same.
//!
//! Scopes: `read` (every GET, search, GraphQL), `write` (registry writes), `execute` (execute,
//! select, resolve, gRPC calls, MCP calls), `admin` (tokens, allow-lists, the audit log, and
//! everything else). A token bound to an org acts as that org: naming another is refused.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use gridnode_store::{AclToken, Collection, Store, now_ms};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// The id the management secret goes by (in audit entries and `whoami`).
pub const ADMIN_TOKEN_ID: &str = "admin";
/// Every secret starts with this.
pub const SECRET_PREFIX: &str = "gnt_";
/// Longest secret looked at, in bytes (a real one is 47).
const MAX_SECRET_LEN: usize = 256;
/// Changes read from the feed at once while catching up.
const BATCH: usize = 10_000;
/// Longest accepted `expires_in`: ten years.
const MAX_EXPIRES_IN_SECS: u64 = 10 * 365 * 24 * 3600;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
    Execute,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Execute, Scope::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Execute => "execute",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }

    fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.name() == name)
    }
}

/// Who a request is: the token it came with (none when access control is off), what that
/// token may do, and the org it is bound to.
#[derive(Debug, Clone)]
pub struct Principal {
    token: Option<Arc<str>>,
    scopes: u8,
    org: Option<Arc<str>>,
}

impl Principal {
    /// Anyone, when access control is off: every scope, no token, no org.
    pub fn open() -> Principal {
        Principal { token: None, scopes: u8::MAX, org: None }
    }

    /// An admitted member reading what members share (blobs), on its proof.
    pub fn member(node_id: &str) -> Principal {
        Principal {
            token: Some(format!("member:{node_id}").into()),
            scopes: Scope::Read.bit(),
            org: None,
        }
    }

    fn admin() -> Principal {
        Principal { token: Some(ADMIN_TOKEN_ID.into()), scopes: u8::MAX, org: None }
    }

    fn of(token: &AclToken) -> Principal {
        let scopes =
            token.scopes.iter().filter_map(|s| Scope::parse(s)).fold(0, |b, s| b | s.bit());
        let org = (!token.org.is_empty()).then(|| token.org.as_str().into());
        Principal { token: Some(token.token_id.as_str().into()), scopes, org }
    }

    /// The token's id; none when access control is off.
    pub fn token_id(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The org the token is bound to.
    pub fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// 403 unless the token holds `scope` (admin holds them all).
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("this token lacks the '{}' scope", scope.name())))
        }
    }

    /// The org a request acts as: a bound token's own (naming another org is 403), else the
    /// one the request names, if any.
    pub fn acting_org(&self, named: Option<String>) -> Result<Option<String>> {
        match (self.org(), named) {
            (Some(bound), Some(named)) if bound != named => Err(Error::Forbidden(format!(
                "this token is bound to org '{bound}' and cannot act for org '{}'",
                named.chars().take(64).collect::<String>()
            ))),
            (Some(bound), _) => Ok(Some(bound.to_owned())),
            (None, named) => Ok(named),
        }
    }

    fn scope_names(&self) -> Vec<&'static str> {
        Scope::ALL.into_iter().filter(|s| self.scopes & s.bit() != 0).map(Scope::name).collect()
    }
}

/// `POST /acl/tokens`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[serde(default)]
    pub description: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub org: Option<String>,
    /// Seconds, or a duration such as `"24h"` or `"30d"`.
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
}

/// A token as reads show it: never its secret or the secret's hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenView {
    pub token_id: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub org: Option<String>,
    /// RFC 3339; none when it never expires.
    pub expires_at: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

/// A token just made: the only answer that carries its secret.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub token: TokenView,
    pub secret: String,
}

/// `GET /acl/whoami`.
#[derive(Debug, Clone, Serialize)]
pub struct WhoAmI {
    pub access_control: bool,
    pub token_id: Option<String>,
    pub scopes: Vec<&'static str>,
    pub org: Option<String>,
}

/// How a node's access control is set up.
#[derive(Debug, Clone, Default)]
pub struct AclSettings {
    pub enabled: bool,
    /// The management secret; none only when access control is off.
    pub admin_secret: Option<String>,
    /// `/metrics` without a token.
    pub open_metrics: bool,
}

/// The service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Acl {
    store: Store,
    enabled: bool,
    open_metrics: bool,
    admin: Option<[u8; 32]>,
    state: Arc<RwLock<State>>,
}

/// The tokens at one feed position, by the digest of their secret.
#[derive(Debug, Default)]
struct State {
    loaded: bool,
    applied: u64,
    by_digest: HashMap<[u8; 32], AclToken>,
    digest_of: HashMap<String, [u8; 32]>,
}

impl Acl {
    pub fn new(store: Store, settings: AclSettings) -> Acl {
        Acl {
            store,
            enabled: settings.enabled,
            open_metrics: settings.open_metrics,
            admin: settings.admin_secret.as_deref().map(digest),
            state: Arc::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `/metrics` is served without a token.
    pub fn open_metrics(&self) -> bool {
        self.open_metrics || !self.enabled
    }

    /// Who presents `secret` (the bearer of a request, if it had one). With access control off
    /// everyone is [`Principal::open`]; else a missing, unknown or expired secret is 401.
    pub fn authenticate(&self, secret: Option<&str>) -> Result<Principal> {
        if !self.enabled {
            return Ok(Principal::open());
        }
        let secret = secret.filter(|s| s.len() <= MAX_SECRET_LEN).ok_or(Error::Unauthenticated)?;
        let presented = digest(secret);
        if let Some(admin) = &self.admin
            && bool::from(admin.ct_eq(&presented))
        {
            return Ok(Principal::admin());
        }
        let now = now_ms();
        self.read(|state| {
            let token = state.by_digest.get(&presented)?;
            let stored = state.digest_of.get(&token.token_id)?;
            let live = token.expires_at_ms == 0 || now < token.expires_at_ms;
            (bool::from(stored.ct_eq(&presented)) && live).then(|| Principal::of(token))
        })?
        .ok_or(Error::Unauthenticated)
    }

    /// `GET /acl/whoami`.
    pub fn whoami(&self, principal: &Principal) -> WhoAmI {
        WhoAmI {
            access_control: self.enabled,
            token_id: principal.token_id().map(str::to_owned),
            scopes: principal.scope_names(),
            org: principal.org().map(str::to_owned),
        }
    }

    /// Makes a token for `by` (an admin): its scopes, org and expiry from `new`. A token bound
    /// to an org can only make tokens bound to the same org.
    pub async fn create(&self, by: &Principal, new: NewToken) -> Result<Created> {
        let NewToken { description, scopes, org, expires_in } = new;
        let org = by.acting_org(org)?.unwrap_or_default();
        let expires_in = expires_in.map(|value| expires_in_secs(&value)).transpose()?;
        let mut unique: Vec<String> = Vec::new();
        for scope in scopes {
            if !unique.contains(&scope) {
                unique.push(scope);
            }
        }
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let secret = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let mut id = [0u8; 8];
        OsRng.fill_bytes(&mut id);
        let now = now_ms();
        let token = AclToken {
            token_id: format!("tok-{}", hex(&id)),
            secret_sha256: gridnode_store::sha256_hex(secret.as_bytes()),
            description,
            scopes: unique,
            org,
            expires_at_ms: expires_in.map_or(0, |secs| now + secs * 1000),
            created_at_ms: now,
            created_by: by.token_id().unwrap_or_default().to_owned(),
        };
        use gridnode_store::Record;
        token.validate()?;
        let view = view(&token);
        crate::service::blocking(&self.store, move |store| {
            store.create(&token)?;
            Ok(())
        })
        .await?;
        Ok(Created { token: view, secret })
    }

    /// Every token (`GET /acl/tokens`); a bound admin sees its org's only.
    pub async fn list(&self, by: &Principal) -> Result<Vec<TokenView>> {
        let org = by.org().map(str::to_owned);
        let mut tokens = crate::service::blocking(&self.store, move |store| {
            let mut out = Vec::new();
            for token in store.live::<AclToken>() {
                let token = token?;
                if org.as_deref().is_none_or(|org| org == token.org) {
                    out.push(view(&token));
                }
            }
            Ok(out)
        })
        .await?;
        tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.token_id.cmp(&b.token_id)));
        Ok(tokens)
    }

    /// One token (`GET /acl/tokens/{id}`).
    pub async fn get(&self, by: &Principal, id: String) -> Result<TokenView> {
        self.visible(by, id).await.map(|token| view(&token))
    }

    /// Revokes a token everywhere (`DELETE /acl/tokens/{id}`).
    pub async fn delete(&self, by: &Principal, id: String) -> Result<()> {
        if id == ADMIN_TOKEN_ID {
            return Err(Error::BadRequest(
                "the management token is not a record: change GRIDNODE_ADMIN_TOKEN or the \
                 admin token file and restart the node to rotate it"
                    .into(),
            ));
        }
        let token = self.visible(by, id).await?;
        crate::service::blocking(&self.store, move |store| {
            store.delete::<AclToken>(&token.token_id)?;
            Ok(())
        })
        .await
    }

    /// A token `by` may see: a bound admin sees its own org's only (404 for the rest).
    async fn visible(&self, by: &Principal, id: String) -> Result<AclToken> {
        gridnode_store::validate_id("token", &id)?;
        let token =
            crate::service::blocking(&self.store, move |store| Ok(store.get::<AclToken>(&id)?))
                .await?;
        match by.org() {
            Some(org) if org != token.org => {
                Err(Error::NotFound(format!("token '{}' not found", token.token_id)))
            }
            _ => Ok(token),
        }
    }

    /// Runs `read` over the tokens brought up to date with the store.
    fn read<T>(&self, read: impl FnOnce(&State) -> T) -> Result<T> {
        let last = self.store.last_seq();
        {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if state.loaded && state.applied >= last {
                return Ok(read(&state));
            }
        }
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !state.loaded {
            // The position first: changes committed during the scan are applied again after.
            state.applied = self.store.last_seq();
            for token in self.store.live::<AclToken>() {
                state.put(token?);
            }
            state.loaded = true;
        }
        loop {
            let changes = self.store.changes_since(state.applied, BATCH)?;
            let Some(last) = changes.last().map(|c| c.seq) else { break };
            for change in changes {
                if change.collection == Collection::AclTokens as u8 {
                    state.remove(&change.id);
                    if let Some(token) = self.store.try_get::<AclToken>(&change.id)? {
                        state.put(token);
                    }
                }
            }
            state.applied = last;
        }
        Ok(read(&state))
    }
}

impl State {
    fn put(&mut self, token: AclToken) {
        let Some(digest) = unhex(&token.secret_sha256) else { return };
        self.digest_of.insert(token.token_id.clone(), digest);
        self.by_digest.insert(digest, token);
    }

    fn remove(&mut self, id: &str) {
        if let Some(digest) = self.digest_of.remove(id) {
            self.by_digest.remove(&digest);
        }
    }
}

/// The bearer secret of an `Authorization` header value (`Bearer <secret>`, any case).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, secret) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim()).filter(|s| !s.is_empty())
}

/// Reads the management secret from `path`, or makes one there (mode 0600): `(secret, made)`.
pub fn admin_secret_file(path: &std::path::Path) -> Result<(String, bool)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let context = |what: &str| format!("{what} the admin token {}", path.display());
    if path.exists() {
        let secret =
            std::fs::read_to_string(path).map_err(|e| Error::io(context("cannot read"), e))?;
        let secret = secret.trim().to_owned();
        if secret.len() < 16 || secret.len() > MAX_SECRET_LEN {
            return Err(Error::Config(format!(
                "{} holds no usable secret (16 to {MAX_SECRET_LEN} characters); delete it to have \
                 a new one made",
                path.display()
            )));
        }
        return Ok((secret, false));
    }
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let secret = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let write = || -> std::io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
        writeln!(file, "{secret}")?;
        file.sync_all()
    };
    write().map_err(|e| Error::io(context("cannot write"), e))?;
    Ok((secret, true))
}

/// `expires_in`: whole seconds, or a duration text (`"90s"`, `"24h"`, `"30d"`).
fn expires_in_secs(value: &serde_json::Value) -> Result<u64> {
    let bad = || {
        Error::BadRequest(
            "expires_in must be whole seconds or a duration such as \"24h\" or \"30d\"".into(),
        )
    };
    let secs = match value {
        serde_json::Value::Number(n) => n.as_u64().ok_or_else(bad)?,
        serde_json::Value::String(text) => match text.strip_suffix('d') {
            Some(days) => days.parse::<u64>().map_err(|_| bad())?.saturating_mul(86_400),
            None => crate::config::parse_duration(text).map_err(|_| bad())?.as_secs(),
        },
        _ => return Err(bad()),
    };
    if secs == 0 || secs > MAX_EXPIRES_IN_SECS {
        return Err(Error::BadRequest(format!(
            "expires_in must be from 1 second to {} days",
            MAX_EXPIRES_IN_SECS / 86_400
        )));
    }
    Ok(secs)
}

fn view(token: &AclToken) -> TokenView {
    use crate::client::output::rfc3339;
    TokenView {
        token_id: token.token_id.clone(),
        description: token.description.clone(),
        scopes: token.scopes.clone(),
        org: (!token.org.is_empty()).then(|| token.org.clone()),
        expires_at: (token.expires_at_ms != 0).then(|| rfc3339(token.expires_at_ms)),
        created_at: rfc3339(token.created_at_ms),
        created_by: token.created_by.clone(),
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridnode_store::StoreConfig;

    fn acl(dir: &std::path::Path) -> Acl {
        let store = Store::open(&StoreConfig::new(dir.join("s"), "n1")).unwrap();
        let settings = AclSettings {
            enabled: true,
            admin_secret: Some("management-secret-1234".into()),
            open_metrics: false,
        };
        Acl::new(store, settings)
    }

    fn new(scopes: &[&str], org: Option<&str>) -> NewToken {
        NewToken {
            description: "t".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            org: org.map(str::to_owned),
            expires_in: None,
        }
    }

    #[tokio::test]
    async fn tokens_authenticate_by_secret_with_their_scopes_until_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let acl = acl(dir.path());
        assert!(matches!(acl.authenticate(None), Err(Error::Unauthenticated)));
        assert!(matches!(acl.authenticate(Some("gnt_nope")), Err(Error::Unauthenticated)));
        let admin = acl.authenticate(Some("management-secret-1234")).unwrap();
        assert_eq!(admin.token_id(), Some(ADMIN_TOKEN_ID));

        let made = acl.create(&admin, new(&["read", "execute"], Some("acme"))).await.unwrap();
        assert!(made.secret.starts_with(SECRET_PREFIX) && made.secret.len() == 47);
        let reader = acl.authenticate(Some(&made.secret)).unwrap();
        assert_eq!(reader.token_id(), Some(made.token.token_id.as_str()));
        assert!(reader.has(Scope::Read) && reader.has(Scope::Execute));
        assert!(!reader.has(Scope::Write) && !reader.has(Scope::Admin));
        let refused = reader.require(Scope::Write).unwrap_err().to_string();
        assert_eq!(refused, "this token lacks the 'write' scope");
        assert_eq!(reader.acting_org(None).unwrap().as_deref(), Some("acme"));
        assert!(matches!(reader.acting_org(Some("other".into())), Err(Error::Forbidden(_))));

        // A bound token's admin makes tokens of its own org only.
        let bound_admin = acl.create(&admin, new(&["admin"], Some("acme"))).await.unwrap();
        let bound = acl.authenticate(Some(&bound_admin.secret)).unwrap();
        assert!(acl.create(&bound, new(&["read"], Some("other"))).await.is_err());
        let listed = acl.list(&bound).await.unwrap();
        assert!(listed.iter().all(|t| t.org.as_deref() == Some("acme")), "{listed:?}");
        assert_eq!(acl.list(&admin).await.unwrap().len(), 2);

        acl.delete(&admin, made.token.token_id.clone()).await.unwrap();
        assert!(matches!(acl.authenticate(Some(&made.secret)), Err(Error::Unauthenticated)));
        assert!(acl.delete(&admin, ADMIN_TOKEN_ID.into()).await.is_err());
        assert!(acl.create(&admin, new(&["root"], None)).await.is_err());
        assert!(acl.create(&admin, new(&[], None)).await.is_err());
    }

    #[tokio::test]
    async fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let acl = acl(dir.path());
        let admin = acl.authenticate(Some("management-secret-1234")).unwrap();
        let made = acl.create(&admin, new(&["read"], None)).await.unwrap();
        let mut token = acl.store.get::<AclToken>(&made.token.token_id).unwrap();
        token.expires_at_ms = now_ms() - 1;
        acl.store.put(&token).unwrap();
        assert!(matches!(acl.authenticate(Some(&made.secret)), Err(Error::Unauthenticated)));
        for bad in [serde_json::json!(0), serde_json::json!("soon"), serde_json::json!(-1)] {
            assert!(expires_in_secs(&bad).is_err(), "{bad}");
        }
        assert_eq!(expires_in_secs(&serde_json::json!("2d")).unwrap(), 172_800);
        assert_eq!(expires_in_secs(&serde_json::json!("90s")).unwrap(), 90);
    }

    #[test]
    fn off_means_open_and_bearer_headers_parse() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::new(dir.path().join("s"), "n1")).unwrap();
        let acl = Acl::new(store, AclSettings::default());
        assert!(acl.authenticate(None).unwrap().has(Scope::Admin));
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
