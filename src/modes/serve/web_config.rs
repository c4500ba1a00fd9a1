//! `--web-config FILE`: TLS and basic authentication for `--serve`, in the YAML shape
//! of the Prometheus exporters' web configuration (node_exporter's
//! `--web.config.file`):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt   # PEM: the certificate, then its chain
//!   key_file: server.key    # PEM: the private key
//! basic_auth_users:
//!   prometheus: $2y$10$...  # a bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Both parts are optional; relative paths are taken from the file's folder, as the
//! exporters do. Keys tcpscope does not know are an error rather than silently
//! ignored, so a setting that would not be enforced is never believed to be. Everything
//! is read and checked at start: a bad file stops tcpscope before it listens.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::auth::Auth;

/// What the file asks for; by default, neither TLS nor authentication.
#[derive(Default)]
pub struct WebConfig {
    pub tls: Option<Arc<ServerConfig>>,
    pub auth: Option<Auth>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFiles>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFiles {
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl WebConfig {
    /// Reads and checks the file at `path`: its YAML, its hashes, the certificate and
    /// key it names.
    pub fn load(path: &Path) -> anyhow::Result<WebConfig> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading the web config {}", path.display()))?;
        let file: File = serde_yaml_ng::from_str(&text)
            .with_context(|| format!("parsing the web config {}", path.display()))?;
        let folder = path.parent().unwrap_or(Path::new("."));
        let tls = file
            .tls_server_config
            .map(|files| server_config(&folder.join(files.cert_file), &folder.join(files.key_file)))
            .transpose()?;
        let auth = match file.basic_auth_users {
            Some(users) if !users.is_empty() => {
                for (user, hash) in &users {
                    check_user(user, hash).with_context(|| {
                        format!("in basic_auth_users of the web config {}", path.display())
                    })?;
                }
                Some(Auth::new(users))
            }
            _ => None,
        };
        Ok(WebConfig { tls, auth })
    }
}

/// A user name fit for basic authentication and a bcrypt hash for it.
fn check_user(user: &str, hash: &str) -> anyhow::Result<()> {
    if user.is_empty() || user.contains(':') {
        bail!(
            "the user name {user:?} is empty or holds a ':', which basic authentication cannot carry"
        );
    }
    hash.parse::<bcrypt::HashParts>().map_err(|error| {
        anyhow!("the password of {user:?} is not a bcrypt hash ($2y$10$…): {error}")
    })?;
    Ok(())
}

/// The TLS server configuration for a certificate chain and key in PEM files.
fn server_config(cert_file: &Path, key_file: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| anyhow!("reading the certificate {}: {error}", cert_file.display()))?;
    if chain.is_empty() {
        bail!(
            "the certificate file {} holds no certificate",
            cert_file.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|error| anyhow!("reading the private key {}: {error}", key_file.display()))?;
    tls_config(chain, key).with_context(|| {
        format!(
            "the key {} does not go with the certificate {}",
            key_file.display(),
            cert_file.display()
        )
    })
}

/// The TLS server configuration for a certificate chain and its key: TLS 1.2 and 1.3,
/// with rustls's safe defaults and the `ring` provider.
pub(super) fn tls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("setting up TLS")?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` into a fresh folder and loads `web.yml` from it.
    fn load(files: &[(&str, &str)]) -> anyhow::Result<WebConfig> {
        let folder = std::env::temp_dir().join(format!(
            "tcpscope-web-config-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        fs::create_dir_all(&folder)?;
        for (name, text) in files {
            fs::write(folder.join(name), text)?;
        }
        let loaded = WebConfig::load(&folder.join("web.yml"));
        let _ = fs::remove_dir_all(&folder);
        loaded
    }

    fn error_of(files: &[(&str, &str)]) -> String {
        match load(files) {
            Ok(_) => panic!("the config was accepted"),
            Err(error) => format!("{error:#}"),
        }
    }

    #[test]
    fn users_with_bcrypt_hashes_and_a_certificate_with_its_key_are_taken() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let config = load(&[
            ("web.yml", &format!("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\nbasic_auth_users:\n  prometheus: '{hash}'\n")),
            ("c.pem", &certified.cert.pem()),
            ("k.pem", &certified.signing_key.serialize_pem()),
        ])
        .unwrap();
        assert!(config.tls.is_some());
        assert!(config.auth.is_some());
    }

    #[test]
    fn a_bad_file_a_missing_key_or_a_plain_password_is_refused_by_name() {
        let missing_key = error_of(&[(
            "web.yml",
            "tls_server_config:\n  cert_file: nope.pem\n  key_file: k.pem\n",
        )]);
        assert!(missing_key.contains("nope.pem"), "{missing_key}");
        let plain = error_of(&[("web.yml", "basic_auth_users:\n  prometheus: hunter2\n")]);
        assert!(plain.contains("not a bcrypt hash"), "{plain}");
        assert!(plain.contains("prometheus"), "{plain}");
        let unknown = error_of(&[("web.yml", "basic_auth_user:\n  prometheus: x\n")]);
        assert!(unknown.contains("basic_auth_user"), "{unknown}");
        let not_yaml = error_of(&[("web.yml", "tls_server_config: [\n")]);
        assert!(not_yaml.contains("parsing the web config"), "{not_yaml}");
    }
}
