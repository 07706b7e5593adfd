//! The Kubernetes manifests, checked offline: each kustomize overlay renders
//! (`kubectl kustomize`), every rendered built-in object validates against
//! the Kubernetes OpenAPI schemas (`kubernetes-validate --strict`), and the
//! fields vigil's operation depends on are what DESIGN §8 says.
//!
//! Tools: `kubectl` on PATH; `kubernetes-validate` from `$VIGIL_HOME/bin`
//! (default `$HOME/.vigil/bin`), `./.vigil/bin` or PATH (scripts/setup-extra.d/k8s-tools.sh installs it).
//! Without one, the tests that need it fail saying what is missing and how to
//! install it: a manifest check never passes because its tool is absent.

use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const OVERLAYS: [&str; 2] = ["dev", "prod"];
/// Oldest and newest Kubernetes versions the manifests must validate against
/// (CronJob.timeZone is stable since 1.27; 1.29's podFailurePolicy schema is stricter).
const KUBE_VERSIONS: [&str; 2] = ["1.29", "1.37"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn kubectl() -> PathBuf {
    on_path("kubectl").unwrap_or_else(|| {
        panic!(
            "kubectl is not on PATH, so the kustomize overlays cannot be rendered: install it \
             (Debian package kubernetes-client, or see scripts/setup-extra.d/k8s-tools.sh)"
        )
    })
}

fn kubernetes_validate() -> PathBuf {
    let mut candidates = Vec::new();
    // $VIGIL_HOME, else $HOME/.vigil: where scripts/setup.sh installs tools.
    if let Some(home) = vigil_testkit::nats_server::vigil_home() {
        candidates.push(home.join("bin/kubernetes-validate"));
    }
    candidates.push(root().join(".vigil/bin/kubernetes-validate"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .or_else(|| on_path("kubernetes-validate"))
        .unwrap_or_else(|| {
            panic!(
                "kubernetes-validate not found in $VIGIL_HOME/bin ($HOME/.vigil/bin), ./.vigil/bin or PATH: \
                 run scripts/setup.sh (scripts/setup-extra.d/k8s-tools.sh installs it from PyPI)"
            )
        })
}

fn parse_docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn render(kubectl: &Path, overlay: &str) -> (String, Vec<Value>) {
    let dir = root().join("k8s/overlays").join(overlay);
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = parse_docs(&text);
    assert!(!docs.is_empty(), "overlay {overlay} rendered nothing");
    (text, docs)
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

fn find<'a>(docs: &'a [Value], k: &str, n: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind(d) == k && name(d) == n)
        .unwrap_or_else(|| panic!("no {k}/{n} rendered"))
}

fn is_crd_object(v: &Value) -> bool {
    // Built-in groups are "v1" (core) or end in ".k8s.io" or have no dot
    // ("apps/v1", "batch/v1", "policy/v1"); KEDA's keda.sh is a CRD.
    let api = v["apiVersion"].as_str().unwrap_or("");
    match api.split_once('/') {
        None => false,
        Some((group, _)) => group.contains('.') && !group.ends_with(".k8s.io"),
    }
}

/// The pod spec of a Deployment, Job or CronJob.
fn pod_spec(v: &Value) -> &Value {
    match kind(v) {
        "CronJob" => &v["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &v["spec"]["template"]["spec"],
    }
}

fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The value after `--flag` in an argument list.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn flags<'a>(args: &'a [String], name: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn overlays_render_and_validate_against_kubernetes_schemas() {
    let kubectl = kubectl();
    let validator = kubernetes_validate();
    for overlay in OVERLAYS {
        let (_, docs) = render(&kubectl, overlay);
        let builtin: Vec<&Value> = docs.iter().filter(|d| !is_crd_object(d)).collect();
        assert!(
            builtin.len() >= 8,
            "{overlay}: only {} built-in objects",
            builtin.len()
        );
        let validator = &validator;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("{overlay}.yaml"));
        let text: String = builtin
            .iter()
            .map(|d| format!("---\n{}", serde_norway::to_string(d).unwrap()))
            .collect();
        std::fs::write(&file, text).unwrap();
        for version in KUBE_VERSIONS {
            let out = Command::new(validator)
                .args(["--strict", "--quiet", "-k", version])
                .arg(&file)
                .output()
                .expect("run kubernetes-validate");
            let report = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success(),
                "{overlay} against {version}:\n{report}"
            );
            // A kind without a schema is only a warning: every built-in object must have been checked.
            assert!(
                !report.contains("Couldn't find schema"),
                "{overlay} against {version}:\n{report}"
            );
        }
    }
}

#[test]
fn keda_scales_workers_on_their_consumer_lag() {
    let kubectl = kubectl();
    for overlay in OVERLAYS {
        let (_, docs) = render(&kubectl, overlay);
        let so = find(&docs, "ScaledObject", "vigil-worker");
        assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
        let target = so["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
        let worker = find(&docs, "Deployment", target);
        let pool = flag(&args(&pod_spec(worker)["containers"][0]), "--pool")
            .expect("worker --pool")
            .to_string();

        let triggers = so["spec"]["triggers"].as_array().unwrap();
        assert_eq!(triggers.len(), 1, "{overlay}");
        let t = &triggers[0];
        assert_eq!(t["type"], "nats-jetstream", "{overlay}");
        let m = &t["metadata"];
        assert_eq!(m["stream"], "VIGIL_JOBS", "{overlay}");
        assert_eq!(
            m["consumer"].as_str().unwrap(),
            format!("vigil-workers-{pool}"),
            "{overlay}"
        );
        assert_eq!(m["account"], "$G", "{overlay}");
        let endpoint = m["natsServerMonitoringEndpoint"].as_str().unwrap();
        assert!(
            !endpoint.contains("://"),
            "host:port without a scheme: {endpoint}"
        );
        assert!(
            endpoint.ends_with(":8222"),
            "monitoring port 8222: {endpoint}"
        );
        assert!(
            endpoint.starts_with("nats-headless."),
            "the headless service carries 8222: {endpoint}"
        );
        let lag: u64 = m["lagThreshold"]
            .as_str()
            .expect("lagThreshold is a string")
            .parse()
            .unwrap();
        // A worker holds max(concurrency / 8, 4) jobs unacked (worker/src/pull.rs),
        // which count in the lag: the threshold must be above that (or in-flight
        // jobs alone keep pods around) and not so far above that a backlog waits.
        let concurrency: usize = flag(&args(&pod_spec(worker)["containers"][0]), "--concurrency")
            .expect("worker --concurrency")
            .parse()
            .unwrap();
        let held = vigil_worker::pull::default_max_jobs(concurrency) as u64;
        assert!(
            lag > held && lag <= 4 * held,
            "{overlay}: lagThreshold {lag} for workers holding {held} jobs"
        );
        let _: u64 = m["activationLagThreshold"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let (min, max) = (
            so["spec"]["minReplicaCount"].as_u64().unwrap(),
            so["spec"]["maxReplicaCount"].as_u64().unwrap(),
        );
        assert!(min <= max && max > 0, "{overlay}: min {min} max {max}");
        // KEDA owns the replica count.
        assert!(
            worker["spec"].get("replicas").is_none(),
            "{overlay}: Deployment sets replicas"
        );

        // The consumer KEDA reads is created up front for the same pool.
        let setup = find(&docs, "Job", "vigil-setup-streams");
        let setup_args = args(&pod_spec(setup)["containers"][0]);
        assert_eq!(
            setup_args.first().map(String::as_str),
            Some("setup-streams")
        );
        assert_eq!(
            flag(&setup_args, "--pool"),
            Some(pool.as_str()),
            "{overlay}"
        );
    }
}

#[test]
fn nightly_sweep_is_forbid_concurrent_dated_and_idempotent() {
    let kubectl = kubectl();
    for overlay in OVERLAYS {
        let (_, docs) = render(&kubectl, overlay);
        let cj = find(&docs, "CronJob", "vigil-nightly-sweep");
        let spec = &cj["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Forbid", "{overlay}");
        assert!(
            spec["startingDeadlineSeconds"].as_u64().unwrap() > 0,
            "{overlay}"
        );
        assert!(!spec["timeZone"].as_str().unwrap().is_empty(), "{overlay}");
        let pod = pod_spec(cj);
        assert_eq!(pod["restartPolicy"], "Never");
        let c = &pod["containers"][0];
        let script = args(c).join(" ");
        assert!(script.contains("vigil run"), "{script}");
        assert!(script.contains("--workers 0"), "{script}");
        // The date comes from the pod at run time, in UTC, and names the run.
        assert!(script.contains("--scheduled-date"), "{script}");
        assert!(script.contains("date -u +%F"), "{script}");
        // A gate failure (1) or a usage error (2) is not retried.
        let rules = cj["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
            .as_array()
            .unwrap();
        let mut fail_codes: Vec<u64> = rules
            .iter()
            .filter(|r| r["action"] == "FailJob")
            .flat_map(|r| {
                r["onExitCodes"]["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
            })
            .collect();
        fail_codes.sort();
        assert_eq!(fail_codes, [1, 2], "{overlay}");
        // An infrastructure failure (3) is retried: counted, neither failing
        // the Job at once nor ignored.
        let action_of = |code: u64| {
            rules
                .iter()
                .find(|r| {
                    r["onExitCodes"]["operator"] == "In"
                        && r["onExitCodes"]["values"]
                            .as_array()
                            .is_some_and(|v| v.iter().any(|c| c.as_u64() == Some(code)))
                })
                .map(|r| r["action"].as_str().unwrap().to_string())
        };
        assert_eq!(action_of(3).as_deref(), Some("Count"), "{overlay}");
        assert!(
            cj["spec"]["jobTemplate"]["spec"]["backoffLimit"]
                .as_u64()
                .unwrap()
                >= 1,
            "{overlay}: no retry left for exit 3"
        );
        // The suites are mounted where the script looks.
        let mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/suites")
            .unwrap();
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let cm = find(
            &docs,
            "ConfigMap",
            vol["configMap"]["name"].as_str().unwrap(),
        );
        assert!(
            cm["data"]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.ends_with(".yaml")),
            "no suite in {}",
            name(cm)
        );
    }
}

#[test]
fn pods_are_non_root_read_only_and_workers_are_probed() {
    let kubectl = kubectl();
    for overlay in OVERLAYS {
        let (_, docs) = render(&kubectl, overlay);
        let sa = find(&docs, "ServiceAccount", "vigil");
        assert_eq!(sa["automountServiceAccountToken"], false);
        let workloads: Vec<&Value> = docs
            .iter()
            .filter(|d| matches!(kind(d), "Deployment" | "Job" | "CronJob"))
            .collect();
        assert_eq!(workloads.len(), 3, "{overlay}");
        for w in &workloads {
            let what = format!("{overlay} {}/{}", kind(w), name(w));
            let pod = pod_spec(w);
            assert_eq!(pod["serviceAccountName"], "vigil", "{what}");
            assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            assert_eq!(
                pod["securityContext"]["runAsUser"], 65532,
                "{what}: the image's user"
            );
            for c in pod["containers"].as_array().unwrap() {
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{what}");
                assert!(
                    c["resources"]["requests"].is_object()
                        && c["resources"]["limits"]["memory"].is_string(),
                    "{what}"
                );
                // NATS settings come from the environment, never the command line.
                let line = args(c).join(" ");
                assert!(!line.contains("--nats"), "{what}: {line}");
                assert!(!line.to_lowercase().contains("password"), "{what}: {line}");
            }
        }

        let worker = find(&docs, "Deployment", "vigil-worker");
        let pod = pod_spec(worker);
        let c = &pod["containers"][0];
        let a = args(c);
        assert_eq!(a[0], "worker");
        let grace: u64 = flag(&a, "--grace-period-s").unwrap().parse().unwrap();
        let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            termination > grace,
            "{overlay}: terminationGracePeriodSeconds {termination} <= grace {grace}"
        );
        let health_port: u64 = flag(&a, "--health-addr")
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let port_of = |probe: &Value| -> u64 {
            let p = &probe["httpGet"]["port"];
            p.as_u64().unwrap_or_else(|| {
                let named = p.as_str().unwrap();
                c["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["name"] == named)
                    .unwrap()["containerPort"]
                    .as_u64()
                    .unwrap()
            })
        };
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(port_of(&c["livenessProbe"]), health_port);
        assert_eq!(port_of(&c["readinessProbe"]), health_port);

        // Each --allow BASE_URL=KEY_ENV has its KEY_ENV from a Secret.
        let allows = flags(&a, "--allow");
        assert!(
            !allows.is_empty(),
            "{overlay}: the worker allows no backend"
        );
        let env = c["env"].as_array().unwrap();
        for allow in &allows {
            if let Some((_, key_env)) = allow.split_once('=') {
                let e = env
                    .iter()
                    .find(|e| e["name"] == key_env)
                    .unwrap_or_else(|| panic!("{key_env} not set"));
                assert!(
                    e["valueFrom"]["secretKeyRef"]["name"].is_string(),
                    "{key_env} must come from a Secret"
                );
            }
        }
        // Every suite target is a backend the workers allow.
        let suites = find(
            &docs,
            "ConfigMap",
            docs.iter()
                .find(|d| kind(d) == "ConfigMap" && name(d).starts_with("vigil-suites"))
                .map(name)
                .unwrap(),
        );
        for (file, text) in suites["data"].as_object().unwrap() {
            if !file.ends_with(".yaml") {
                continue;
            }
            let suite: Value = serde_norway::from_str(text.as_str().unwrap()).unwrap();
            for t in suite["targets"].as_array().unwrap() {
                let url = t["base_url"].as_str().unwrap();
                assert!(
                    allows.iter().any(|a| a.split('=').next() == Some(url)),
                    "{file}: target {url} is not in the workers' --allow list {allows:?}"
                );
            }
        }

        let pdb = find(&docs, "PodDisruptionBudget", "vigil-worker");
        let labels = &pod_spec_labels(worker);
        for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&labels[k], v, "PDB selects the workers");
        }
        let np = find(&docs, "NetworkPolicy", "vigil-worker");
        let egress_ports: Vec<u64> = np["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|p| p["port"].as_u64())
            })
            .collect();
        assert!(
            egress_ports.contains(&4222) && egress_ports.contains(&53),
            "{egress_ports:?}"
        );
        let ingress_ports: Vec<&str> = np["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|p| p["port"].as_str())
            })
            .collect();
        assert_eq!(ingress_ports, ["health", "metrics"]);
    }
}

fn pod_spec_labels(v: &Value) -> Value {
    v["spec"]["template"]["metadata"]["labels"].clone()
}

#[test]
fn secrets_are_templates_in_dev_and_references_in_prod() {
    let kubectl = kubectl();
    let (_, dev) = render(&kubectl, "dev");
    let (_, prod) = render(&kubectl, "prod");
    let referenced = |docs: &[Value]| -> Vec<String> {
        let mut names = Vec::new();
        for w in docs
            .iter()
            .filter(|d| matches!(kind(d), "Deployment" | "Job" | "CronJob"))
        {
            let pod = pod_spec(w);
            for c in pod["containers"].as_array().unwrap() {
                for e in c["env"].as_array().into_iter().flatten() {
                    if let Some(n) = e["valueFrom"]["secretKeyRef"]["name"].as_str() {
                        names.push(n.to_string());
                    }
                }
            }
            for v in pod["volumes"].as_array().into_iter().flatten() {
                if let Some(n) = v["secret"]["secretName"].as_str() {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        names.dedup();
        names
    };
    let dev_refs = referenced(&dev);
    assert_eq!(dev_refs, ["vigil-model-keys", "vigil-nats-auth"]);
    for n in &dev_refs {
        let s = find(&dev, "Secret", n);
        for (k, v) in s["stringData"].as_object().unwrap() {
            if k != "user" {
                assert!(
                    v.as_str().unwrap().starts_with("CHANGE-ME"),
                    "dev secret {n}/{k} must be a placeholder"
                );
            }
        }
    }
    assert_eq!(referenced(&prod), dev_refs);
    assert!(
        prod.iter().all(|d| kind(d) != "Secret"),
        "prod must reference existing Secrets, not carry them"
    );
}

#[test]
fn nats_helm_values_have_jetstream_file_storage_monitoring_and_a_cluster() {
    let text = std::fs::read_to_string(root().join("k8s/nats-values.yaml")).unwrap();
    let v: Value = serde_norway::from_str(&text).unwrap();
    let c = &v["config"];
    assert_eq!(c["jetstream"]["enabled"], true);
    assert_eq!(c["jetstream"]["fileStore"]["enabled"], true);
    assert_eq!(c["jetstream"]["fileStore"]["pvc"]["enabled"], true);
    assert_eq!(c["monitor"]["enabled"], true);
    assert_eq!(c["monitor"]["port"], 8222);
    assert_eq!(c["cluster"]["enabled"], true);
    assert_eq!(c["cluster"]["replicas"], 3);
    // The 0.x chart's keys are silently ignored by 1.x: make sure none crept in.
    assert!(
        v.get("nats").is_none() && v.get("cluster").is_none(),
        "0.x-style top-level keys"
    );
    // No password in the values: it comes from a Secret through the environment.
    let pw = &c["merge"]["authorization"]["users"][0]["password"];
    assert!(
        pw.as_str().unwrap().contains('$'),
        "password must be an env reference: {pw}"
    );
    let dev: Value = serde_norway::from_str(
        &std::fs::read_to_string(root().join("k8s/nats-values-dev.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(dev["config"]["cluster"]["enabled"], false);
}

#[test]
fn dockerfile_runs_vigil_as_the_manifests_user() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    // The default (last) stage and the one for a binary built outside.
    let stages: Vec<&str> = text.split("\nFROM ").collect();
    let last_stage = *stages.last().unwrap();
    let prebuilt = stages
        .iter()
        .find(|s| s.lines().next().unwrap().ends_with("AS runtime-prebuilt"))
        .expect("a runtime-prebuilt stage");
    for stage in [last_stage, prebuilt] {
        assert!(
            stage.contains("USER 65532"),
            "runtime stages must run as uid 65532"
        );
        assert!(stage.contains(r#"ENTRYPOINT ["/usr/local/bin/vigil"]"#));
    }
    assert!(prebuilt.contains("ARG VIGIL_BINARY") && prebuilt.contains("${VIGIL_BINARY}"));
    // code_exec's runtime and sandbox (docs/kubernetes.md, "A pool that runs code_exec"),
    // installed once in the base both runtime stages start from.
    let base = stages
        .iter()
        .find(|s| s.lines().next().unwrap().ends_with("AS runtime-base"))
        .expect("a runtime-base stage");
    for stage in [last_stage, prebuilt] {
        assert!(
            stage.lines().next().unwrap().starts_with("runtime-base AS"),
            "{stage}"
        );
    }
    let installs = base
        .lines()
        .find(|l| l.contains("apt-get install"))
        .expect("the runtime base installs packages");
    for package in ["python3", "bubblewrap"] {
        assert!(
            installs.split_whitespace().any(|w| w == package),
            "{installs}"
        );
    }
    assert!(text.contains("--locked") && text.contains("--bin vigil"));
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for must in ["target", ".git", ".vigil"] {
        assert!(
            ignore.lines().any(|l| l.trim_start_matches('/') == must),
            ".dockerignore lacks {must}"
        );
    }
}

/// Runs the nightly sweep's script (as rendered) with a fake `vigil` that
/// exits with each suite's code, and returns the script's exit code.
fn sweep_exit_code(script: &str, codes: &[i32]) -> i32 {
    let dir = tempfile::tempdir().unwrap();
    let suites = dir.path().join("suites");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&suites).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    for (i, code) in codes.iter().enumerate() {
        std::fs::write(suites.join(format!("s{i}.yaml")), code.to_string()).unwrap();
    }
    // `vigil run SUITE ...`: the suite file holds the code to exit with;
    // 137 stands for a process killed by SIGKILL.
    let fake = bin.join("vigil");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncode=\"$(cat \"$2\")\"\nif [ \"$code\" = 137 ]; then kill -KILL $$; fi\nexit \"$code\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .env("PATH", path)
        .env("VIGIL_SUITES_DIR", &suites)
        .status()
        .expect("run /bin/sh");
    status.code().expect("the script exits with a code")
}

#[test]
fn nightly_sweep_exits_with_the_worst_code_of_its_suites() {
    let kubectl = kubectl();
    let (_, docs) = render(&kubectl, "prod");
    let cj = find(&docs, "CronJob", "vigil-nightly-sweep");
    let c = &pod_spec(cj)["containers"][0];
    assert_eq!(c["command"][0], "/bin/sh");
    let script = args(c).join("\n");
    // Documented order: 3 (and any other code) > 2 > 1 > 0.
    for (codes, worst) in [
        (&[0, 0][..], 0),
        (&[1, 0], 1),
        (&[0, 2, 1], 2),
        (&[2, 3, 1], 3),
        (&[3, 1], 3),
        (&[137, 2], 3),
        (&[1, 137], 3),
    ] {
        assert_eq!(
            sweep_exit_code(&script, codes),
            worst,
            "suites exiting {codes:?}"
        );
    }
}

#[test]
fn overlays_replicate_state_as_the_nats_cluster_is_sized() {
    let kubectl = kubectl();
    let values = |file: &str| -> Value {
        serde_norway::from_str(&std::fs::read_to_string(root().join(file)).unwrap()).unwrap()
    };
    let prod_servers = values("k8s/nats-values.yaml")["config"]["cluster"]["replicas"]
        .as_u64()
        .unwrap();
    for (overlay, want) in [("prod", prod_servers), ("dev", 1)] {
        let (_, docs) = render(&kubectl, overlay);
        // Every pod that creates streams reads VIGIL_REPLICAS from the ConfigMap it loads.
        for (k, n) in [
            ("Job", "vigil-setup-streams"),
            ("Deployment", "vigil-worker"),
            ("CronJob", "vigil-nightly-sweep"),
        ] {
            let c = &pod_spec(find(&docs, k, n))["containers"][0];
            let cm_name = c["envFrom"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|e| e["configMapRef"]["name"].as_str())
                .unwrap_or_else(|| panic!("{overlay}: {k}/{n} loads no ConfigMap"));
            let cm = find(&docs, "ConfigMap", cm_name);
            assert_eq!(
                cm["data"]["VIGIL_REPLICAS"].as_str(),
                Some(want.to_string().as_str()),
                "{overlay}: {k}/{n}"
            );
        }
    }
}
