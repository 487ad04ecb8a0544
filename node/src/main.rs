//! `flashstock-node --config node.toml`: runs one node, voter or gateway, until SIGTERM or
//! Ctrl-C, then drains and exits. See [`flashstock_node::cli`].

fn main() -> std::process::ExitCode {
    flashstock_node::cli::main(flashstock_node::UnsafeFaults::NONE)
}
