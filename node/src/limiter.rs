//! How many requests a door serves at once (contract section 14): a bound for the whole door
//! and one per client address, so that one client (or a crowd) cannot take every worker. A
//! request over either bound is refused at once — 503 with `Retry-After` over REST,
//! `Unavailable` over gRPC — never queued without end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests in flight per client address.
type Clients = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The bounds of one door. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Limiter {
    all: Arc<Semaphore>,
    per_client: usize,
    clients: Clients,
}

/// A request being served; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    _all: OwnedSemaphorePermit,
    client: Option<(IpAddr, Clients)>,
}

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The door serves as many requests as it may.
    Door,
    /// This client has as many requests in flight as one client may.
    Client,
}

impl Full {
    pub fn message(self) -> &'static str {
        match self {
            Full::Door => "the node is serving as many requests as it may: retry shortly",
            Full::Client => {
                "this client has as many requests in flight as one client may: retry shortly"
            }
        }
    }
}

impl Limiter {
    pub fn new(max_concurrent: usize, max_per_client: usize) -> Limiter {
        Limiter {
            all: Arc::new(Semaphore::new(max_concurrent)),
            per_client: max_per_client,
            clients: Arc::default(),
        }
    }

    /// A place for one request from `client` (none known: the door's bound only).
    pub fn enter(&self, client: Option<IpAddr>) -> Result<Permit, Full> {
        let all = self.all.clone().try_acquire_owned().map_err(|_| Full::Door)?;
        let Some(ip) = client else { return Ok(Permit { _all: all, client: None }) };
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let count = clients.entry(ip).or_insert(0);
        if *count >= self.per_client {
            return Err(Full::Client);
        }
        *count += 1;
        Ok(Permit { _all: all, client: Some((ip, self.clients.clone())) })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((ip, clients)) = self.client.take() {
            let mut clients = clients.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = clients.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    clients.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_door_and_each_client_are_bounded_and_places_come_back() {
        let limiter = Limiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limiter.enter(Some(a)).unwrap();
        let _second = limiter.enter(Some(a)).unwrap();
        assert_eq!(limiter.enter(Some(a)).unwrap_err(), Full::Client);
        let _third = limiter.enter(Some(b)).unwrap();
        assert_eq!(limiter.enter(Some(b)).unwrap_err(), Full::Door);
        drop(first);
        assert!(limiter.enter(Some(a)).is_ok(), "a place came back");
        assert!(limiter.clients.lock().unwrap().len() <= 2);
    }
}
