//! Bounds a whole sandbox run in aggregate with a cgroup of its own: its
//! memory (`memory_mb` for all its processes together, tmpfs pages
//! included), its processes (`processes`) and its CPU (one CPU's worth).
//!
//! Two backends, chosen once per worker by [`probe`]:
//!
//! - **cgroup v2**: the worker's own cgroup (`0::` in `/proc/self/cgroup`)
//!   when it is writable (delegated) and its `cgroup.controllers` lists
//!   `memory` and `pids`. The v2 "no internal processes" rule forbids
//!   enabling controllers for children of a cgroup that holds processes, so
//!   the worker first moves itself into a leaf `vigil-worker` under it,
//!   then writes `+memory +pids` (and `+cpu` where delegated) to its
//!   `cgroup.subtree_control`. Each run is a child `vigil-run-<run id>`:
//!   `memory.max`, `memory.swap.max` = 0, `pids.max`, `cpu.max`; killed with
//!   `cgroup.kill`.
//! - **cgroup v1**: the worker's own cgroups in writable `memory` and
//!   `pids` hierarchies (and `cpu` where mounted): a child
//!   `vigil-run-<run id>` in each, with `memory.limit_in_bytes` (and
//!   `memory.memsw.limit_in_bytes`, so swap adds nothing), `pids.max`,
//!   `cpu.cfs_quota_us` = `cpu.cfs_period_us`; killed pid by pid.
//!
//! A run enters its cgroup before anything of it can fork: the command is
//! wrapped in `sh -c 'echo $$ > …/cgroup.procs … && exec "$@"'` (no unsafe
//! pre-exec code), so setpriv, bwrap and the program all start inside.
//! When the run ends, every process left in it is killed and the cgroup is
//! removed ([`RunCgroup::finish`]).
//!
//! Where no backend works, there is no cgroup and the sandbox keeps its
//! per-process split of the memory total ([`super::limits::Limits::split`]).

use super::limits::Limits;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a run's cgroup is named, `run id` appended.
pub const RUN_PREFIX: &str = "vigil-run-";

/// The leaf a cgroup v2 worker moves itself into.
const WORKER_LEAF: &str = "vigil-worker";

/// What the entering wrapper prints when it cannot enter (then exits 125).
pub const ENTER_FAILED: &str = "vigil-cgroup: cannot enter";

/// The shell wrapper: `sh -c ENTER vigil-cgroup <procs files> -- command…`.
const ENTER: &str = r#"while [ "$1" != -- ]; do echo $$ > "$1" || { echo "vigil-cgroup: cannot enter $1" >&2; exit 125; }; shift; done; shift; exec "$@""#;

/// How long [`RunCgroup::finish`] waits for the run's processes to die.
const FINISH_WAIT: Duration = Duration::from_secs(10);

/// A cgroup backend the worker can create run cgroups in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    version: Version,
    sh: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Version {
    /// Runs are children of this directory (controllers enabled for them).
    V2 { parent: PathBuf, cpu: bool },
    /// Runs are children of these directories, one per hierarchy.
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: Option<PathBuf>,
    },
}

impl Cgroup {
    /// `cgroup v2 at PATH` or `cgroup v1`, for logs, `/readyz` and details.
    pub fn describe(&self) -> String {
        match &self.version {
            Version::V2 { parent, .. } => format!("cgroup v2 at {}", parent.display()),
            Version::V1 { .. } => "cgroup v1".to_string(),
        }
    }

    /// The directories a run's cgroup is made of, one per hierarchy.
    fn run_dirs(&self, run_id: &str) -> Vec<PathBuf> {
        let name = format!("{RUN_PREFIX}{run_id}");
        match &self.version {
            Version::V2 { parent, .. } => vec![parent.join(name)],
            Version::V1 { memory, pids, cpu } => [Some(memory), Some(pids), cpu.as_ref()]
                .into_iter()
                .flatten()
                .map(|d| d.join(&name))
                .collect(),
        }
    }

    /// A fresh cgroup for run `run_id` holding `limits` in aggregate;
    /// `overhead` processes (bwrap's own) are allowed on top of
    /// `limits.processes`. Blocking (a few small writes).
    pub fn create(
        &self,
        run_id: &str,
        limits: &Limits,
        overhead: u32,
    ) -> Result<RunCgroup, String> {
        let run = RunCgroup {
            dirs: self.run_dirs(run_id),
            v2: matches!(self.version, Version::V2 { .. }),
            sh: self.sh.clone(),
        };
        let made = run.dirs.iter().try_for_each(|d| {
            std::fs::create_dir(d).map_err(|e| format!("cannot create {}: {e}", d.display()))
        });
        if let Err(e) = made.and_then(|()| self.set_limits(&run, limits, overhead)) {
            // Nothing runs in it yet: removing is enough.
            for d in &run.dirs {
                let _ = std::fs::remove_dir(d);
            }
            return Err(e);
        }
        Ok(run)
    }

    fn set_limits(&self, run: &RunCgroup, limits: &Limits, overhead: u32) -> Result<(), String> {
        let memory = limits.memory_bytes.to_string();
        let pids = (u64::from(limits.processes) + u64::from(overhead)).to_string();
        match &self.version {
            Version::V2 { cpu, .. } => {
                let d = &run.dirs[0];
                write(&d.join("memory.max"), &memory)?;
                optional_write(&d.join("memory.swap.max"), "0")?;
                write(&d.join("pids.max"), &pids)?;
                if *cpu {
                    write(&d.join("cpu.max"), "100000 100000")?;
                }
            }
            Version::V1 { cpu, .. } => {
                let (mem, pid) = (&run.dirs[0], &run.dirs[1]);
                write(&mem.join("memory.limit_in_bytes"), &memory)?;
                optional_write(&mem.join("memory.memsw.limit_in_bytes"), &memory)?;
                write(&pid.join("pids.max"), &pids)?;
                if cpu.is_some() {
                    let c = &run.dirs[2];
                    write(&c.join("cpu.cfs_period_us"), "100000")?;
                    write(&c.join("cpu.cfs_quota_us"), "100000")?;
                }
            }
        }
        Ok(())
    }
}

/// The cgroup of one run. [`RunCgroup::finish`] kills what is left in it and
/// removes it.
#[derive(Debug)]
pub struct RunCgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
    sh: PathBuf,
}

impl RunCgroup {
    /// The wrapper that puts `command` into this cgroup before it runs.
    pub fn wrap(&self, command: Vec<String>) -> Vec<String> {
        let mut argv = vec![
            self.sh.to_string_lossy().into_owned(),
            "-c".into(),
            ENTER.into(),
            "vigil-cgroup".into(),
        ];
        argv.extend(
            self.dirs
                .iter()
                .map(|d| d.join("cgroup.procs").to_string_lossy().into_owned()),
        );
        argv.push("--".into());
        argv.extend(command);
        argv
    }

    /// How many processes the kernel's OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        std::fs::read_to_string(self.dirs[0].join(file))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok())?
                })
            })
            .unwrap_or(0)
    }

    /// Kills every process left in the cgroup, waits until it is empty and
    /// removes it.
    pub async fn finish(self) -> Result<(), String> {
        let deadline = Instant::now() + FINISH_WAIT;
        let kill_file = self.dirs[0].join("cgroup.kill");
        loop {
            let left: Vec<i32> = self.dirs.iter().flat_map(|d| procs(d)).collect();
            if left.is_empty() && self.remove() {
                return Ok(());
            }
            if self.v2 && kill_file.exists() {
                let _ = std::fs::write(&kill_file, "1");
            } else {
                for pid in left {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "cgroup {} still holds processes after {FINISH_WAIT:?}",
                    self.dirs[0].display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Removes every directory still there; whether all are gone.
    fn remove(&self) -> bool {
        self.dirs.iter().all(|d| match std::fs::remove_dir(d) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        })
    }
}

/// The pids in a cgroup directory (none when it is gone).
fn procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value)
        .map_err(|e| format!("cannot write {value} to {}: {e}", path.display()))
}

/// Writes where the file exists (the kernel may lack the knob).
fn optional_write(path: &Path, value: &str) -> Result<(), String> {
    if path.exists() {
        write(path, value)
    } else {
        Ok(())
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    options: Vec<String>,
}

/// Parses `/proc/self/mountinfo` text.
fn mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?.to_string();
            let _source = right.next()?;
            let options = right.next()?.split(',').map(String::from).collect();
            Some(Mount {
                root: unescape(left.get(3)?),
                point: PathBuf::from(unescape(left.get(4)?)),
                fstype,
                options,
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of the cgroup `path` (from `/proc/self/cgroup`) under
/// `mount`, if it is within what the mount shows.
fn dir_of(mount: &Mount, path: &str) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root.as_str())
            .filter(|r| r.is_empty() || r.starts_with('/'))?
    };
    Some(mount.point.join(rel.trim_start_matches('/')))
}

/// The worker's cgroup directory for v1 `controller`, or for v2 with `None`.
fn own_dir(mounts: &[Mount], own: &str, controller: Option<&str>) -> Option<PathBuf> {
    own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let mount = match controller {
            None if controllers.is_empty() => mounts.iter().find(|m| m.fstype == "cgroup2")?,
            Some(c) if controllers.split(',').any(|x| x == c) => mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == c))?,
            _ => return None,
        };
        dir_of(mount, path)
    })
}

/// Finds a cgroup backend the worker can use, trying v2 then v1, and checks
/// it by creating a cgroup with limits and starting a process in it.
/// `Err` says why there is none. Blocking.
pub fn probe() -> Result<Cgroup, String> {
    let sh = super::which("sh").ok_or("no sh to enter a cgroup with")?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let mounts = mounts(&mountinfo);
    let v2 = probe_v2(&mounts, &own, &sh);
    let v2_why = match v2 {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    match probe_v1(&mounts, &own, &sh) {
        Ok(c) => Ok(c),
        Err(v1_why) => Err(format!("v2: {v2_why}; v1: {v1_why}")),
    }
}

fn probe_v1(mounts: &[Mount], own: &str, sh: &Path) -> Result<Cgroup, String> {
    let dir = |c: &str| {
        own_dir(mounts, own, Some(c))
            .filter(|d| d.is_dir())
            .ok_or(format!("no {c} hierarchy"))
    };
    let cgroup = Cgroup {
        version: Version::V1 {
            memory: dir("memory")?,
            pids: dir("pids")?,
            cpu: dir("cpu").ok(),
        },
        sh: sh.to_path_buf(),
    };
    check(&cgroup)?;
    Ok(cgroup)
}

fn probe_v2(mounts: &[Mount], own: &str, sh: &Path) -> Result<Cgroup, String> {
    let mut dir = own_dir(mounts, own, None).ok_or("no cgroup2 mount")?;
    // Probed before in this process: the worker is in its leaf already.
    if dir.file_name().is_some_and(|n| n == WORKER_LEAF)
        && let Some(parent) = dir.parent()
    {
        dir = parent.to_path_buf();
    }
    let listed = |file: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let available = listed("cgroup.controllers");
    for c in ["memory", "pids"] {
        if !available.iter().any(|a| a == c) {
            return Err(format!(
                "{c} is not delegated to {} ({})",
                dir.display(),
                available.join(" ")
            ));
        }
    }
    let cpu = available.iter().any(|a| a == "cpu");
    if !["memory", "pids"]
        .iter()
        .all(|c| listed("cgroup.subtree_control").iter().any(|e| e == c))
    {
        enable_v2(&dir, cpu)?;
    }
    let enabled = listed("cgroup.subtree_control");
    let cgroup = Cgroup {
        version: Version::V2 {
            parent: dir,
            cpu: enabled.iter().any(|e| e == "cpu"),
        },
        sh: sh.to_path_buf(),
    };
    check(&cgroup)?;
    Ok(cgroup)
}

/// Enables the controllers for the children of `dir`, first moving the
/// worker into a leaf of its own under it (no internal processes).
fn enable_v2(dir: &Path, cpu: bool) -> Result<(), String> {
    let control = dir.join("cgroup.subtree_control");
    let enable = || -> Result<(), String> {
        write(&control, "+memory +pids")?;
        if cpu {
            // Optional: CPU may not be delegated even where listed.
            let _ = write(&control, "+cpu");
        }
        Ok(())
    };
    if enable().is_ok() {
        return Ok(());
    }
    let leaf = dir.join(WORKER_LEAF);
    if let Err(e) = std::fs::create_dir(&leaf)
        && e.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(format!("cannot create {}: {e}", leaf.display()));
    }
    let me = std::process::id().to_string();
    write(&leaf.join("cgroup.procs"), &me)?;
    enable().inspect_err(|_| {
        // Other processes share the cgroup: go back where the worker was.
        let _ = std::fs::write(dir.join("cgroup.procs"), &me);
        let _ = std::fs::remove_dir(&leaf);
    })
}

/// Creates a cgroup with limits, starts `true` in it through the wrapper and
/// removes it again.
fn check(cgroup: &Cgroup) -> Result<(), String> {
    let run_id = format!("probe-{}", std::process::id());
    let limits = Limits::default();
    let run = cgroup.create(&run_id, &limits, 0)?;
    let argv = run.wrap(vec![
        super::which("true")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| "true".into()),
    ]);
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output();
    let result = match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "a process cannot enter it: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", argv[0])),
    };
    // The process has exited: only the directories are left.
    if !run.remove() {
        return Err(format!("cannot remove {}", run.dirs[0].display()));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 /kube/pod\\0401 /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn finds_each_hierarchys_own_directory() {
        let m = mounts(MOUNTINFO);
        assert_eq!(m[4].root, "/kube/pod 1");
        let own = "8:pids:/a\n4:memory:/process_api/x\n1:cpu,cpuacct:/\n0::/kube/pod 1/c\n";
        assert_eq!(
            own_dir(&m, own, Some("memory")),
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/x"))
        );
        assert_eq!(
            own_dir(&m, own, Some("pids")),
            Some(PathBuf::from("/sys/fs/cgroup/pids/a"))
        );
        assert_eq!(
            own_dir(&m, own, Some("cpu")),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/"))
        );
        assert_eq!(
            own_dir(&m, own, None),
            Some(PathBuf::from("/sys/fs/cgroup/unified/c"))
        );
        assert_eq!(
            own_dir(&m, "0::/elsewhere\n", None),
            None,
            "outside the mount"
        );
        assert_eq!(own_dir(&m, own, Some("blkio")), None);
    }

    #[test]
    fn the_wrapper_enters_every_hierarchy_then_runs_the_command() {
        let c = Cgroup {
            version: Version::V1 {
                memory: "/m".into(),
                pids: "/p".into(),
                cpu: None,
            },
            sh: "/bin/sh".into(),
        };
        let run = RunCgroup {
            dirs: c.run_dirs("ab"),
            v2: false,
            sh: c.sh.clone(),
        };
        let argv = run.wrap(vec!["python3".into(), "--".into()]);
        assert_eq!(
            argv[3..],
            [
                "vigil-cgroup",
                "/m/vigil-run-ab/cgroup.procs",
                "/p/vigil-run-ab/cgroup.procs",
                "--",
                "python3",
                "--"
            ]
        );
    }
}
