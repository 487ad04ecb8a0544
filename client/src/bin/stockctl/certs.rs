//! `stockctl certs`: a cluster's CA and its certificates, as PEM files (see deploy/RUNBOOK.md,
//! "TLS"). Nothing is sent anywhere.

use flashstock_tls::authority::{Authority, CA_CERT_FILE, LEAF_DAYS};
use serde::Serialize;

use crate::args::CertsCommand;
use crate::context::Context;
use crate::error::CliError;
use crate::output::{emit, Table};

#[derive(Serialize)]
struct Written {
    cert: String,
    key: String,
}

pub fn run(ctx: &Context, command: CertsCommand) -> Result<(), CliError> {
    // Every failure here names a file or a name given on the command line.
    let failed = |e: flashstock_tls::Error| CliError::Usage(e.to_string());
    let written = match command {
        CertsCommand::Ca { dir, name } => {
            if dir.join(CA_CERT_FILE).exists() {
                return Err(CliError::Usage(format!(
                    "{} already holds a CA; a new one would not sign for the nodes that trust it",
                    dir.display()
                )));
            }
            let authority = Authority::new(&name).map_err(failed)?;
            authority.save(&dir).map_err(failed)?;
            Written {
                cert: dir.join(CA_CERT_FILE).display().to_string(),
                key: dir
                    .join(flashstock_tls::authority::CA_KEY_FILE)
                    .display()
                    .to_string(),
            }
        }
        CertsCommand::Issue {
            dir,
            name,
            addresses,
        } => {
            let authority = Authority::open(&dir).map_err(failed)?;
            let issued = authority.issue(&name, &addresses).map_err(failed)?;
            let (cert, key) = issued.save(&dir, &name).map_err(failed)?;
            eprintln!("valid {LEAF_DAYS} days; renew by issuing again and replacing both files");
            Written {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
            }
        }
    };
    emit(ctx.output, &written, || {
        let mut table = Table::new(&["FILE", "PATH"]);
        table.push(vec!["certificate".into(), written.cert.clone()]);
        table.push(vec!["private key".into(), written.key.clone()]);
        table
    });
    Ok(())
}
