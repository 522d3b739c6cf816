//! A running node: opens the store, binds the listeners, serves, and shuts down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gridnode_search::{Follower, SearchIndex};
use gridnode_store::{Store, StoreConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::http::{self, AppState};
use crate::service::{Registry, Settings};

/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A started node. Drop it only after [`Node::shutdown`], or the store is not flushed.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    http_addr: SocketAddr,
    registry: Registry,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    follower: Follower,
}

impl Node {
    /// Starts a node. The config is validated first (see [`NodeConfig::validate`]).
    pub async fn start(config: NodeConfig) -> Result<Node> {
        let config = config.validate()?;
        let store_config = StoreConfig {
            path: Some(config.store_dir()),
            cache_capacity: config.store.cache_mb * 1024 * 1024,
            node_id: config.node_id.clone(),
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::io(format!("cannot create data dir {}", config.data_dir.display()), e)
        })?;
        let index_dir = config.index_dir();
        // Opening the index catches it up with the store (or rebuilds it) before we serve.
        let (store, search) = tokio::task::spawn_blocking(move || -> Result<_> {
            let store = Store::open(&store_config)?;
            let search = SearchIndex::open(&index_dir, store.clone())?;
            Ok((store, Arc::new(search)))
        })
        .await
        .map_err(|e| Error::Internal(format!("store open task failed: {e}")))??;
        let follower = gridnode_search::follow(search.clone(), store.subscribe());

        let listener = tokio::net::TcpListener::bind(config.http)
            .await
            .map_err(|e| Error::io(format!("cannot listen for http on {}", config.http), e))?;
        let http_addr = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the http listener's address", e))?;
        let advertise_http = if config.advertise_http.is_empty() {
            format!("http://{http_addr}")
        } else {
            config.advertise_http.clone()
        };
        let registry = Registry::new(
            store,
            search,
            Settings { advertise_http, limits: config.limits.clone() },
        );
        let ready = Arc::new(AtomicBool::new(false));
        let app = http::router(AppState::new(registry.clone(), ready.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        ready.store(true, Ordering::Release);
        tracing::info!(node_id = %config.node_id, %http_addr, "node started");
        Ok(Node { config, http_addr, registry, stop, server, follower })
    }

    /// The bound REST address (the real port when 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The service layer, for in-process callers and tests.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Stops accepting requests, lets in-flight ones finish (for at most [`SHUTDOWN_GRACE`]),
    /// then makes every write durable, whatever happened to the server.
    pub async fn shutdown(mut self) -> Result<()> {
        let _ = self.stop.send(());
        let served = match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.server).await {
            Ok(Ok(result)) => result.map_err(|e| Error::io("http server failed", e)),
            Ok(Err(e)) => Err(Error::Internal(format!("http server task failed: {e}"))),
            Err(_) => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still running at shutdown; dropping them");
                self.server.abort();
                Ok(())
            }
        };
        // Stop indexing after the batch in hand, then release the index writer and its lock, so
        // the next start (in this process too) can take it. A restart catches up from the feed.
        self.follower.stop().await;
        let registry = self.registry;
        tokio::task::spawn_blocking(move || {
            registry.search_index().close();
            registry.store().sync()
        })
        .await
        .map_err(|e| Error::Internal(format!("flush task failed: {e}")))??;
        tracing::info!("node stopped; store flushed");
        served
    }
}
