//! Network partitions on loopback with iptables.
//!
//! Every local node has its own address, `127.0.0.<id>`, and binds its outgoing connections to
//! it, so the traffic between two nodes is told apart by address. Nodes talk to each other only
//! through their internal listeners (Raft, forwarded writes, reads), so a rule also names the
//! internal port: the harness's own clients, whose connections leave from `127.0.0.1` like voter
//! 1's, keep reaching the gateways' public ports and are never cut.
//!
//! Cutting node A from node B adds four `DROP` rules to `INPUT`, each tagged with the comment
//! `flashstock-jepsen-<pid>`:
//!
//! ```text
//! -i lo -s A -d B -p tcp --dport <B's port>   A's requests to B
//! -i lo -s B -d A -p tcp --sport <B's port>   B's answers to A
//! -i lo -s B -d A -p tcp --dport <A's port>   B's requests to A
//! -i lo -s A -d B -p tcp --sport <A's port>   A's answers to B
//! ```
//!
//! The first two rules alone stop A from opening connections to B while B can still reach A: a
//! one-way cut ([`rules_one_way`]). The same four rules with `-m statistic --mode random
//! --probability P` drop a share of the packets instead of all ([`rules_lossy`]).
//!
//! When every node has a network namespace of its own ([`NodeNetwork::Namespaces`]), the same
//! rules go into the `INPUT` chain of the namespace that receives the packets (the one holding
//! the `-d` address), on its `eth0` instead of `lo`.
//!
//! A [`Partitioner`] remembers exactly the rules it added and deletes exactly those (`iptables
//! -D` with the same specification) when healed and when dropped, also while unwinding from a
//! panic. It never lists, changes or deletes a rule it did not add.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use flashstock_deploy::netns::NodeNetwork;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where iptables may be, when `PATH` lacks the sbin directories.
const IPTABLES_CANDIDATES: &[&str] = &["/usr/sbin/iptables", "/sbin/iptables"];

/// One rule this process added: the arguments after `-I INPUT` / `-D INPUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    args: Vec<String>,
}

impl Rule {
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The `-d` address: where the dropped packets go.
    fn destination(&self) -> Option<&str> {
        let at = self.args.iter().position(|a| a == "-d")?;
        self.args.get(at + 1).map(String::as_str)
    }

    /// The same rule on a namespace's own interface instead of loopback.
    fn on_interface(&self, interface: &str) -> Rule {
        let mut args = self.args.clone();
        if let Some(at) = args.iter().position(|a| a == "-i") {
            args[at + 1] = interface.to_owned();
        }
        Rule { args }
    }
}

/// One DROP rule for the packets from `src` to `dst` with the TCP `side` port `port`, dropping
/// only `loss_percent` of them when that is below 100.
fn rule(
    src: SocketAddr,
    dst: SocketAddr,
    side: &str,
    port: u16,
    comment: &str,
    loss_percent: u32,
) -> Rule {
    let mut args: Vec<String> = [
        "-i",
        "lo",
        "-s",
        &src.ip().to_string(),
        "-d",
        &dst.ip().to_string(),
        "-p",
        "tcp",
        side,
        &port.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if loss_percent < 100 {
        let probability = format!("{:.2}", f64::from(loss_percent) / 100.0);
        args.extend(
            [
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
    }
    args.extend(
        ["-m", "comment", "--comment", comment, "-j", "DROP"]
            .iter()
            .map(|s| s.to_string()),
    );
    Rule { args }
}

/// The rules that stop `from` from opening connections to `to` (its requests, and `to`'s
/// answers on them); `to` can still reach `from`.
pub fn rules_one_way(from: SocketAddr, to: SocketAddr, comment: &str) -> Vec<Rule> {
    vec![
        rule(from, to, "--dport", to.port(), comment, 100),
        rule(to, from, "--sport", to.port(), comment, 100),
    ]
}

/// The iptables rules that cut `a` from `b` in both directions, tagged with `comment`.
pub fn rules_between(a: SocketAddr, b: SocketAddr, comment: &str) -> Vec<Rule> {
    let mut rules = rules_one_way(a, b, comment);
    rules.extend(rules_one_way(b, a, comment));
    rules
}

/// The rules that drop `loss_percent` of the packets between `a` and `b`, both ways.
pub fn rules_lossy(a: SocketAddr, b: SocketAddr, comment: &str, loss_percent: u32) -> Vec<Rule> {
    vec![
        rule(a, b, "--dport", b.port(), comment, loss_percent),
        rule(b, a, "--sport", b.port(), comment, loss_percent),
        rule(b, a, "--dport", a.port(), comment, loss_percent),
        rule(a, b, "--sport", a.port(), comment, loss_percent),
    ]
}

/// Adds and removes this process's partition rules.
#[derive(Debug)]
pub struct Partitioner {
    iptables: PathBuf,
    comment: String,
    /// Rules added and not yet deleted, in the order they were added, with the namespace they
    /// are in (`None`: this process's own).
    active: Vec<(Option<String>, Rule)>,
    /// With a namespace per node: each node address's namespace.
    namespaces: Option<BTreeMap<String, String>>,
    /// Partition rules of other harness processes found in `INPUT` at the start (left by a run
    /// that was killed, or by one running now). Reported, never touched.
    pub foreign: Vec<String>,
}

/// The comment that tags this process's rules.
pub fn own_comment() -> String {
    format!("flashstock-jepsen-{}", std::process::id())
}

impl Partitioner {
    /// A partitioner if this process can use iptables (root, binary present, `-S` works), or
    /// why not.
    pub fn probe() -> Result<Partitioner, String> {
        if !flashstock_deploy::host::is_root() {
            return Err("not running as root".into());
        }
        let iptables = find_iptables().ok_or("iptables is not installed")?;
        let output = Command::new(&iptables)
            .args(["-w", "-S", "INPUT"])
            .output()
            .map_err(|e| format!("{}: {e}", iptables.display()))?;
        if !output.status.success() {
            return Err(format!(
                "iptables -S INPUT failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let comment = own_comment();
        let listing = String::from_utf8_lossy(&output.stdout);
        let foreign = foreign_rules(&listing, &comment);
        Ok(Partitioner {
            iptables,
            comment,
            active: Vec::new(),
            namespaces: None,
            foreign,
        })
    }

    /// A partitioner for nodes on `network`: on loopback as [`Partitioner::probe`]; with a
    /// namespace per node (ids `ids`), rules go into the receiving node's namespace.
    pub fn for_network(network: &NodeNetwork, ids: &[u64]) -> Result<Partitioner, String> {
        let mut partitioner = Partitioner::probe()?;
        if let NodeNetwork::Namespaces { .. } = network {
            let map = ids
                .iter()
                .map(|id| {
                    let ns = network.namespace(*id).expect("a namespace per node");
                    (network.ip(*id).to_string(), ns)
                })
                .collect();
            partitioner.namespaces = Some(map);
            partitioner.foreign.clear();
        }
        Ok(partitioner)
    }

    /// Cut `node` from every address in `others`. On an error, the rules already added stay
    /// recorded, so [`Partitioner::heal`] (or the drop) removes them.
    pub fn isolate(&mut self, node: SocketAddr, others: &[SocketAddr]) -> Result<(), String> {
        for other in others {
            let rules = rules_between(node, *other, &self.comment);
            self.add(rules)?;
        }
        Ok(())
    }

    /// Stop `from` from opening connections to `to`; `to` still reaches `from`.
    pub fn cut_one_way(&mut self, from: SocketAddr, to: SocketAddr) -> Result<(), String> {
        let rules = rules_one_way(from, to, &self.comment);
        self.add(rules)
    }

    /// Drop `loss_percent` of the packets between `a` and `b`, both ways.
    pub fn lossy(&mut self, a: SocketAddr, b: SocketAddr, loss_percent: u32) -> Result<(), String> {
        let rules = rules_lossy(a, b, &self.comment, loss_percent);
        self.add(rules)
    }

    fn add(&mut self, rules: Vec<Rule>) -> Result<(), String> {
        for rule in rules {
            let (namespace, rule) = match &self.namespaces {
                None => (None, rule),
                Some(map) => {
                    let destination = rule.destination().unwrap_or_default();
                    let ns = map.get(destination).ok_or_else(|| {
                        format!("no namespace holds {destination} for the rule {rule:?}")
                    })?;
                    (Some(ns.clone()), rule.on_interface("eth0"))
                }
            };
            self.iptables(namespace.as_deref(), "-I", &rule)?;
            self.active.push((namespace, rule));
        }
        Ok(())
    }

    /// Whether any rule of this process is in place.
    pub fn is_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Delete every rule this process added; returns how many. Keeps trying after an error
    /// and reports the first one.
    pub fn heal(&mut self) -> Result<usize, String> {
        let mut first_error = None;
        let mut deleted = 0;
        while let Some((namespace, rule)) = self.active.pop() {
            match self.iptables(namespace.as_deref(), "-D", &rule) {
                Ok(()) => deleted += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(deleted),
            Some(e) => Err(e),
        }
    }

    fn iptables(&self, namespace: Option<&str>, action: &str, rule: &Rule) -> Result<(), String> {
        let mut command = match namespace {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(&self.iptables);
                command
            }
            None => Command::new(&self.iptables),
        };
        let output = command
            .args(["-w", action, "INPUT"])
            .args(rule.args())
            .output()
            .map_err(|e| format!("{}: {e}", self.iptables.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "iptables {action} INPUT {}: {}",
                rule.args().join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

impl Drop for Partitioner {
    fn drop(&mut self) {
        if let Err(e) = self.heal() {
            eprintln!("jepsen: could not remove every partition rule: {e}");
        }
    }
}

/// Lines of an `iptables -S` listing that carry another process's harness comment.
fn foreign_rules(listing: &str, own: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            let comment = words.by_ref().find(|w| *w == "--comment").and(words.next());
            comment.is_some_and(|c| c.starts_with("flashstock-jepsen-") && c != own)
        })
        .map(str::to_owned)
        .collect()
}

fn find_iptables() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("iptables"))
            .find(|candidate| candidate.is_file())
    });
    in_path.or_else(|| {
        IPTABLES_CANDIDATES
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .map(Path::to_path_buf)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cut_both_directions_on_internal_ports_only() {
        let a: SocketAddr = "127.0.0.1:12001".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:12002".parse().unwrap();
        let rules = rules_between(a, b, "flashstock-jepsen-1");
        let text: Vec<String> = rules.iter().map(|r| r.args().join(" ")).collect();
        let tail = "-m comment --comment flashstock-jepsen-1 -j DROP";
        assert_eq!(
            text,
            vec![
                format!("-i lo -s 127.0.0.1 -d 127.0.0.2 -p tcp --dport 12002 {tail}"),
                format!("-i lo -s 127.0.0.2 -d 127.0.0.1 -p tcp --sport 12002 {tail}"),
                format!("-i lo -s 127.0.0.2 -d 127.0.0.1 -p tcp --dport 12001 {tail}"),
                format!("-i lo -s 127.0.0.1 -d 127.0.0.2 -p tcp --sport 12001 {tail}"),
            ]
        );
    }

    #[test]
    fn one_way_and_lossy_rules() {
        let a: SocketAddr = "127.0.0.1:12001".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:12002".parse().unwrap();
        let one_way: Vec<String> = rules_one_way(a, b, "c")
            .iter()
            .map(|r| r.args().join(" "))
            .collect();
        assert_eq!(one_way.len(), 2);
        assert!(one_way[0].starts_with("-i lo -s 127.0.0.1 -d 127.0.0.2 -p tcp --dport 12002"));
        let lossy = rules_lossy(a, b, "c", 30);
        assert_eq!(lossy.len(), 4);
        assert!(lossy[0]
            .args()
            .join(" ")
            .contains("-m statistic --mode random --probability 0.30 -m comment"));
    }

    #[test]
    fn only_other_processes_rules_are_foreign() {
        let listing = "-P INPUT ACCEPT\n\
            -A INPUT -s 127.0.0.1/32 -m comment --comment flashstock-jepsen-12 -j DROP\n\
            -A INPUT -s 127.0.0.1/32 -m comment --comment flashstock-jepsen-123 -j DROP\n\
            -A INPUT -s 10.0.0.1/32 -m comment --comment other -j DROP\n";
        let foreign = foreign_rules(listing, "flashstock-jepsen-12");
        assert_eq!(foreign.len(), 1);
        assert!(foreign[0].contains("flashstock-jepsen-123"));
    }

    #[test]
    fn this_process_tells_its_own_rules_from_other_harness_processes() {
        let own = own_comment();
        let pid = std::process::id();
        // The cleanup command of the README greps for `--comment flashstock-jepsen-<pid> `.
        let named = own
            .strip_prefix("flashstock-jepsen-")
            .and_then(|rest| rest.parse::<u32>().ok());
        assert_eq!(named, Some(pid), "{own}");
        // Rules as `iptables -S INPUT` lists them: this process's, another harness process's, and
        // one whose pid merely starts with ours.
        let a: SocketAddr = "127.0.0.1:12001".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:12002".parse().unwrap();
        let other = format!("flashstock-jepsen-{}", pid.wrapping_add(1));
        let longer = format!("{own}7");
        let listing: String = [own.as_str(), other.as_str(), longer.as_str()]
            .iter()
            .flat_map(|comment| rules_between(a, b, comment))
            .map(|rule| format!("-A INPUT {}\n", rule.args().join(" ")))
            .collect();
        let foreign = foreign_rules(&listing, &own);
        assert_eq!(foreign.len(), 8, "{foreign:#?}");
        assert!(
            foreign
                .iter()
                .all(|rule| !rule.contains(&format!("--comment {own} "))),
            "{foreign:#?}"
        );
    }
}
