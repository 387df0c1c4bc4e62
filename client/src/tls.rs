//! TLS for `sessionds://` and `rediss://` nodes (feature `tls`): the rustls configuration the
//! builder makes once for every node (ring provider; Mozilla's roots from webpki-roots, or the
//! CA file given; a client certificate if given), and the client side of the handshake.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::url::NodeAddr;
use crate::{Error, Result};

/// What the builder was told about TLS.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// Whether any TLS setting was given.
    pub(crate) fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some()
    }

    /// Reads the files and builds the configuration every TLS connection uses: TLS 1.2 and
    /// 1.3, the server's certificate checked against the CA file's certificates (or Mozilla's
    /// roots) and the URL's host.
    pub(crate) fn client_config(&self) -> Result<TlsConfig> {
        let roots = match &self.ca_file {
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path, "CA file")? {
                    roots.add(cert).map_err(|e| {
                        Error::config(format!(
                            "TLS CA file {}: not a usable CA certificate: {e}",
                            path.display()
                        ))
                    })?;
                }
                roots
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => {
                let certs = read_certs(cert_file, "client certificate file")?;
                let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                    Error::config(format!(
                        "TLS client key file {}: no usable PEM private key: {e}",
                        key_file.display()
                    ))
                })?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    Error::config(format!(
                        "TLS client certificate {} and key {}: {e}",
                        cert_file.display(),
                        key_file.display()
                    ))
                })?
            }
        };
        Ok(TlsConfig(Arc::new(config)))
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let invalid = |why: String| Error::config(format!("TLS {what} {}: {why}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(format!("cannot read: {e}")))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "no certificate in the file (expected PEM: -----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    Ok(certs)
}

/// The rustls client configuration shared by every TLS connection of a client.
#[derive(Clone)]
pub(crate) struct TlsConfig(Arc<ClientConfig>);

impl fmt::Debug for TlsConfig {
    // rustls's configuration holds the client key, if there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConfig")
    }
}

impl TlsConfig {
    /// The handshake on `tcp`, checking the server's certificate against the URL's host.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        addr: &NodeAddr,
    ) -> Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(addr.host().to_owned()).map_err(|e| {
            Error::config(format!(
                "{addr}: not a name a certificate can be checked against: {e}"
            ))
        })?;
        TlsConnector::from(self.0.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| {
                Error::connection(format!("TLS handshake with {addr}: {e}")).with_source(e)
            })
    }
}
