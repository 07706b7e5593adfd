//! `embedding_similarity`: the cosine similarity of the output's and the
//! reference's embeddings from an OpenAI-compatible `POST {base_url}/embeddings`
//! (vLLM, TEI, Ollama, llama.cpp and OpenAI all serve it).
//!
//! The value is the cosine clamped into [0, 1] (opposite directions score 0);
//! an item passes at the threshold (default 0.8). Each text's embedding is
//! cached under the embedder's URL, model and the text when the job's cache
//! policy allows, so a reference is embedded once across runs; misses go in
//! one request. The call gets its own model-call span (operation
//! `embeddings`) under the scorer's span.

use super::io_env::IoEnv;
use super::{Common, IoScorer, ScoreInput, ScoreOutcome, ScorerError};
use crate::backend::{CallFailure, Completion, Failed, excerpt};
use crate::telemetry;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::Instrument;
use tracing::field::Empty;
use vigil_protocol::scorers::io::EmbeddingParams;
use vigil_protocol::{ErrorKind, ScorerSpec, TargetSpec, TokenUsage};

/// The pass mark when the suite sets none.
pub const DEFAULT_THRESHOLD: f64 = 0.8;

/// The cosine similarity of two vectors, or why there is none.
///
/// ```
/// use vigil_worker::scorers::embedding::cosine;
/// assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]).unwrap() - 1.0).abs() < 1e-12);
/// assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).unwrap().abs() < 1e-12);
/// assert!(cosine(&[1.0], &[1.0, 2.0]).is_err());
/// ```
pub fn cosine(a: &[f64], b: &[f64]) -> Result<f64, String> {
    if a.len() != b.len() {
        return Err(format!(
            "embeddings differ in length ({} and {})",
            a.len(),
            b.len()
        ));
    }
    if a.is_empty() {
        return Err("empty embeddings".into());
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 || !dot.is_finite() {
        return Err("a zero or non-finite embedding".into());
    }
    Ok(dot / (na * nb))
}

/// The vectors of an embeddings response body, in `index` order, or the
/// kind of what is wrong with it. The body is untrusted: any bytes give
/// vectors or an error kind, never a panic (a fuzz target checks).
///
/// ```
/// use vigil_worker::scorers::embedding::decode_embeddings;
/// let body = br#"{"data": [{"index": 1, "embedding": [0, 1]}, {"index": 0, "embedding": [1, 0]}]}"#;
/// assert_eq!(decode_embeddings(body, 2).unwrap(), vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
/// assert!(decode_embeddings(b"{}", 2).is_err());
/// ```
pub fn decode_embeddings(body: &[u8], expected: usize) -> Result<Vec<Vec<f64>>, ErrorKind> {
    parse_embeddings(body, expected).map_err(|f| f.kind)
}

/// Reads the `data[i].embedding` arrays of an embeddings response, in
/// `index` order (servers may answer out of order).
fn parse_embeddings(body: &[u8], expected: usize) -> Result<Vec<Vec<f64>>, Failed> {
    let invalid = |what: &str| {
        Failed::new(ErrorKind::InvalidResponse, what.to_string()).excerpt(excerpt(body))
    };
    let value: Value =
        serde_json::from_slice(body).map_err(|_| invalid("invalid JSON in response"))?;
    let data = value
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("no `data` array in the embeddings response"))?;
    let mut out: Vec<Option<Vec<f64>>> = vec![None; expected];
    for (position, entry) in data.iter().enumerate() {
        let index = entry
            .get("index")
            .and_then(Value::as_u64)
            .map_or(position, |i| i as usize);
        let vector: Option<Vec<f64>> = entry
            .get("embedding")
            .and_then(Value::as_array)
            .and_then(|v| v.iter().map(Value::as_f64).collect());
        match (out.get_mut(index), vector) {
            (Some(slot), Some(v)) => *slot = Some(v),
            _ => return Err(invalid("an embedding is not an array of numbers")),
        }
    }
    out.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
        Failed::new(
            ErrorKind::EmptyResponse,
            format!("expected {expected} embeddings"),
        )
    })
}

/// The cache key of one text's embedding.
fn cache_key(target: &TargetSpec, text: &str) -> String {
    let doc = json!({
        "v": 1,
        "op": "embeddings",
        "base_url": target.base_url.trim_end_matches('/'),
        "model": target.model,
        "input": text,
    });
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

/// The `embedding_similarity` scorer of one job.
pub struct EmbeddingSimilarity {
    common: Common,
    target: TargetSpec,
    env: IoEnv,
    api_key: Option<String>,
}

/// Builds an `embedding_similarity` scorer; the embedder must be in the
/// worker's allow list.
pub fn build(
    spec: &ScorerSpec,
    params: &EmbeddingParams,
    env: &IoEnv,
) -> Result<EmbeddingSimilarity, ScorerError> {
    let target = &params.embedder;
    if target.base_url.is_empty() || target.model.is_empty() {
        return Err(ScorerError::InvalidParams {
            scorer: spec.name.clone(),
            message: "the embedder needs a base_url and a model".into(),
        });
    }
    let Some(api_key) = env.api_key(&target.base_url) else {
        return Err(ScorerError::NotAllowed {
            scorer: spec.name.clone(),
            message: format!(
                "embedding backend {url} is not in this worker's allow list (start the worker with --allow {url})",
                url = target.base_url
            ),
        });
    };
    Ok(EmbeddingSimilarity {
        common: Common {
            name: spec.name.clone(),
            threshold: Some(spec.threshold.unwrap_or(DEFAULT_THRESHOLD)),
        },
        target: target.clone(),
        env: env.clone(),
        api_key,
    })
}

impl EmbeddingSimilarity {
    fn fail(&self, reason: impl Into<String>) -> ScoreOutcome {
        Err(self.common.failed(reason))
    }

    /// The embeddings of `texts`, from the cache where allowed, the rest in one request.
    async fn embed(
        &self,
        texts: [&str; 2],
        input: &ScoreInput<'_>,
    ) -> Result<Vec<Vec<f64>>, CallFailure> {
        let policy = input.job.cache.as_ref().filter(|p| p.enabled);
        let cache = self.env.cache().filter(|_| policy.is_some());
        let ttl = policy.and_then(|p| p.ttl_s);
        let mut found: Vec<Option<Vec<f64>>> = vec![None; texts.len()];
        if let Some(cache) = cache {
            for (slot, text) in found.iter_mut().zip(texts) {
                if let Some(hit) = cache.get(&cache_key(&self.target, text), ttl).await {
                    *slot = serde_json::from_str(&hit.text).ok();
                }
            }
        }
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| found[i].is_none()).collect();
        let span = embeddings_span(&self.target, input);
        if missing.is_empty() {
            self.env.count_hit();
            span.record("vigil.cached", true);
        } else {
            let body = json!({
                "model": self.target.model,
                "input": missing.iter().map(|&i| texts[i]).collect::<Vec<_>>(),
            });
            let limit = self.env.limit(&self.target);
            self.env.count_call();
            let n = missing.len();
            let answered = self
                .env
                .backend()
                .post(
                    &self.target,
                    self.api_key.as_deref(),
                    "embeddings",
                    &body,
                    &*limit,
                    &telemetry::http_headers(&span),
                    |bytes| parse_embeddings(bytes, n),
                )
                .instrument(span.clone())
                .await;
            let answered = match answered {
                Ok(a) => a,
                Err(failure) => {
                    telemetry::record_failure(&span, &failure);
                    return Err(failure);
                }
            };
            span.record("vigil.attempts", answered.attempts);
            for (&i, vector) in missing.iter().zip(answered.value) {
                if let Some(cache) = cache {
                    let entry = Completion {
                        text: serde_json::to_string(&vector).unwrap_or_default(),
                        usage: TokenUsage::default(),
                        finish_reason: None,
                        model: Some(self.target.model.clone()),
                        latency_ms: answered.latency_ms,
                        attempts: answered.attempts,
                    };
                    cache.put(&cache_key(&self.target, texts[i]), &entry).await;
                }
                found[i] = Some(vector);
            }
        }
        Ok(found.into_iter().map(Option::unwrap_or_default).collect())
    }
}

/// The span of one embeddings call under the current (scorer's) span.
fn embeddings_span(target: &TargetSpec, input: &ScoreInput<'_>) -> tracing::Span {
    if !telemetry::enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "gen_ai.call",
        otel.name = format!("embeddings {}", target.model),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = "embeddings",
        gen_ai.request.model = %target.model,
        error.type = Empty,
        vigil.call = "embeddings",
        vigil.cached = Empty,
        vigil.item.id = %input.item.id,
        vigil.item.index = input.item.index,
        vigil.attempts = Empty,
    )
}

impl IoScorer for EmbeddingSimilarity {
    fn name(&self) -> &str {
        &self.common.name
    }

    fn score<'a>(&'a self, input: ScoreInput<'a>) -> BoxFuture<'a, ScoreOutcome> {
        Box::pin(async move {
            let Some(reference) = input.reference else {
                return Ok(self.common.no_reference());
            };
            let vectors = match self.embed([input.output, reference], &input).await {
                Ok(v) => v,
                Err(failure) => return self.fail(format!("embedding call failed: {failure}")),
            };
            match cosine(&vectors[0], &vectors[1]) {
                Ok(cos) => Ok(self.common.verdict(cos, format!("cosine {cos:.4}"))),
                Err(e) => self.fail(format!("no similarity: {e}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_read_in_index_order() {
        let body = br#"{"data":[{"index":1,"embedding":[0,1]},{"index":0,"embedding":[1,0]}]}"#;
        let v = parse_embeddings(body, 2).ok().unwrap();
        assert_eq!(v, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }

    #[test]
    fn bad_embedding_responses_are_errors() {
        let kind = |body: &[u8], n| parse_embeddings(body, n).err().map(|f| f.kind);
        assert_eq!(kind(b"nope", 1), Some(ErrorKind::InvalidResponse));
        assert_eq!(
            kind(br#"{"data":[{"embedding":"x"}]}"#, 1),
            Some(ErrorKind::InvalidResponse)
        );
        assert_eq!(kind(br#"{"data":[]}"#, 1), Some(ErrorKind::EmptyResponse));
        assert_eq!(
            kind(br#"{"data":[{"index":5,"embedding":[1]}]}"#, 1),
            Some(ErrorKind::InvalidResponse)
        );
    }

    #[test]
    fn the_key_names_model_and_text() {
        let t = TargetSpec {
            base_url: "http://h/v1".into(),
            model: "e".into(),
            ..Default::default()
        };
        let mut other = t.clone();
        other.model = "e2".into();
        assert_ne!(cache_key(&t, "x"), cache_key(&other, "x"));
        assert_ne!(cache_key(&t, "x"), cache_key(&t, "y"));
    }
}
