//! TLS for the second listener (`--tls-port`): the certificate, key and CA files loaded into a
//! rustls `ServerConfig`, and the server side of the handshake.
//!
//! rustls runs on the `ring` provider (not aws-lc-rs, rustls's default, whose C build needs
//! cmake and minutes); PEM files are read with `rustls-pki-types`' `PemObject`. The files are
//! read and checked once, at start: a missing, unreadable or non-PEM file, or a key that does
//! not match the certificate, stops the start naming the setting and the file, never printing
//! what the file holds.
//!
//! The handshake runs in the connection's own task, bounded by [`HANDSHAKE_TIMEOUT`], so a
//! client that connects and says nothing cannot hold up the accept loop. A client that sends
//! plaintext RESP to the TLS port gets one plaintext error line saying so, then the close.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::setting::Invalid;

/// Longest a TLS handshake may take (shortened to `--timeout` when that is shorter).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of a TLS record carrying a handshake message; anything else that opens a
/// connection to the TLS port is not TLS.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plaintext client on the TLS port reads before the close (a RESP error, so
/// `redis-cli` without `--tls` prints it).
const PLAINTEXT_REPLY: &[u8] =
    b"-ERR this port speaks TLS only: connect with TLS (redis-cli --tls), or use the plaintext port\r\n";

/// Most input read and discarded from a plaintext client before its close.
const PLAINTEXT_DRAIN_LIMIT: usize = 64 * 1024;

/// Whether clients must present a certificate (`--tls-auth-clients`, as in redis.conf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A certificate signed by the `--tls-ca-cert-file` CA is required (`yes`; the default
    /// when a CA file is given).
    Required,
    /// A certificate is asked for and verified if sent, but a client may send none
    /// (`optional`).
    Optional,
    /// No certificate is asked for (`no`; the default without a CA file).
    No,
}

impl ClientAuth {
    /// The redis.conf word for this setting.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::Required => "yes",
            ClientAuth::Optional => "optional",
            ClientAuth::No => "no",
        }
    }
}

/// The files `TlsConfig::load` reads.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate chain, PEM, leaf first (`--tls-cert-file`).
    pub cert_file: PathBuf,
    /// The server's private key, PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`--tls-key-file`).
    pub key_file: PathBuf,
    /// CA certificates that sign client certificates, PEM (`--tls-ca-cert-file`).
    pub ca_cert_file: Option<PathBuf>,
    /// Whether a client certificate is required; [`ClientAuth::Required`] and
    /// [`ClientAuth::Optional`] need `ca_cert_file`.
    pub auth_clients: ClientAuth,
}

/// The TLS listener's settings, with the files loaded and checked.
#[derive(Clone)]
pub struct TlsConfig {
    /// The TLS port; 0 picks a free one.
    pub port: u16,
    /// The files it was loaded from (CONFIG GET reports them).
    pub files: TlsFiles,
    server_config: Arc<ServerConfig>,
}

impl fmt::Debug for TlsConfig {
    // By hand: rustls's config holds the private key, which has no business in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("port", &self.port)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// A TLS file that cannot be used: the message names the setting and the file, and why.
#[derive(Debug, thiserror::Error)]
#[error("{setting} {}: {reason}", path.display())]
pub struct TlsError {
    setting: &'static str,
    path: PathBuf,
    reason: String,
}

impl TlsError {
    fn new(setting: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
        TlsError {
            setting,
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// The flag name (`tls-cert-file`, `tls-key-file`, `tls-ca-cert-file`).
    pub fn setting(&self) -> &'static str {
        self.setting
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl TlsConfig {
    /// Reads and checks the files, and builds the rustls configuration: TLS 1.2 and 1.3 with
    /// rustls's safe defaults, client certificates as `files.auth_clients` says.
    pub fn load(port: u16, files: TlsFiles) -> Result<TlsConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = read_certs("tls-cert-file", &files.cert_file)?;
        let key = read_key(&files.key_file)?;
        let verifier = match (&files.ca_cert_file, files.auth_clients) {
            (_, ClientAuth::No) => WebPkiClientVerifier::no_client_auth(),
            (None, _) => {
                return Err(TlsError::new(
                    "tls-auth-clients",
                    Path::new(files.auth_clients.as_str()),
                    "verifying client certificates needs --tls-ca-cert-file",
                ))
            }
            (Some(ca_file), auth) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs("tls-ca-cert-file", ca_file)? {
                    roots.add(cert).map_err(|error| {
                        TlsError::new(
                            "tls-ca-cert-file",
                            ca_file,
                            format!("not a usable CA certificate: {error}"),
                        )
                    })?;
                }
                let builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let builder = if auth == ClientAuth::Optional {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                builder.build().map_err(|error| {
                    TlsError::new("tls-ca-cert-file", ca_file, error.to_string())
                })?
            }
        };
        let server_config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::new("tls-cert-file", &files.cert_file, error.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|error| key_error(&files, &error))?;
        Ok(TlsConfig {
            port,
            files,
            server_config: Arc::new(server_config),
        })
    }

    /// The acceptor for the TLS listener.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config.clone())
    }

    /// The client side of a replica's link to its primary's TLS port (`tls-replication`): it
    /// trusts `tls-ca-cert-file` and presents this node's certificate, as Redis's replicas do.
    pub fn replication_connector(&self) -> Result<tokio_rustls::TlsConnector, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let Some(ca_file) = &self.files.ca_cert_file else {
            return Err(TlsError::new(
                "tls-replication",
                Path::new("yes"),
                "verifying the primary's certificate needs --tls-ca-cert-file",
            ));
        };
        let mut roots = RootCertStore::empty();
        for cert in read_certs("tls-ca-cert-file", ca_file)? {
            roots.add(cert).map_err(|error| {
                TlsError::new(
                    "tls-ca-cert-file",
                    ca_file,
                    format!("not a usable CA certificate: {error}"),
                )
            })?;
        }
        let certs = read_certs("tls-cert-file", &self.files.cert_file)?;
        let key = read_key(&self.files.key_file)?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| {
                TlsError::new("tls-cert-file", &self.files.cert_file, error.to_string())
            })?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|error| key_error(&self.files, &error))?;
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

fn read_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read_file(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::new(setting, path, format!("not valid PEM: {error}")))?;
    if certs.is_empty() {
        return Err(TlsError::new(
            setting,
            path,
            "no certificate in the file (expected PEM: -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read_file("tls-key-file", path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|error| {
        let reason = match error {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no private key in the file (expected PEM: PKCS#8 -----BEGIN PRIVATE KEY-----, \
                 PKCS#1 -----BEGIN RSA PRIVATE KEY----- or SEC1 -----BEGIN EC PRIVATE KEY-----)"
                    .to_owned()
            }
            other => format!("not valid PEM: {other}"),
        };
        TlsError::new("tls-key-file", path, reason)
    })
}

fn read_file(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path)
        .map_err(|error| TlsError::new(setting, path, format!("cannot read: {error}")))
}

/// The error `with_single_cert` gave, blamed on the file at fault.
fn key_error(files: &TlsFiles, error: &rustls::Error) -> TlsError {
    match error {
        rustls::Error::InconsistentKeys(_) => TlsError::new(
            "tls-key-file",
            &files.key_file,
            format!(
                "the private key does not match the certificate in tls-cert-file {}",
                files.cert_file.display()
            ),
        ),
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            TlsError::new(
                "tls-cert-file",
                &files.cert_file,
                format!("unusable certificate: {error}"),
            )
        }
        // Otherwise the provider could not load the key (an unsupported algorithm or size).
        other => TlsError::new(
            "tls-key-file",
            &files.key_file,
            format!("unusable private key: {other}"),
        ),
    }
}

/// Why a TLS handshake did not complete; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client spoke something other than TLS (plaintext RESP, HTTP); it was told so.
    #[error("the client sent plaintext to the TLS port")]
    Plaintext,
    /// The client left before finishing the handshake.
    #[error("the client closed the connection during the handshake")]
    Closed,
    /// The handshake took longer than its time limit.
    #[error("no complete handshake within {0:?}")]
    TimedOut(Duration),
    /// The handshake failed: a protocol or certificate error (no client certificate, one from
    /// another CA, no common cipher suite), or an I/O error.
    #[error("{0}")]
    Failed(std::io::Error),
}

/// Runs the server side of the handshake on `socket` within `limit`. The socket is borrowed,
/// so the caller decides when it is closed: after counting a failure, so that a client that sees
/// the close also sees the count.
pub async fn accept<'a>(
    acceptor: &TlsAcceptor,
    socket: &'a mut TcpStream,
    limit: Duration,
) -> Result<TlsStream<&'a mut TcpStream>, HandshakeError> {
    let handshake = async {
        let mut first = [0u8; 1];
        match socket.peek(&mut first).await {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
                // One line a person (or redis-cli) can read, instead of a TLS alert. What the
                // client sent is read first: closing a socket with unread input sends a reset,
                // which can destroy the reply before the client reads it.
                let mut unread = [0u8; 4096];
                let mut drained = 0;
                while drained < PLAINTEXT_DRAIN_LIMIT {
                    match socket.try_read(&mut unread) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
                let _ = socket.write_all(PLAINTEXT_REPLY).await;
                return Err(HandshakeError::Plaintext);
            }
            Ok(_) => {}
            Err(error) => return Err(HandshakeError::Failed(error)),
        }
        acceptor.accept(socket).await.map_err(|error| {
            if error.kind() == std::io::ErrorKind::UnexpectedEof {
                HandshakeError::Closed
            } else {
                HandshakeError::Failed(error)
            }
        })
    };
    match tokio::time::timeout(limit, handshake).await {
        Ok(outcome) => outcome,
        Err(_) => Err(HandshakeError::TimedOut(limit)),
    }
}

impl TlsFiles {
    /// The TLS listener's port and files from the `tls-*` settings: none without `--tls-port`;
    /// with it, the certificate and key are required, and verifying clients needs a CA file.
    /// Whether the files can be used is [`TlsConfig::load`]'s to say.
    pub fn from_settings(
        port: u16,
        tls_port: Option<u16>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        ca_cert_file: Option<PathBuf>,
        auth_clients: Option<ClientAuth>,
    ) -> Result<Option<(u16, TlsFiles)>, Invalid> {
        let Some(tls_port) = tls_port else {
            // TLS files without a TLS port would leave every client on plaintext, silently.
            let stray = [
                ("tls-cert-file", cert_file.is_some()),
                ("tls-key-file", key_file.is_some()),
                ("tls-ca-cert-file", ca_cert_file.is_some()),
                ("tls-auth-clients", auth_clients.is_some()),
            ];
            if let Some((setting, _)) = stray.iter().find(|(_, given)| *given) {
                return Err(Invalid::new(
                    setting,
                    "",
                    "TLS settings without --tls-port: nothing would listen for TLS; set \
                 --tls-port (0 picks a free port)",
                ));
            }
            return Ok(None);
        };
        if tls_port != 0 && tls_port == port {
            return Err(Invalid::new(
                "tls-port",
                tls_port.to_string(),
                "must differ from --port: the plaintext and TLS listeners need a port each",
            ));
        }
        let (Some(cert_file), Some(key_file)) = (cert_file, key_file) else {
            return Err(Invalid::new(
                "tls-port",
                tls_port.to_string(),
                "TLS needs --tls-cert-file and --tls-key-file",
            ));
        };
        let auth_clients = auth_clients.unwrap_or(match ca_cert_file {
            Some(_) => ClientAuth::Required,
            None => ClientAuth::No,
        });
        if auth_clients != ClientAuth::No && ca_cert_file.is_none() {
            return Err(Invalid::new(
                "tls-auth-clients",
                auth_clients.as_str(),
                "verifying client certificates needs --tls-ca-cert-file",
            ));
        }
        let files = TlsFiles {
            cert_file,
            key_file,
            ca_cert_file,
            auth_clients,
        };
        Ok(Some((tls_port, files)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh scratch directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sessiond-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A self-signed certificate for localhost and its key, as PEM.
    fn self_signed() -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        TlsFiles {
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            ca_cert_file: None,
            auth_clients: ClientAuth::No,
        }
    }

    fn load_error(files: TlsFiles) -> TlsError {
        TlsConfig::load(0, files).expect_err("the files must be refused")
    }

    #[test]
    fn a_matching_certificate_and_key_load() {
        let dir = scratch("good");
        let (cert, key) = self_signed();
        let config = TlsConfig::load(0, files(&dir, &cert, &key)).unwrap();
        assert!(
            !format!("{config:?}").contains("PRIVATE"),
            "no key material in Debug output"
        );
        // The CA file alone makes client certificates required.
        let mut with_ca = files(&dir, &cert, &key);
        std::fs::write(dir.join("ca.pem"), &cert).unwrap();
        with_ca.ca_cert_file = Some(dir.join("ca.pem"));
        with_ca.auth_clients = ClientAuth::Required;
        TlsConfig::load(0, with_ca).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unusable_files_name_the_setting_and_the_file_but_not_the_key() {
        let dir = scratch("bad");
        let (cert, key) = self_signed();
        let (other_cert, other_key) = self_signed();
        let key_body: String = key.lines().nth(1).unwrap().to_owned();

        let mut missing = files(&dir, &cert, &key);
        missing.cert_file = dir.join("nope.pem");
        let error = load_error(missing);
        assert_eq!(error.setting(), "tls-cert-file");
        assert!(error.to_string().contains("nope.pem"), "{error}");
        assert!(error.to_string().contains("cannot read"), "{error}");

        let error = load_error(files(&dir, "not a certificate\n", &key));
        assert_eq!(error.setting(), "tls-cert-file");
        assert!(error.to_string().contains("no certificate"), "{error}");

        // The key given as the certificate and the certificate as the key.
        let error = load_error(files(&dir, &key, &cert));
        assert_eq!(error.setting(), "tls-cert-file", "{error}");
        let error = load_error(files(&dir, &cert, &cert));
        assert_eq!(error.setting(), "tls-key-file");
        assert!(error.to_string().contains("no private key"), "{error}");
        assert!(error.to_string().contains("key.pem"), "{error}");

        let error = load_error(files(&dir, &cert, &other_key));
        assert_eq!(error.setting(), "tls-key-file");
        assert!(error.to_string().contains("does not match"), "{error}");
        assert!(!error.to_string().contains(&key_body));

        let truncated = &key[..key.len() / 2];
        let error = load_error(files(&dir, &cert, truncated));
        assert_eq!(error.setting(), "tls-key-file");
        assert!(!error.to_string().contains(&key_body), "{error}");

        let mut no_ca = files(&dir, &other_cert, &other_key);
        no_ca.auth_clients = ClientAuth::Required;
        assert_eq!(load_error(no_ca).setting(), "tls-auth-clients");

        let mut bad_ca = files(&dir, &cert, &key);
        std::fs::write(dir.join("ca.pem"), "garbage").unwrap();
        bad_ca.ca_cert_file = Some(dir.join("ca.pem"));
        bad_ca.auth_clients = ClientAuth::Required;
        let error = load_error(bad_ca);
        assert_eq!(error.setting(), "tls-ca-cert-file");
        assert!(error.to_string().contains("ca.pem"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tls_settings_need_each_other() {
        let path = |name: &str| Some(PathBuf::from(format!("/nonexistent/{name}")));
        let message = |tls_port, cert, key, auth_clients| {
            TlsFiles::from_settings(6380, tls_port, cert, key, None, auth_clients)
                .unwrap_err()
                .to_string()
        };
        // A TLS port without a certificate and key.
        let error = message(Some(0), None, None, None);
        assert!(
            error.contains("tls-port") && error.contains("--tls-cert-file"),
            "{error}"
        );
        // Files without a port would leave everyone on plaintext.
        let error = message(None, path("cert.pem"), path("key.pem"), None);
        assert!(
            error.contains("tls-cert-file") && error.contains("--tls-port"),
            "{error}"
        );
        // The same port twice.
        let error = message(Some(6380), path("cert.pem"), path("key.pem"), None);
        assert!(error.contains("must differ from --port"), "{error}");
        // Verifying clients needs a CA file.
        let optional = Some(ClientAuth::Optional);
        let error = message(Some(0), path("cert.pem"), path("key.pem"), optional);
        assert!(error.contains("--tls-ca-cert-file"), "{error}");
        // Without TLS settings, no listener; with a CA file, clients must show a certificate.
        assert!(TlsFiles::from_settings(6380, None, None, None, None, None)
            .unwrap()
            .is_none());
        let (port, files) =
            TlsFiles::from_settings(6380, Some(0), path("c"), path("k"), path("ca"), None)
                .unwrap()
                .unwrap();
        assert_eq!((port, files.auth_clients), (0, ClientAuth::Required));
    }
}
