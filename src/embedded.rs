//! The embedded mode: without `--nats`, `vigil run` starts a private
//! nats-server (≥ 2.10) on a free port with its store under the state
//! directory (`.vigil/nats`), so run history survives between runs. If another
//! embedded run holds that store, this one uses a temporary store beside it.

use anyhow::Context;
use std::fs::File;
use std::path::{Path, PathBuf};
use vigil_testkit::nats_server::{NatsServer, NatsServerConfig};

/// A running private server and what keeps its store ours.
pub struct EmbeddedNats {
    /// The server.
    pub server: NatsServer,
    _lock: Option<File>,
    _temp: Option<tempfile::TempDir>,
}

impl EmbeddedNats {
    /// Starts the server.
    pub async fn start(state_dir: &Path) -> anyhow::Result<EmbeddedNats> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))?;
        let lock_path = state_dir.join("nats.lock");
        let lock = File::create(&lock_path)
            .with_context(|| format!("cannot create {}", lock_path.display()))?;
        let (store, lock, temp): (PathBuf, _, _) = match lock.try_lock() {
            Ok(()) => (state_dir.join("nats"), Some(lock), None),
            Err(_) => {
                let temp = tempfile::Builder::new()
                    .prefix("nats-")
                    .tempdir_in(state_dir)?;
                tracing::warn!(store = %temp.path().display(), "another embedded run holds the store; using a temporary one");
                (temp.path().to_path_buf(), None, Some(temp))
            }
        };
        let server = NatsServer::start(NatsServerConfig { store_dir: Some(store), ..Default::default() })
            .await
            .context("cannot start the embedded nats-server (set VIGIL_NATS_SERVER, run scripts/setup.sh, or pass --nats URL)")?;
        Ok(EmbeddedNats {
            server,
            _lock: lock,
            _temp: temp,
        })
    }
}
