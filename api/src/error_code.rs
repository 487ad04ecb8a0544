//! The stable, machine-readable error codes of every API: the `code` of an [`ErrorBody`], of a
//! refused write ([`WriteResponse::Refused`]), and of the errors the client library and stockctl
//! report themselves.
//!
//! On the wire a code is its [`ErrorCode::as_str`] string, in JSON and in bincode alike, so
//! adding a variant never changes how an existing code travels. A code this version does not know
//! (from a newer peer) is kept as [`ErrorCode::Other`] rather than refused: an error must never
//! become undecodable.
//!
//! [`ErrorBody`]: crate::ErrorBody
//! [`WriteResponse::Refused`]: crate::WriteResponse::Refused

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares [`ErrorCode`] with each variant's wire string, once.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $wire:literal,)*) => {
        /// A stable error code. See the module documentation.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this version does not know, as it came.
            Other(String),
        }

        impl ErrorCode {
            /// Every known code, in declaration order.
            pub const KNOWN: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it travels on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $wire,)*
                    ErrorCode::Other(code) => code,
                }
            }

            /// The code a wire string stands for; [`ErrorCode::Other`] when it is unknown.
            pub fn parse(wire: &str) -> ErrorCode {
                match wire {
                    $($wire => ErrorCode::$variant,)*
                    other => ErrorCode::Other(other.to_owned()),
                }
            }
        }
    };
}

error_codes! {
    // ---- The public API (`/v1`), with the HTTP status the gateway answers them with ----
    /// 400: malformed JSON, wrong types, a value out of range, a missing key: nothing changed.
    InvalidRequest => "invalid_request",
    /// 401: a missing or unknown credential or admin token: nothing changed.
    Unauthorized => "unauthorized",
    /// 404: no such route.
    NotFound => "not_found",
    /// 405: the route exists, not with that method.
    MethodNotAllowed => "method_not_allowed",
    /// 408: the request body did not arrive in time.
    RequestTimeout => "request_timeout",
    /// 413: the body is over the limit: nothing changed.
    PayloadTooLarge => "payload_too_large",
    /// 404: no such product (also a committed rejection).
    UnknownProduct => "unknown_product",
    /// 404: no such order on this replica.
    UnknownOrder => "unknown_order",
    /// 409: committed rejection: not enough stock left.
    InsufficientStock => "insufficient_stock",
    /// 409: committed rejection: the product exists already.
    ProductExists => "product_exists",
    /// 422: committed rejection: the idempotency key was used for another request.
    IdempotencyKeyReused => "idempotency_key_reused",
    /// 404: no such hold, or not for this token (also a committed rejection).
    UnknownHold => "unknown_hold",
    /// 409: committed rejection: the hold expired before it was confirmed or released; its
    /// stock is available again.
    HoldExpired => "hold_expired",
    /// 409: committed rejection: the hold was confirmed or released already.
    HoldFinished => "hold_finished",
    /// 409: committed rejection: the customer would pass the product's limit per customer.
    LimitReached => "limit_reached",
    /// 422: committed rejection: the product has a limit per customer and no customer was named.
    CustomerRequired => "customer_required",
    /// 409: committed rejection: the order is cancelled already.
    AlreadyCancelled => "already_cancelled",
    /// 409: committed rejection: the order is older than the cancellation window.
    CancelWindowPassed => "cancel_window_passed",
    /// 500: this node's storage failed a read; another replica may answer.
    StorageError => "storage_error",
    /// 500: a broken contract inside the node.
    Internal => "internal",
    /// 429: this client sent more than its share (its rate of purchases or of views, or its
    /// share of the gateway's queue); retry after `Retry-After`. Definitely not applied.
    RateLimited => "rate_limited",
    /// 503: too much in flight; retry shortly (with `Retry-After`). Definitely not applied.
    Overloaded => "overloaded",
    /// 503: no leader took the request, or a node did not answer in time. Definitely not
    /// applied.
    Unavailable => "unavailable",
    /// 503: the replica knows no leader or has applied nothing yet.
    NotReady => "not_ready",
    /// 504: the request may have been applied; retry with the same idempotency key.
    OutcomeUnknown => "outcome_unknown",

    // ---- Reported by the client library about a call that got no answer of the server's ----
    /// The connection was refused or could not be made: nothing was sent. Definitely not applied.
    Unreachable => "unreachable",
    /// The server answered with a body the client cannot decode.
    InvalidResponse => "invalid_response",

    // ---- The voters' internal and admin API ----
    /// 421: this node is not the leader; the message says where the leader is.
    NotLeader => "not_leader",
    /// 409: `init` on a node that is initialized already.
    AlreadyInitialized => "already_initialized",
    /// 400: `init` or a membership change naming more voters than the maximum (7; the
    /// archive's connection bound assumes at most that many): nothing changed.
    TooManyVoters => "too_many_voters",
    /// 409: another membership change is still in progress: nothing changed; retry later.
    MembershipChangeInProgress => "membership_change_in_progress",
    /// 409: Raft refused the membership change for another reason: nothing changed.
    MembershipError => "membership_error",
    /// 409: a voter set of the change has no majority of members up and caught up (the message
    /// names the members missing): nothing was proposed.
    MembersUnavailable => "members_unavailable",
    /// 409: a learner to promote has not caught up with the leader: nothing was proposed; wait,
    /// then promote.
    LearnerBehind => "learner_behind",
    /// 503: the current voters could not commit the check before a membership change.
    NoQuorum => "no_quorum",
    /// 503: this node's Raft core stopped (the message says why); the node is exiting.
    RaftStopped => "raft_stopped",
    /// 400: the request's internal wire version ([`crate::WIRE_VERSION_HEADER`]) is one this
    /// node does not speak (the message names both): nothing was done. Upgrade the older side.
    UnsupportedVersion => "unsupported_version",
    /// 409: `remove-learner` of a voter.
    IsAVoter => "is_a_voter",
    /// 503: Raft failed or is shutting down.
    RaftError => "raft_error",
    /// 409: this node has no archive database.
    ArchiveDisabled => "archive_disabled",
    /// 503: the archive database did not answer.
    ArchiveUnavailable => "archive_unavailable",
    /// 403: the credential is known, and its role may not make this call (a gateway's on a Raft
    /// RPC or an admin call, an internal command from anyone but a voter): nothing changed.
    Forbidden => "forbidden",

    // ---- Reported by stockctl itself, before or instead of a call ----
    /// No node reports a leader within the command's timeout.
    NoLeader => "no_leader",
    /// The command needs a voter, and the node is a gateway. Also 409 from a membership
    /// change that would make a voter of a node configured as a gateway (or one that did not
    /// say its role), and from `init` on a gateway: nothing was proposed.
    NotAVoter => "not_a_voter",
    /// The node is a voter already.
    AlreadyVoter => "already_voter",
    /// Another node has that id.
    MemberExists => "member_exists",
    /// The node is not a member of the cluster.
    NotAMember => "not_a_member",
    /// Removing the node would leave no voter.
    LastVoter => "last_voter",
    /// No endpoint knows a node with that id.
    UnknownNode => "unknown_node",
    /// `replace-disk`: the node did not come back empty in time.
    NotRestarted => "not_restarted",
    /// `replace-disk`: another node answers at the address of the node being replaced.
    WrongNode => "wrong_node",
    /// `hand-off`: the leader has no other voter to hand to.
    NoSuccessor => "no_successor",
    /// `hand-off`: leadership did not move (the message says whether it stays where it was or
    /// its outcome is unknown); new writes were held back at most a few hundred milliseconds.
    HandOffFailed => "hand_off_failed",
    /// `hand-off`: the voter asked to stand is stopping (SIGTERM), so it does not take a
    /// leadership it would take down with it; leadership stays where it was.
    NodeStopping => "node_stopping",
}

impl ErrorCode {
    /// A definite refusal for where the request went, not for what it is: another node, or the
    /// same one a moment later, may accept the same request.
    pub fn is_retryable_elsewhere(&self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable
                | ErrorCode::Unreachable
                | ErrorCode::Overloaded
                | ErrorCode::NotReady
                | ErrorCode::NotLeader
        )
    }

    /// A rejection the state machine commits for an idempotency key: the key's final outcome,
    /// which a retry with the key gets again. Other refusals are about one request only.
    pub fn is_committed_rejection(&self) -> bool {
        matches!(
            self,
            ErrorCode::InsufficientStock
                | ErrorCode::UnknownProduct
                | ErrorCode::ProductExists
                | ErrorCode::IdempotencyKeyReused
                | ErrorCode::UnknownHold
                | ErrorCode::HoldExpired
                | ErrorCode::HoldFinished
                | ErrorCode::LimitReached
                | ErrorCode::CustomerRequired
                | ErrorCode::AlreadyCancelled
                | ErrorCode::CancelWindowPassed
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = std::convert::Infallible;

    fn from_str(wire: &str) -> Result<ErrorCode, Self::Err> {
        Ok(ErrorCode::parse(wire))
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ErrorCode, D::Error> {
        String::deserialize(deserializer).map(|wire| ErrorCode::parse(&wire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_code_travels_as_its_own_string_and_comes_back() {
        let mut seen = BTreeSet::new();
        for code in ErrorCode::KNOWN {
            let wire = code.as_str();
            assert!(seen.insert(wire), "{wire} is declared twice");
            assert!(
                wire.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{wire} is not snake_case"
            );
            assert_eq!(&ErrorCode::parse(wire), code);
            assert_eq!(code.to_string(), wire);
        }
    }

    #[test]
    fn wire_form_is_a_plain_string_in_json_and_bincode() {
        let code = ErrorCode::MembershipChangeInProgress;
        assert_eq!(
            serde_json::to_string(&code).unwrap(),
            "\"membership_change_in_progress\""
        );
        let json: ErrorCode = serde_json::from_str("\"unavailable\"").unwrap();
        assert_eq!(json, ErrorCode::Unavailable);
        // A code from a newer peer is kept, not refused.
        let newer: ErrorCode = serde_json::from_str("\"some_new_code\"").unwrap();
        assert_eq!(newer, ErrorCode::Other("some_new_code".into()));
        assert_eq!(newer.to_string(), "some_new_code");
        // bincode: the same bytes as the `String` the code used to be.
        let bytes = bincode::serialize(&ErrorCode::InvalidRequest).unwrap();
        assert_eq!(bytes, bincode::serialize("invalid_request").unwrap());
        let back: ErrorCode = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, ErrorCode::InvalidRequest);
    }
}
