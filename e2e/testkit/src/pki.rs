//! A throwaway certificate authority made with the `openssl` command: enough to serve TLS on
//! loopback and to authenticate clients by certificate, as a real cluster's PKI does.
//! P-256 keys, because they are generated in milliseconds and every peer here accepts them.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server for `127.0.0.1` and `localhost` (plus any extra DNS names given).
    Server,
    /// A TLS client; the subject is the identity (Kubernetes reads CN as the user, O as groups).
    Client,
}

/// A PEM certificate and its private key on disk.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA whose files live in `dir`; it issues leaves into the same directory.
#[derive(Debug, Clone)]
pub struct Ca {
    dir: PathBuf,
    pub pair: CertPair,
}

impl Ca {
    /// Creates `ca.crt` / `ca.key` in `dir`, valid for two days.
    pub fn create(dir: &Path, common_name: &str) -> io::Result<Self> {
        std::fs::write(
            dir.join("ca.cnf"),
            "[req]\ndistinguished_name = dn\n[dn]\n[v3_ca]\n\
             basicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign,digitalSignature\n\
             subjectKeyIdentifier = hash\n",
        )?;
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-config",
                "ca.cnf",
                "-extensions",
                "v3_ca",
                "-subj",
            ],
            &[&format!("/CN={common_name}"), "-keyout", "ca.key", "-out", "ca.crt"],
        )?;
        Ok(Self {
            dir: dir.to_owned(),
            pair: CertPair {
                cert: dir.join("ca.crt"),
                key: dir.join("ca.key"),
            },
        })
    }

    /// Issues `<name>.crt` / `<name>.key` for `subject` (e.g. `/CN=admin/O=system:masters`).
    pub fn issue(&self, name: &str, subject: &str, usage: Usage, extra_dns: &[&str]) -> io::Result<CertPair> {
        let extensions = match usage {
            Usage::Server => {
                let mut san = String::from("IP:127.0.0.1,DNS:localhost");
                for dns in extra_dns {
                    san.push_str(",DNS:");
                    san.push_str(dns);
                }
                format!("extendedKeyUsage = serverAuth\nsubjectAltName = {san}\n")
            }
            Usage::Client => "extendedKeyUsage = clientAuth\n".to_owned(),
        };
        std::fs::write(
            self.dir.join(format!("{name}.ext")),
            format!("basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n{extensions}"),
        )?;
        let (key, csr, cert, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
            ],
            &[subject, "-keyout", &key, "-out", &csr],
        )?;
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
            ],
            &["-in", &csr, "-extfile", &ext, "-out", &cert],
        )?;
        Ok(CertPair {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        })
    }
}

/// A P-256 key pair for signing tokens: `dir/<name>.key` (PKCS#8) and `dir/<name>.pub`.
pub fn signing_key(dir: &Path, name: &str) -> io::Result<CertPair> {
    let (key, public) = (format!("{name}.key"), format!("{name}.pub"));
    openssl(
        dir,
        &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &["-out", &key],
    )?;
    openssl(dir, &["pkey", "-pubout"], &["-in", &key, "-out", &public])?;
    Ok(CertPair {
        cert: dir.join(public),
        key: dir.join(key),
    })
}

fn openssl(dir: &Path, args: &[&str], more: &[&str]) -> io::Result<()> {
    let mut command = Command::new("openssl");
    command.args(args).args(more).current_dir(dir);
    crate::tool::run(command, "openssl", "")
}
