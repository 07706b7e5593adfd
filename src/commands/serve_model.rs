//! `vigil serve-model`: argument handling around [`vigil_local::serve`].

use crate::cli::ServeModelArgs;
use crate::exit::{CommandResult, Exit, ExitContext};
use anyhow::anyhow;
use tokio_util::sync::CancellationToken;
use vigil_local::serve::{ModelServer, ServeConfig, ServeError};

pub async fn run(args: ServeModelArgs) -> CommandResult {
    if !args.model.is_file() {
        return Err(anyhow!(
            "--model {}: no such file (scripts/setup.sh downloads SmolLM2-135M-Instruct into $VIGIL_HOME/models)",
            args.model.display()
        ))
        .input_error();
    }
    let config = ServeConfig {
        model: args.model,
        host: args.host,
        port: args.port,
        concurrency: args
            .concurrency
            .unwrap_or_else(vigil_local::default_concurrency),
    };
    let server = match ModelServer::bind(&config).await {
        Ok(server) => server,
        Err(e @ ServeError::Model(_)) => return Err(e).input_error(),
        Err(e @ ServeError::Io(_)) => return Err(e).infra_error(),
    };
    let shutdown = CancellationToken::new();
    crate::signals::cancel_on_signal(shutdown.clone());
    errln!(
        "serving {} on http://{}/v1",
        server.model_name(),
        server.local_addr().infra_error()?
    );
    server
        .serve(async move { shutdown.cancelled().await })
        .await
        .infra_error()?;
    Ok(Exit::Ok)
}
