//! Who may call what on the internal listener: one credential per role, checked on every call.
//!
//! A call carries one secret in the `x-flashstock-secret` header. [`Credentials::identify`]
//! tells whose it is: a [`Caller`] (voter, gateway or operator), or nobody (401
//! `unauthorized`). Each group of routes then admits only some callers ([`permit`]); a known
//! caller outside them gets 403 `forbidden`. Both refusals happen before any handler runs, so a
//! refused call changes nothing.
//!
//! | routes | voter | gateway | operator |
//! |---|---|---|---|
//! | Raft RPCs (`/raft/*`) | yes | no | no |
//! | `/internal/write` | every command | public kinds only | public kinds only |
//! | `/internal/read-index`, `/admin/status` | yes | yes | yes |
//! | replica reads (`/internal/products`, `/internal/orders`, `/internal/holds`) | yes | no | yes |
//! | the rest of `/admin/*` | no | no | yes |
//!
//! Gateways face the internet: they hold the voters' and operators' credentials only as
//! digests (the configuration refuses them in clear), so a compromised gateway cannot append
//! entries, vote, change the membership or move the archive cursor. Gateways still check the
//! voter credential on the Raft RPCs they receive as learners.
//!
//! Rotation: every role accepts each entry of its list (`cluster.voter_secrets`, ...), and a
//! node sends the first entry of its own role's list; a rollover adds the new secret, moves it
//! first, then drops the old one, one rolling restart each (deploy/RUNBOOK.md).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use cluster_config::{ClusterSection, Role};
use flashstock_api::{ErrorCode, SECRET_HEADER};
use sha2::Digest;

use crate::api_error::error;

/// A role that may call the internal listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    Voter,
    Gateway,
    Operator,
}

impl Caller {
    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Voter => "voter",
            Caller::Gateway => "gateway",
            Caller::Operator => "operator",
        }
    }
}

/// The credentials a node accepts, by role, as SHA-256 digests, and the secret it sends.
pub struct Credentials {
    accepted: Vec<([u8; 32], Caller)>,
    own: Arc<str>,
}

impl Credentials {
    /// The credentials of `cluster`, for a node of `role`. The configuration is validated: every
    /// entry is a secret or a well-formed digest, and the node's own first entry is a secret.
    pub fn new(cluster: &ClusterSection, role: Role) -> Credentials {
        let mut accepted = Vec::new();
        for (list, caller) in [
            (&cluster.voter_secrets, Caller::Voter),
            (&cluster.gateway_secrets, Caller::Gateway),
            (&cluster.operator_secrets, Caller::Operator),
        ] {
            for entry in list {
                let digest = cluster_config::parse_digest(entry).unwrap_or_else(|| sha256(entry));
                accepted.push((digest, caller));
            }
        }
        let own = match role {
            Role::Voter => &cluster.voter_secrets[0],
            Role::Gateway => &cluster.gateway_secrets[0],
        };
        Credentials {
            accepted,
            own: own.as_str().into(),
        }
    }

    /// The secret this node sends on its calls to other nodes.
    pub fn own_secret(&self) -> &Arc<str> {
        &self.own
    }

    /// Whose secret `given` is, if anyone's. Compares the digest of `given` with every accepted
    /// digest, always all of them, in time that does not depend on where they differ.
    pub fn identify(&self, given: &[u8]) -> Option<Caller> {
        let digest = sha256_bytes(given);
        let mut found = None;
        for (accepted, caller) in &self.accepted {
            if crate::internal::constant_time_eq(&digest, accepted) {
                found = Some(*caller);
            }
        }
        found
    }
}

fn sha256(secret: &str) -> [u8; 32] {
    sha256_bytes(secret.as_bytes())
}

fn sha256_bytes(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&sha2::Sha256::digest(bytes));
    out
}

/// Refuse a call whose secret is nobody's (401); otherwise record its [`Caller`] in the
/// request's extensions for [`permit`] and the handlers.
pub async fn authenticate(
    State(credentials): State<Arc<Credentials>>,
    mut request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(SECRET_HEADER)
        .map(|value| value.as_bytes())
        .unwrap_or_default();
    match credentials.identify(given) {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            format!("missing or wrong {SECRET_HEADER} header"),
        ),
    }
}

/// Admit only `allowed` callers to a group of routes (after [`authenticate`]): 403 for others.
pub async fn permit(
    State(allowed): State<&'static [Caller]>,
    request: Request,
    next: Next,
) -> Response {
    match request.extensions().get::<Caller>() {
        Some(caller) if allowed.contains(caller) => next.run(request).await,
        Some(caller) => forbidden(format!(
            "a {} credential may not call {}",
            caller.as_str(),
            request.uri().path()
        )),
        None => error(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            format!("missing or wrong {SECRET_HEADER} header"),
        ),
    }
}

/// 403 `forbidden`: a known credential, asking for what its role may not do. Nothing changed.
pub fn forbidden(message: String) -> Response {
    error(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterSection {
        ClusterSection {
            voter_secrets: vec!["voter-new-0123456789".into(), "voter-old-0123456789".into()],
            gateway_secrets: vec!["gateway-0123456789ab".into()],
            operator_secrets: vec![cluster_config::secret_digest("operator-0123456789a")],
            voters: Vec::new(),
            admin_token: None,
            groups: 1,
        }
    }

    #[test]
    fn each_secret_names_its_role_and_digests_stand_for_their_secret() {
        let credentials = Credentials::new(&cluster(), Role::Voter);
        assert_eq!(&**credentials.own_secret(), "voter-new-0123456789");
        assert_eq!(
            credentials.identify(b"voter-new-0123456789"),
            Some(Caller::Voter)
        );
        assert_eq!(
            credentials.identify(b"voter-old-0123456789"),
            Some(Caller::Voter)
        );
        assert_eq!(
            credentials.identify(b"gateway-0123456789ab"),
            Some(Caller::Gateway)
        );
        assert_eq!(
            credentials.identify(b"operator-0123456789a"),
            Some(Caller::Operator)
        );
        // The digest itself is not the secret.
        let digest = cluster_config::secret_digest("operator-0123456789a");
        assert_eq!(credentials.identify(digest.as_bytes()), None);
        assert_eq!(credentials.identify(b""), None);
        assert_eq!(credentials.identify(b"voter-new-012345678"), None);
        let gateway = Credentials::new(&cluster(), Role::Gateway);
        assert_eq!(&**gateway.own_secret(), "gateway-0123456789ab");
    }
}
