//! A deliberately broken `flashstock-node`: its gateways confirm a purchase as soon as it is
//! queued, before it is committed, with an order the cluster never assigned. It exists only to
//! prove that the harness catches a broken guarantee (`tests/t20_detects_a_broken_node.rs`);
//! never run it for anything else.

fn main() -> std::process::ExitCode {
    flashstock_node::cli::main(flashstock_node::UnsafeFaults {
        ack_before_commit: true,
    })
}
