//! Names for the cgroup ids sock_diag reports (`INET_DIAG_CGROUP_ID`): the path of the
//! cgroup under the cgroup2 mount, and the short name a user knows it by, a systemd
//! unit (`nginx.service`), a container (`docker:3f1c0e5a9b2d`) or a Kubernetes pod.
//!
//! A cgroup v2 id is the inode number of the cgroup's directory on the cgroup2 mount
//! (`cgroup_id()` is the kernfs node id, which is the inode on 64-bit kernels). The
//! mount is found in `/proc/self/mountinfo` (never assumed: hybrid layouts mount it at
//! `/sys/fs/cgroup/unified`), and the tree under it is walked once for every batch of
//! ids that holds one not seen before; names stay cached by id. This module only reads,
//! and knows nothing of sockets or outputs.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::procfs::container_in_path;

/// How many hex digits of a container id a name shows, as `docker ps` does.
const SHORT_ID: usize = 12;
/// How deep the walk goes below the mount: real trees are a dozen levels at most.
const MAX_DEPTH: usize = 32;

/// One cgroup, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupName {
    /// The path under the cgroup2 mount, `/` for the root: `/system.slice/nginx.service`.
    pub path: String,
    /// What a user calls it: the unit, the container, the pod, else the path.
    pub label: String,
}

impl CgroupName {
    /// A name for a cgroup found at `path` under the mount.
    pub fn of_path(path: &str) -> CgroupName {
        CgroupName {
            path: path.to_owned(),
            label: label_of(path),
        }
    }
}

/// Cgroup id → name, learnt from walks of the cgroup2 mount.
#[derive(Debug, Clone, Default)]
pub struct CgroupNames {
    mount: Option<PathBuf>,
    names: HashMap<u64, CgroupName>,
    /// Ids a walk did not find (a cgroup removed since): not looked for again until
    /// another unseen id asks for a walk.
    missing: HashSet<u64>,
    walks: u32,
}

impl CgroupNames {
    /// Names from the cgroup2 mount of this process's mount namespace; with none
    /// (a cgroup v1-only host), every id is named by its number.
    pub fn open() -> CgroupNames {
        let mount = fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|text| cgroup2_mount(&text));
        CgroupNames::at(mount)
    }

    /// Names from the tree under `mount`.
    pub fn at(mount: Option<PathBuf>) -> CgroupNames {
        CgroupNames {
            mount,
            ..CgroupNames::default()
        }
    }

    /// Where cgroup2 is mounted, if anywhere.
    pub fn mount(&self) -> Option<&Path> {
        self.mount.as_deref()
    }

    /// How many times the tree has been walked: once per batch with a new id.
    pub fn walks(&self) -> u32 {
        self.walks
    }

    /// Makes sure every id in `ids` has been looked for: walks the tree once if any of
    /// them (other than 0, "none") has never been seen. An id the walk does not find
    /// (a cgroup removed since) is remembered as missing and asks for no more walks.
    pub fn learn(&mut self, ids: impl IntoIterator<Item = u64>) {
        let unseen: Vec<u64> = ids
            .into_iter()
            .filter(|id| *id != 0 && !self.names.contains_key(id) && !self.missing.contains(id))
            .collect();
        if unseen.is_empty() {
            return;
        }
        if let Some(mount) = &self.mount {
            let mut found = HashMap::new();
            walk(mount, &mut String::new(), 0, &mut found);
            self.walks += 1;
            self.names = found;
        }
        for id in unseen {
            if !self.names.contains_key(&id) {
                self.missing.insert(id);
            }
        }
    }

    /// Whether `id` has been looked for: named, or missed by a walk.
    pub fn has_looked_for(&self, id: u64) -> bool {
        self.names.contains_key(&id) || self.missing.contains(&id)
    }

    /// The name of cgroup `id`, if a walk found it.
    pub fn name(&self, id: u64) -> Option<&CgroupName> {
        self.names.get(&id)
    }
}

/// Records every directory under `dir` (named `path` under the mount) by its inode.
/// Unreadable directories (a cgroup removed during the walk) are skipped.
fn walk(dir: &Path, path: &mut String, depth: usize, found: &mut HashMap<u64, CgroupName>) {
    let Ok(meta) = fs::metadata(dir) else {
        return;
    };
    let shown = if path.is_empty() { "/" } else { path.as_str() };
    found.insert(meta.ino(), CgroupName::of_path(shown));
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let length = path.len();
        path.push('/');
        path.push_str(&name.to_string_lossy());
        walk(&entry.path(), path, depth + 1, found);
        path.truncate(length);
    }
}

/// The mount point of the cgroup2 filesystem in a `/proc/self/mountinfo` text.
///
/// Each line is `id parent major:minor root mount-point options [optional…] - fstype
/// source super-options`; the mount point escapes space, tab, newline and backslash as
/// octal (`\040`).
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mount_point = before.split(' ').nth(4)?;
        Some(PathBuf::from(unescape_octal(mount_point)))
    })
}

fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let digits = bytes.get(at + 1..at + 4);
        if bytes[at] == b'\\'
            && let Some(digits) = digits
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |value, d| value * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            at += 4;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a user calls the cgroup at `path`: the container it holds
/// (`docker:3f1c0e5a9b2d`), else the Kubernetes pod (`pod:<uid>`), else the innermost
/// systemd service or scope (`nginx.service`), else the innermost slice, else the path.
pub fn label_of(path: &str) -> String {
    if let Some(container) = container_in_path(path) {
        let short: String = container.id.chars().take(SHORT_ID).collect();
        return format!("{}:{short}", container.runtime);
    }
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if let Some(uid) = components.iter().rev().find_map(|c| pod_uid(c)) {
        return format!("pod:{uid}");
    }
    let unit = |suffixes: &[&str]| {
        components
            .iter()
            .rev()
            .find(|c| suffixes.iter().any(|suffix| c.ends_with(suffix)))
    };
    if let Some(unit) = unit(&[".service", ".scope"]).or_else(|| unit(&[".slice"])) {
        return (*unit).to_owned();
    }
    if components.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

/// The pod uid a Kubernetes cgroup component names: `pod<uid>` (cgroupfs driver) or
/// `kubepods-<qos>-pod<uid with _ for ->.slice` (systemd driver).
fn pod_uid(component: &str) -> Option<String> {
    let name = component.strip_suffix(".slice").unwrap_or(component);
    let at = name.rfind("pod")?;
    if at > 0 && !name[..at].ends_with('-') {
        return None;
    }
    let uid = name[at + 3..].replace('_', "-");
    let looks_like_uid = uid.len() >= 8
        && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && uid.contains('-');
    looks_like_uid.then_some(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c0e5a9b2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a";

    #[test]
    fn the_cgroup2_mount_is_found_in_a_hybrid_layout() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(mountinfo),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "29 23 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn a_host_without_cgroup2_or_with_garbage_has_no_mount() {
        assert_eq!(
            cgroup2_mount("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"),
            None
        );
        assert_eq!(cgroup2_mount("garbage\n - \n\n"), None);
        assert_eq!(cgroup2_mount(""), None);
    }

    #[test]
    fn an_escaped_mount_point_is_unescaped() {
        let line = "41 31 0:38 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(line), Some(PathBuf::from("/mnt/my cgroups")));
        assert_eq!(
            unescape_octal("a\\0"),
            "a\\0",
            "a cut escape stays as it is"
        );
    }

    #[test]
    fn a_service_is_named_by_its_unit() {
        assert_eq!(label_of("/system.slice/nginx.service"), "nginx.service");
        assert_eq!(
            label_of("/system.slice/nginx.service/workers"),
            "nginx.service"
        );
        assert_eq!(
            label_of("/user.slice/user-1000.slice/session-3.scope"),
            "session-3.scope"
        );
        assert_eq!(label_of("/system.slice"), "system.slice");
    }

    #[test]
    fn a_container_is_named_by_its_runtime_and_short_id() {
        assert_eq!(
            label_of(&format!("/system.slice/docker-{ID}.scope")),
            "docker:3f1c0e5a9b2d"
        );
        assert_eq!(
            label_of(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0c9e0b33_aaaa_bbbb_cccc_1234567890ab.slice/cri-containerd-{ID}.scope"
            )),
            "containerd:3f1c0e5a9b2d"
        );
    }

    #[test]
    fn a_pod_without_a_container_is_named_by_its_uid() {
        assert_eq!(
            label_of(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0c9e0b33_aaaa_bbbb_cccc_1234567890ab.slice"
            ),
            "pod:0c9e0b33-aaaa-bbbb-cccc-1234567890ab"
        );
        assert_eq!(
            label_of("/kubepods/besteffort/pod0c9e0b33-aaaa-bbbb-cccc-1234567890ab"),
            "pod:0c9e0b33-aaaa-bbbb-cccc-1234567890ab"
        );
    }

    #[test]
    fn any_other_cgroup_is_named_by_its_path() {
        assert_eq!(label_of("/"), "/");
        assert_eq!(label_of("/lab/a"), "/lab/a");
        assert_eq!(label_of("/ipod-music"), "/ipod-music");
    }

    #[test]
    fn a_walk_names_every_directory_by_its_inode_and_only_new_ids_walk_again() {
        let root = std::env::temp_dir().join(format!("tcpscope-cgroups-{}", std::process::id()));
        let service = root.join("system.slice/web.service");
        fs::create_dir_all(&service).unwrap();
        let inode = |path: &Path| fs::metadata(path).unwrap().ino();
        let mut names = CgroupNames::at(Some(root.clone()));
        names.learn([inode(&service)]);
        assert_eq!(names.walks(), 1);
        let name = names.name(inode(&service)).unwrap();
        assert_eq!(name.path, "/system.slice/web.service");
        assert_eq!(name.label, "web.service");
        assert_eq!(names.name(inode(&root)).unwrap().path, "/");

        names.learn([inode(&service), inode(&root), 0]);
        assert_eq!(names.walks(), 1, "known ids need no walk");
        names.learn([u64::MAX]);
        assert_eq!(names.walks(), 2);
        names.learn([u64::MAX]);
        assert_eq!(names.walks(), 2, "an id a walk missed does not walk again");
        fs::remove_dir_all(&root).unwrap();
    }
}
