//! Jobs a worker cannot read are answered, not dropped.
//!
//! A job message that is too large, carries a `Vigil-Schema` this worker
//! does not read (see [`headers::check_schema`]), names an endpoint kind it
//! does not know, or does not decode at all would otherwise be terminated in
//! silence while its run waits for its items forever. Instead the worker
//! names what it can and publishes a [`JobResult`] before it terminates the
//! message:
//!
//! 1. the job's envelope ([`JobOutline`]: run, job index, item indexes and
//!    ids), which no schema version changes, gives one failed item per item;
//! 2. when not even that decodes, the dedup id `Nats-Msg-Id = <run_id>/<job_index>`
//!    names the job, and the result carries a job-level `error` that the
//!    coordinator applies to every item of that job;
//! 3. a message that names no run at all is only terminated and counted.

use async_nats::HeaderMap;
use vigil_protocol::headers::{self, SchemaError};
use vigil_protocol::{
    ErrorKind, ItemError, ItemResult, Job, JobOutline, JobResult, SCHEMA_VERSION,
};

/// Why a job message cannot be evaluated: the error its items get.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// `oversized`, `unsupported_schema`, `unknown_kind` or `malformed`.
    pub kind: ErrorKind,
    /// What is wrong, for logs and item errors.
    pub reason: String,
}

impl Unreadable {
    fn new(kind: ErrorKind, reason: impl Into<String>) -> Self {
        Unreadable {
            kind,
            reason: reason.into(),
        }
    }
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str())
}

/// Decodes a job message, or says why this worker cannot evaluate it.
pub fn decode_job(
    headers: Option<&HeaderMap>,
    payload: &[u8],
    max_job_bytes: usize,
) -> Result<Job, Unreadable> {
    if payload.len() > max_job_bytes {
        return Err(Unreadable::new(
            ErrorKind::Oversized,
            format!("payload of {} bytes exceeds {max_job_bytes}", payload.len()),
        ));
    }
    let schema = header(headers, headers::SCHEMA);
    let schema_min = header(headers, headers::SCHEMA_MIN);
    match headers::check_schema(schema, schema_min, SCHEMA_VERSION) {
        Ok(()) => {}
        Err(e @ SchemaError::TooNew { .. }) => {
            return Err(Unreadable::new(ErrorKind::UnsupportedSchema, e.to_string()));
        }
        Err(e @ SchemaError::Unreadable(_)) => {
            return Err(Unreadable::new(ErrorKind::Malformed, e.to_string()));
        }
    }
    let job = match Job::decode(payload) {
        Ok(job) => job,
        Err(e) => {
            let unknown_kind = JobOutline::decode(payload).filter(|o| !o.knows_kind());
            return Err(match unknown_kind {
                Some(outline) => Unreadable::new(
                    ErrorKind::UnknownKind,
                    format!(
                        "endpoint kind `{}` is not known to this worker (it knows chat, completions, local)",
                        outline.target.kind
                    ),
                ),
                None => Unreadable::new(ErrorKind::Malformed, e.to_string()),
            });
        }
    };
    if job.run_id.is_empty() {
        return Err(Unreadable::new(ErrorKind::Malformed, "job has no run_id"));
    }
    Ok(job)
}

/// The result that answers an unreadable job: each item the payload names
/// fails with the reason; when it names none, the result fails the job as a
/// whole (`error`). `None` when neither the payload nor `Nats-Msg-Id` names
/// the run.
pub fn answer(
    headers: Option<&HeaderMap>,
    payload: &[u8],
    unreadable: &Unreadable,
    worker_id: &str,
    delivery: u64,
) -> Option<JobResult> {
    let error = ItemError {
        kind: unreadable.kind.clone(),
        message: unreadable.reason.clone(),
    };
    let outline = JobOutline::decode(payload).filter(|o| !o.run_id.is_empty());
    let (run_id, job_index, items) = match outline {
        Some(o) if !o.items.is_empty() => (o.run_id, o.job_index, o.items),
        // The dedup id is the header every job carries, even one whose
        // payload is not MessagePack at all.
        _ => {
            let (run_id, job_index) = headers::parse_job_msg_id(header(headers, headers::MSG_ID)?)?;
            (run_id.to_string(), job_index, Vec::new())
        }
    };
    let job_error = items.is_empty().then(|| error.clone());
    let items = items
        .into_iter()
        .map(|item| ItemResult {
            index: item.index,
            id: item.id,
            error: Some(error.clone()),
            ..Default::default()
        })
        .collect();
    Some(JobResult {
        run_id,
        job_index,
        worker_id: worker_id.to_string(),
        delivery,
        items,
        error: job_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{Item, encode};

    fn headers(schema: Option<&str>, min: Option<&str>, msg_id: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(s) = schema {
            h.insert(headers::SCHEMA, s);
        }
        if let Some(m) = min {
            h.insert(headers::SCHEMA_MIN, m);
        }
        if let Some(id) = msg_id {
            h.insert(headers::MSG_ID, id);
        }
        h
    }

    fn job() -> Job {
        Job {
            run_id: "run-1".into(),
            job_index: 4,
            items: (10..13)
                .map(|i| Item {
                    index: i,
                    id: format!("q{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_newer_additive_schema_is_read_and_a_newer_breaking_one_names_its_items() {
        let payload = encode(&job()).unwrap();
        let next = (SCHEMA_VERSION + 1).to_string();
        let additive = headers(Some(&next), Some("1"), None);
        assert!(decode_job(Some(&additive), &payload, 1 << 20).is_ok());
        let breaking = headers(Some(&next), Some(&next), None);
        let e = decode_job(Some(&breaking), &payload, 1 << 20).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnsupportedSchema);
        let r = answer(Some(&breaking), &payload, &e, "w", 1).unwrap();
        assert_eq!(
            (r.run_id.as_str(), r.job_index, r.error),
            ("run-1", 4, None)
        );
        let named: Vec<_> = r.items.iter().map(|i| (i.index, i.id.as_str())).collect();
        assert_eq!(named, [(10, "q10"), (11, "q11"), (12, "q12")]);
        assert!(
            r.items
                .iter()
                .all(|i| i.error.as_ref().unwrap().kind == ErrorKind::UnsupportedSchema)
        );
    }

    #[test]
    fn garbage_with_a_dedup_id_fails_the_job_as_a_whole() {
        let h = headers(Some("1"), None, Some("run-2/9"));
        let e = decode_job(Some(&h), b"\xc1 not msgpack", 1 << 20).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        let r = answer(Some(&h), b"\xc1 not msgpack", &e, "w", 3).unwrap();
        assert_eq!(
            (r.run_id.as_str(), r.job_index, r.delivery),
            ("run-2", 9, 3)
        );
        assert!(r.items.is_empty());
        assert_eq!(r.error.unwrap().kind, ErrorKind::Malformed);
        let anonymous = headers(Some("1"), None, None);
        assert!(answer(Some(&anonymous), b"\xc1", &e, "w", 1).is_none());
    }

    #[test]
    fn an_unknown_endpoint_kind_is_named_as_such() {
        let mut value = serde_json::to_value(job()).unwrap();
        value["target"]["kind"] = "grpc".into();
        let payload = encode(&value).unwrap();
        let h = headers(Some("1"), None, None);
        let e = decode_job(Some(&h), &payload, 1 << 20).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownKind);
        assert!(e.reason.contains("`grpc`"), "{}", e.reason);
        assert_eq!(
            answer(Some(&h), &payload, &e, "w", 1).unwrap().items.len(),
            3
        );
    }

    #[test]
    fn oversized_and_headerless_jobs_are_named() {
        let payload = encode(&job()).unwrap();
        let h = headers(Some("1"), None, None);
        let e = decode_job(Some(&h), &payload, 8).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Oversized);
        assert!(e.reason.contains("exceeds 8"), "{}", e.reason);
        let e = decode_job(None, &payload, 1 << 20).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert_eq!(answer(None, &payload, &e, "w", 1).unwrap().items.len(), 3);
    }
}
