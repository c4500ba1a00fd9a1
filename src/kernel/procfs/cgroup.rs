//! Which container a process runs in, read from the cgroup path in `/proc/<pid>/cgroup`.
//!
//! Container runtimes name a container's cgroup after its 64-hex-digit id: Docker
//! `/docker/<id>` (cgroup v1) or `docker-<id>.scope` (systemd), containerd under
//! Kubernetes `cri-containerd-<id>.scope`, CRI-O `crio-<id>.scope`, Podman
//! `libpod-<id>.scope`, and Kubernetes pods on cgroup v1 `/kubepods/<qos>/pod<uid>/<id>`.
//! This module recognises those shapes and nothing more: a process whose path shows no
//! such id is in no container as far as tcpscope can tell. Parsing only; the reading is
//! done by the caller.

/// A container, as its cgroup path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Who runs it: `docker`, `containerd`, `crio`, `podman`, or `kubepods` for a
    /// Kubernetes pod whose runtime the path does not name.
    pub runtime: &'static str,
    /// The full container id, 64 lowercase hex digits.
    pub id: String,
}

/// Prefixes systemd-style scope names put before the id, and whose runtime they mean.
const SCOPE_PREFIXES: [(&str, &str); 5] = [
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("crio-", "crio"),
    ("libpod-", "podman"),
    ("containerd-", "containerd"),
];

/// The container the text of a `/proc/<pid>/cgroup` file places the process in.
///
/// Each line is `hierarchy:controllers:path`; the first line whose path names a
/// container wins (on cgroup v1 every hierarchy names the same one).
pub fn container_of(cgroup: &str) -> Option<Container> {
    cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .find_map(container_in_path)
}

/// The container one cgroup path (`/system.slice/docker-<id>.scope`) names, if any.
pub fn container_in_path(path: &str) -> Option<Container> {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let in_kubepods = components.iter().any(|c| c.starts_with("kubepods"));
    // The innermost component naming an id is the container; Podman adds a
    // `container` leaf below its scope, so look from the end.
    components
        .iter()
        .enumerate()
        .rev()
        .find_map(|(at, component)| {
            let name = component.strip_suffix(".scope").unwrap_or(component);
            let (id, named_runtime) = SCOPE_PREFIXES
                .iter()
                .find_map(|(prefix, runtime)| Some((name.strip_prefix(prefix)?, Some(*runtime))))
                .unwrap_or((name, None));
            if !is_container_id(id) {
                return None;
            }
            let parent = at.checked_sub(1).map(|p| components[p]);
            let runtime = named_runtime.unwrap_or(match parent {
                Some("docker") => "docker",
                _ if in_kubepods => "kubepods",
                // A bare id under any other parent is containerd's layout:
                // `/<containerd namespace>/<id>`.
                _ => "containerd",
            });
            Some(Container {
                runtime,
                id: id.to_owned(),
            })
        })
}

fn is_container_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1c0e5a9b2d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a";

    fn container(text: &str) -> Option<(&'static str, String)> {
        container_of(text).map(|c| (c.runtime, c.id))
    }

    #[test]
    fn docker_containers_are_found_on_cgroup_v1_and_v2() {
        let v1 = format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n");
        assert_eq!(container(&v1), Some(("docker", ID.to_owned())));
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(container(&v2), Some(("docker", ID.to_owned())));
    }

    #[test]
    fn kubernetes_pods_name_their_runtime_when_the_path_does() {
        let containerd = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234_5678.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(container(&containerd), Some(("containerd", ID.to_owned())));
        let crio = format!("0::/kubepods.slice/kubepods-pod99.slice/crio-{ID}.scope\n");
        assert_eq!(container(&crio), Some(("crio", ID.to_owned())));
        let v1 =
            format!("4:cpu:/kubepods/burstable/pod0c9e0b33-aaaa-bbbb-cccc-1234567890ab/{ID}\n");
        assert_eq!(container(&v1), Some(("kubepods", ID.to_owned())));
    }

    #[test]
    fn podman_and_plain_containerd_are_found() {
        let podman = format!(
            "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"
        );
        assert_eq!(container(&podman), Some(("podman", ID.to_owned())));
        let containerd = format!("0::/default/{ID}\n");
        assert_eq!(container(&containerd), Some(("containerd", ID.to_owned())));
    }

    #[test]
    fn a_process_outside_any_container_has_none() {
        assert_eq!(container("0::/init.scope\n"), None);
        assert_eq!(
            container("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(container(""), None);
        assert_eq!(container("garbage without colons"), None);
        // 64 characters, but not all hex: a unit name, not an id.
        let not_hex = "g".repeat(64);
        assert_eq!(container(&format!("0::/docker/{not_hex}\n")), None);
    }
}
