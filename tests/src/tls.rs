//! TLS for the end-to-end tests: a small PKI made at test time with rcgen (no key material is
//! committed), written to a scratch directory, and [`TlsClient`], a tokio-rustls peer with the
//! same blocking interface as [`crate::RawClient`].
//!
//! The PKI holds a CA, a server certificate for `localhost` and `127.0.0.1` signed by it, a client
//! certificate signed by it, and a client certificate signed by another CA, which a server that
//! trusts only the first must refuse.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sessiond::tls::{ClientAuth, TlsConfig, TlsFiles};
use sessiond_protocol::{Frame, FrameDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::IO_TIMEOUT;

/// Which certificate, if any, a TLS client presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// No client certificate.
    Anonymous,
    /// A client certificate signed by the PKI's CA.
    Trusted,
    /// A client certificate signed by another CA, which the server does not trust.
    Untrusted,
}

/// Certificates and keys for one test, as PEM files in a scratch directory removed on drop.
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// Makes the CAs and certificates (ECDSA P-256) and writes them: `ca.pem`, `server.pem`,
    /// `server.key`, `client.pem`, `client.key`, `other-client.pem`, `other-client.key`.
    pub fn generate() -> TestPki {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sessiond-pki-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the PKI directory");
        let pki = TestPki { dir };

        let (ca_pem, ca) = certificate_authority("sessiond test CA");
        let (_, other_ca) = certificate_authority("some other CA");
        pki.write("ca.pem", &ca_pem);
        let leaf =
            |names: &[&str], purpose: ExtendedKeyUsagePurpose, issuer: &Issuer<'_, KeyPair>| {
                let key = KeyPair::generate().expect("generate a key");
                let mut params =
                    CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                        .expect("certificate names");
                params.distinguished_name.push(
                    DnType::CommonName,
                    names.first().copied().unwrap_or("client"),
                );
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.extended_key_usages = vec![purpose];
                let cert = params.signed_by(&key, issuer).expect("sign a certificate");
                (cert.pem(), key.serialize_pem())
            };
        let (cert, key) = leaf(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca,
        );
        pki.write("server.pem", &cert);
        pki.write("server.key", &key);
        let (cert, key) = leaf(&["web-1"], ExtendedKeyUsagePurpose::ClientAuth, &ca);
        pki.write("client.pem", &cert);
        pki.write("client.key", &key);
        let (cert, key) = leaf(
            &["intruder"],
            ExtendedKeyUsagePurpose::ClientAuth,
            &other_ca,
        );
        pki.write("other-client.pem", &cert);
        pki.write("other-client.key", &key);
        pki
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.path(name), contents).expect("write a PKI file");
    }

    /// The path of one of the files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The path of one of the files, as a string for a command line.
    pub fn arg(&self, name: &str) -> String {
        self.path(name)
            .to_str()
            .expect("utf-8 temp path")
            .to_owned()
    }

    /// The server's settings for a TLS listener on port 0; with [`ClientAuth::Required`] or
    /// [`ClientAuth::Optional`], client certificates are checked against the CA.
    pub fn server_tls(&self, auth_clients: ClientAuth) -> TlsConfig {
        let files = TlsFiles {
            cert_file: self.path("server.pem"),
            key_file: self.path("server.key"),
            ca_cert_file: (auth_clients != ClientAuth::No).then(|| self.path("ca.pem")),
            auth_clients,
        };
        TlsConfig::load(0, files).expect("the test PKI loads")
    }

    /// A client configuration that trusts the CA (TLS 1.2 and 1.3) and presents `identity`.
    pub fn client_config(&self, identity: Identity) -> Arc<ClientConfig> {
        self.client_config_with(identity, rustls::DEFAULT_VERSIONS)
    }

    /// A client configuration limited to the given protocol versions.
    pub fn client_config_with(
        &self,
        identity: Identity,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.path("ca.pem")).expect("read ca.pem") {
            roots.add(cert.expect("ca.pem")).expect("a CA certificate");
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .expect("protocol versions")
                .with_root_certificates(roots);
        let prefix = match identity {
            Identity::Anonymous => return Arc::new(builder.with_no_client_auth()),
            Identity::Trusted => "client",
            Identity::Untrusted => "other-client",
        };
        let certs = CertificateDer::pem_file_iter(self.path(&format!("{prefix}.pem")))
            .expect("read the client certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("client certificate PEM");
        let key = PrivateKeyDer::from_pem_file(self.path(&format!("{prefix}.key")))
            .expect("client key PEM");
        Arc::new(
            builder
                .with_client_auth_cert(certs, key)
                .expect("client certificate and key"),
        )
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed CA: its certificate as PEM, and the issuer that signs with it.
fn certificate_authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("generate a key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (cert.pem(), Issuer::new(params, key))
}

/// A TLS peer (tokio-rustls, on a runtime of its own) with a blocking interface.
pub struct TlsClient {
    runtime: tokio::runtime::Runtime,
    stream: TlsStream<TcpStream>,
    buffer: BytesMut,
    decoder: FrameDecoder,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime")
}

fn server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}

impl TlsClient {
    /// Connects to `addr` and completes the handshake; panics if that fails.
    pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsClient {
        let runtime = runtime();
        let stream = runtime.block_on(async {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            tokio::time::timeout(
                IO_TIMEOUT,
                TlsConnector::from(config).connect(server_name(addr), tcp),
            )
            .await
            .expect("handshake within the timeout")
            .expect("TLS handshake")
        });
        TlsClient {
            runtime,
            stream,
            buffer: BytesMut::new(),
            decoder: FrameDecoder::default(),
        }
    }

    /// Sends bytes as they are; an error if the connection is gone.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stream = &mut self.stream;
        self.runtime.block_on(async {
            tokio::time::timeout(IO_TIMEOUT, async {
                stream.write_all(bytes).await?;
                stream.flush().await
            })
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
        })
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).expect("send");
    }

    /// Sends a command as a RESP array of bulk strings.
    pub fn command(&mut self, args: &[&[u8]]) {
        let mut out = BytesMut::new();
        sessiond_protocol::ClientCodec::encode_command(args, &mut out);
        self.send(&out);
    }

    /// Reads the next reply frame; `None` if the server closed the connection first.
    pub fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buffer)
                .expect("well-formed reply")
            {
                return Some(frame);
            }
            let (stream, buffer) = (&mut self.stream, &mut self.buffer);
            let read = self.runtime.block_on(async {
                tokio::time::timeout(IO_TIMEOUT, stream.read_buf(buffer)).await
            });
            match read {
                Ok(Ok(0)) => return None,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("TLS read failed: {e}"),
                Err(_) => panic!("no reply within {IO_TIMEOUT:?} (server stuck?)"),
            }
        }
    }

    /// Reads the next reply, which must exist.
    pub fn reply(&mut self) -> Frame {
        self.read_frame()
            .expect("a reply before the connection closed")
    }

    /// Sends a command and reads its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> Frame {
        self.command(args);
        self.reply()
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.get_ref().1.protocol_version()
    }
}

/// Connects with `config` and expects the server to refuse it: the handshake fails, or (TLS
/// 1.3 sends the client's certificate after the client's side of the handshake is done) the
/// first read does, with no reply. Returns what the client saw, once the server has closed the
/// TCP connection too, so the server has counted the failure by then.
pub fn expect_refused(addr: SocketAddr, config: Arc<ClientConfig>) -> String {
    runtime().block_on(async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let connect = TlsConnector::from(config)
            .connect(server_name(addr), tcp)
            .into_fallible();
        let connected = tokio::time::timeout(IO_TIMEOUT, connect)
            .await
            .expect("the handshake ends within the timeout");
        let (seen, tcp) = match connected {
            Err((error, tcp)) => (format!("handshake failed: {error}"), tcp),
            Ok(mut stream) => {
                // Sending may already fail; the read says what the server thinks.
                let _ = stream.write_all(b"*1\r\n$4\r\nPING\r\n").await;
                let _ = stream.flush().await;
                let mut reply = [0u8; 256];
                let read = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut reply))
                    .await
                    .expect("the server answers or closes within the timeout");
                let seen = match read {
                    Ok(0) => "closed after the handshake".to_owned(),
                    Ok(n) => panic!(
                        "the server answered a refused client: {:?}",
                        String::from_utf8_lossy(&reply[..n])
                    ),
                    Err(error) => format!("first read failed: {error}"),
                };
                (seen, stream.into_inner().0)
            }
        };
        wait_closed(tcp).await;
        seen
    })
}

/// Waits until the server closes `tcp` (end of stream or a reset), reading whatever comes.
pub async fn wait_closed(mut tcp: TcpStream) {
    let mut sink = [0u8; 4096];
    loop {
        match tokio::time::timeout(IO_TIMEOUT, tcp.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server did not close the connection within {IO_TIMEOUT:?}"),
        }
    }
}
