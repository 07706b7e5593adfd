//! The file system a sandboxed program sees: only the runtime, bound
//! read-only at the paths it has on the host, on an otherwise empty root.
//!
//! A path is exposed by following it from `/`: every symbolic link on the
//! way becomes the same symbolic link in the sandbox (merged-`/usr` hosts
//! link `/lib64 → usr/lib64`), and where the path ends, that file or
//! directory is bound read-only. Everything under a bound directory comes
//! with it; nothing else of the host exists.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// One entry of the sandbox's root.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// The host's file or directory at the same path, read-only.
    Bind,
    /// A symbolic link with this target.
    Symlink(PathBuf),
}

/// The runtime's paths, as `bwrap` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeMounts {
    entries: BTreeMap<PathBuf, Entry>,
}

/// Symbolic links followed in one path before giving up (as the kernel's 40).
const MAX_LINKS: usize = 40;

impl RuntimeMounts {
    /// Exposes `path` (absolute): its symbolic links, then the file or
    /// directory it resolves to.
    ///
    /// ```
    /// let mut m = vigil_worker::sandbox::mounts::RuntimeMounts::default();
    /// m.expose(std::path::Path::new("/bin/sh")).unwrap();
    /// let args = m.bwrap_args();
    /// assert!(args.iter().any(|a| a == "--ro-bind"), "{args:?}");
    /// ```
    pub fn expose(&mut self, path: &Path) -> Result<(), String> {
        if !path.is_absolute() {
            return Err(format!("{} is not an absolute path", path.display()));
        }
        let mut todo = path.to_path_buf();
        for _ in 0..MAX_LINKS {
            let components: Vec<Component> = todo.components().collect();
            let mut cur = PathBuf::from("/");
            let mut next = None;
            for (i, c) in components.iter().enumerate() {
                match c {
                    Component::Normal(name) => cur.push(name),
                    Component::ParentDir => {
                        cur.pop();
                        continue;
                    }
                    Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
                }
                let meta = std::fs::symlink_metadata(&cur)
                    .map_err(|e| format!("{}: {e}", cur.display()))?;
                if meta.file_type().is_symlink() {
                    let target =
                        std::fs::read_link(&cur).map_err(|e| format!("{}: {e}", cur.display()))?;
                    let parent = cur.parent().unwrap_or(Path::new("/")).to_path_buf();
                    let rest: PathBuf = components[i + 1..].iter().collect();
                    next = Some(parent.join(&target).join(rest));
                    self.entries.insert(cur.clone(), Entry::Symlink(target));
                    break;
                }
            }
            match next {
                Some(n) => todo = n,
                None => {
                    self.entries.insert(cur, Entry::Bind);
                    return Ok(());
                }
            }
        }
        Err(format!("{}: too many symbolic links", path.display()))
    }

    /// Exposes the program interpreter (the dynamic loader) `binary` names,
    /// when it is a dynamically linked ELF file.
    pub fn expose_interpreter(&mut self, binary: &Path) -> Result<(), String> {
        match elf_interpreter(binary) {
            Some(loader) => self.expose(&loader),
            None => Ok(()),
        }
    }

    /// The top-level symbolic links of `/` (`/lib → usr/lib` on merged-`/usr`
    /// hosts), so that the loader's default search paths resolve.
    pub fn copy_root_links(&mut self) {
        let Ok(entries) = std::fs::read_dir("/") else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if let Ok(target) = std::fs::read_link(&path) {
                self.entries.entry(path).or_insert(Entry::Symlink(target));
            }
        }
    }

    /// `--ro-bind P P` and `--symlink T P` arguments, parents first, leaving
    /// out what a bound directory already brings.
    pub fn bwrap_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut bound: Vec<&Path> = Vec::new();
        for (path, entry) in &self.entries {
            if bound.iter().any(|b| path != b && path.starts_with(b)) {
                continue;
            }
            let p = path.to_string_lossy().into_owned();
            match entry {
                Entry::Bind => {
                    bound.push(path);
                    args.extend(["--ro-bind".to_string(), p.clone(), p]);
                }
                Entry::Symlink(target) => {
                    args.extend([
                        "--symlink".to_string(),
                        target.to_string_lossy().into_owned(),
                        p,
                    ]);
                }
            }
        }
        args
    }
}

/// The `PT_INTERP` path of an ELF binary (little-endian, 32 or 64 bit).
///
/// ```
/// # use vigil_worker::sandbox::mounts::elf_interpreter;
/// let sh = std::fs::canonicalize("/bin/sh").unwrap();
/// if let Some(loader) = elf_interpreter(&sh) {
///     assert!(loader.is_absolute(), "{}", loader.display());
/// }
/// assert_eq!(elf_interpreter(std::path::Path::new("/nonexistent")), None);
/// ```
pub fn elf_interpreter(binary: &Path) -> Option<PathBuf> {
    let data = std::fs::read(binary).ok()?;
    if data.get(..4)? != b"\x7fELF" || *data.get(5)? != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?));
    let wide = *data.get(4)? == 2;
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(0x20)? as usize, u16_at(0x36)?, u16_at(0x38)?)
    } else {
        (u32_at(0x1C)? as usize, u16_at(0x2A)?, u16_at(0x2C)?)
    };
    for i in 0..usize::from(phnum) {
        let ph = phoff.checked_add(i.checked_mul(usize::from(phentsize))?)?;
        if u32_at(ph)? != 3 {
            continue;
        }
        let (offset, size) = if wide {
            (u64_at(ph + 8)? as usize, u64_at(ph + 0x20)? as usize)
        } else {
            (u32_at(ph + 4)? as usize, u32_at(ph + 0x10)? as usize)
        };
        let raw = data.get(offset..offset.checked_add(size)?)?;
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        let text = std::str::from_utf8(&raw[..end]).ok()?;
        return Some(PathBuf::from(text));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_on_the_way_become_links_and_the_end_is_bound() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("real/bin")).unwrap();
        std::fs::write(d.join("real/bin/tool-1"), "x").unwrap();
        std::os::unix::fs::symlink("real", d.join("link")).unwrap();
        std::os::unix::fs::symlink("tool-1", d.join("real/bin/tool")).unwrap();
        let mut m = RuntimeMounts::default();
        m.expose(&d.join("link/bin/tool")).unwrap();
        let args = m.bwrap_args();
        let s = |p: &str| d.join(p).to_string_lossy().into_owned();
        assert_eq!(
            args,
            vec![
                "--symlink".to_string(),
                "real".into(),
                s("link"),
                "--symlink".into(),
                "tool-1".into(),
                s("real/bin/tool"),
                "--ro-bind".into(),
                s("real/bin/tool-1"),
                s("real/bin/tool-1"),
            ]
        );
        // A directory brings what is under it.
        m.expose(&d.join("real")).unwrap();
        let args = m.bwrap_args();
        assert_eq!(
            args.iter().filter(|a| *a == "--ro-bind").count(),
            1,
            "{args:?}"
        );
        assert!(args.contains(&s("real")));
        assert!(!args.contains(&s("real/bin/tool-1")));
        assert!(m.expose(&d.join("missing")).is_err());
    }

    #[test]
    fn finds_the_loader_of_a_dynamic_binary() {
        let python = crate::sandbox::runner::python_path().unwrap();
        let real = std::fs::canonicalize(python).unwrap();
        let loader = elf_interpreter(&real).expect("a dynamically linked python3");
        assert!(
            loader.to_string_lossy().contains("ld-"),
            "{}",
            loader.display()
        );
    }
}
