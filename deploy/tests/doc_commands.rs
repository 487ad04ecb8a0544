//! Every command the main docs show for one of our binaries or scripts still parses: the binary
//! exists, and every subcommand and flag the command uses is one that `BIN [SUBCOMMAND...]
//! --help` lists. Commands come from the fenced code blocks and the inline code of README.md,
//! docs/ARCHITECTURE.md and deploy/RUNBOOK.md; `cargo run ... --bin B -- ARGS` counts as `B ARGS`,
//! and the scripts count with the flags they take themselves and those they pass on to the
//! binary they run. Nothing is started but `--help`: no cluster, a second or two.
//!
//! Needs the binaries built: `cargo build --release --workspace --bins` (deploy/test.sh does).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The documents whose commands are checked, from the repository's root.
const DOCS: &[&str] = &["README.md", "docs/ARCHITECTURE.md", "deploy/RUNBOOK.md"];

/// Our binaries, by the name a command uses.
const BINARIES: &[&str] = &[
    "flashstock-node",
    "flashstock-local",
    "stockctl",
    "loadgen",
    "flashstock-bench",
    "jepsen",
];

/// Our scripts: how a command names them, and the binary they pass their arguments on to.
/// `six-hosts.sh stockctl ARGS` passes ARGS to stockctl; its other subcommands take `--dir`.
const SCRIPTS: &[(&str, Option<&str>)] = &[
    ("deploy/run-local.sh", Some("flashstock-local")),
    ("deploy/test.sh", None),
    ("deploy/six-hosts.sh", None),
    ("bench/run.sh", Some("flashstock-bench")),
];

/// Inline code that names a command on purpose as one that does not exist.
const NOT_COMMANDS: &[&str] = &["stockctl transfer-leader"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// A binary of the same build: next to this test's directory (target/release/deps/..).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found near {}: run `cargo build --release --workspace --bins` first",
                exe.display()
            )
        })
}

/// One command found in a document, split into words.
#[derive(Debug, Clone)]
struct Found {
    doc: &'static str,
    line: usize,
    text: String,
    words: Vec<String>,
}

/// Commands of the fenced shell blocks (only the `$ ` lines when a block has prompts) and of
/// the inline code outside them, with continuation lines joined and comments dropped.
fn commands_of(doc: &'static str, text: &str) -> Vec<Found> {
    let mut found = Vec::new();
    let mut block: Option<(bool, Vec<(usize, String)>)> = None;
    let mut prose: Vec<(usize, &str)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            match block.take() {
                Some((shell, lines)) => {
                    if shell {
                        found.extend(block_commands(doc, &lines));
                    }
                }
                None => {
                    found.extend(inline_commands(doc, &prose));
                    prose.clear();
                    let shell = matches!(info.trim(), "" | "sh" | "bash" | "shell" | "console");
                    block = Some((shell, Vec::new()));
                }
            }
            continue;
        }
        match &mut block {
            Some((_, lines)) => lines.push((i + 1, line.to_owned())),
            None => prose.push((i + 1, line)),
        }
    }
    found.extend(inline_commands(doc, &prose));
    found
}

/// The inline code of prose lines (a span may go on over a line break, not over a paragraph).
fn inline_commands(doc: &'static str, lines: &[(usize, &str)]) -> Vec<Found> {
    let mut found = Vec::new();
    let mut span: Option<(usize, String)> = None;
    for (number, line) in lines {
        if line.trim().is_empty() {
            span = None;
            continue;
        }
        for (k, piece) in line.split('`').enumerate() {
            if k > 0 {
                span = match span.take() {
                    Some((start, text)) => {
                        found.extend(command(doc, start, &text));
                        None
                    }
                    None => Some((*number, String::new())),
                };
            }
            if let Some((_, text)) = &mut span {
                text.push_str(piece);
            }
        }
        if let Some((_, text)) = &mut span {
            text.push(' ');
        }
    }
    found
}

fn block_commands(doc: &'static str, lines: &[(usize, String)]) -> Vec<Found> {
    let prompts = lines.iter().any(|(_, l)| l.trim_start().starts_with("$ "));
    let mut found = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (number, line) in lines {
        let line = line.trim();
        let (start, text) = match pending.take() {
            Some((start, before)) => (start, format!("{before} {line}")),
            None if prompts => match line.strip_prefix("$ ") {
                Some(command) => (*number, command.to_owned()),
                None => continue,
            },
            None => (*number, line.to_owned()),
        };
        match text.strip_suffix('\\') {
            Some(head) => pending = Some((start, head.trim_end().to_owned())),
            None => found.extend(command(doc, start, &text)),
        }
    }
    found
}

/// The commands of one shell line (split at `&&`, `||`, `|` and `;`), as words.
fn command(doc: &'static str, line: usize, text: &str) -> Vec<Found> {
    let mut commands = Vec::new();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q && depth == 0 => quote = None,
            (None, '\'' | '"') if depth == 0 => quote = Some(c),
            (_, '$') if chars.peek() == Some(&'(') => {
                depth += 1;
                word.push(c);
            }
            (_, ')') if depth > 0 => {
                depth -= 1;
                word.push(c);
            }
            (None, '#') if depth == 0 && word.is_empty() => break,
            (None, ' ' | '\t') if depth == 0 => end_word(&mut word, &mut words),
            (None, '|' | ';' | '&') if depth == 0 => {
                end_word(&mut word, &mut words);
                while chars.peek().is_some_and(|n| matches!(n, '|' | '&')) {
                    chars.next();
                }
                commands.push(std::mem::take(&mut words));
            }
            _ => word.push(c),
        }
    }
    end_word(&mut word, &mut words);
    commands.push(words);
    commands
        .into_iter()
        .filter(|words| !words.is_empty())
        .map(|words| Found {
            doc,
            line,
            text: text.trim().to_owned(),
            words,
        })
        .collect()
}

fn end_word(word: &mut String, words: &mut Vec<String>) {
    if !word.is_empty() {
        words.push(std::mem::take(word));
    }
}

/// What a command runs, if it is ours: the binary or script, and the arguments it gets.
#[derive(Debug, PartialEq)]
enum Ours {
    Binary(String, Vec<String>),
    Script(&'static str, Vec<String>),
    /// `cargo ... -p PACKAGE`, `--bin BIN`: names only.
    Cargo {
        package: Option<String>,
        bin: Option<String>,
    },
}

fn ours(words: &[String]) -> Option<Ours> {
    // Leading `NAME=value` assignments; `alias name='command'` checks the command.
    let mut words: Vec<String> = words
        .iter()
        .skip_while(|w| w.contains('=') && !w.starts_with('-'))
        .cloned()
        .collect();
    if words.first().is_some_and(|w| w == "alias") {
        let (_, aliased) = words.get(1)?.split_once('=')?;
        words = aliased.split_whitespace().map(str::to_owned).collect();
    }
    let first = words.first()?.clone();
    let rest: Vec<String> = words[1..].to_vec();
    if first == "cargo" {
        let value = |flag: &str| {
            rest.iter()
                .position(|w| w == flag)
                .and_then(|at| rest.get(at + 1).cloned())
        };
        let args: Vec<String> = rest
            .iter()
            .skip_while(|w| *w != "--")
            .skip(1)
            .cloned()
            .collect();
        let bin = value("--bin");
        return match (rest.first().map(String::as_str), &bin) {
            (Some("run"), Some(bin)) if BINARIES.contains(&bin.as_str()) => {
                Some(Ours::Binary(bin.clone(), args))
            }
            _ => Some(Ours::Cargo {
                package: value("-p").or_else(|| value("--package")),
                bin,
            }),
        };
    }
    if let Some((script, _)) = SCRIPTS
        .iter()
        .find(|(script, _)| first.trim_start_matches("./") == *script)
    {
        return Some(Ours::Script(script, rest));
    }
    let name = first.rsplit('/').next().unwrap_or(&first);
    if BINARIES.contains(&name) {
        return Some(Ours::Binary(name.to_owned(), rest));
    }
    None
}

/// What `--help` says at one level: its flags (long and short), which take a value, and its
/// subcommands.
#[derive(Debug, Default)]
struct Help {
    flags: BTreeSet<String>,
    valued: BTreeSet<String>,
    subcommands: BTreeSet<String>,
    /// Required choices of the usage line, e.g. `<--url <URL>|--local>`: one of each is needed.
    required: Vec<Vec<String>>,
}

fn parse_help(text: &str) -> Help {
    let mut help = Help::default();
    let mut in_commands = false;
    for line in text.lines() {
        if let Some(usage) = line.strip_prefix("Usage: ") {
            help.required = required_choices(usage);
        }
        if line.trim_end() == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            if line.trim().is_empty() || !line.starts_with(' ') {
                in_commands = false;
            } else {
                // `  name  description`; deeper indents continue a description.
                let name = line
                    .strip_prefix("  ")
                    .filter(|rest| !rest.starts_with(' '));
                if let Some(name) = name.and_then(|rest| rest.split_whitespace().next()) {
                    help.subcommands.insert(name.to_owned());
                }
                continue;
            }
        }
        let trimmed = line.trim_start();
        if !trimmed.starts_with('-') {
            continue;
        }
        // `-q, --quiet`, `--endpoints <HOST:PORT,...>`, `--dir=<DIR>`
        let head = trimmed.split("  ").next().unwrap_or(trimmed);
        let takes_value = head.contains(" <") || head.contains("=<");
        for part in head.split(", ") {
            let flag = part.split([' ', '=']).next().unwrap_or_default().to_owned();
            if flag.starts_with('-') {
                if takes_value {
                    help.valued.insert(flag.clone());
                }
                help.flags.insert(flag);
            }
        }
    }
    help
}

/// The `<--a ...|--b>` groups of a usage line, as their flags.
fn required_choices(usage: &str) -> Vec<Vec<String>> {
    let mut groups = Vec::new();
    let mut rest = usage;
    while let Some(at) = rest.find("<--") {
        let mut depth = 0;
        let mut end = rest.len();
        for (i, c) in rest[at..].char_indices() {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = at + i;
                break;
            }
        }
        let group = &rest[at + 1..end];
        groups.push(
            group
                .split('|')
                .filter_map(|choice| choice.split([' ', '=']).next())
                .filter(|flag| flag.starts_with("--"))
                .map(str::to_owned)
                .collect(),
        );
        rest = &rest[end..];
    }
    groups
}

/// `--help` outputs, run once each.
#[derive(Default)]
struct Helps {
    seen: BTreeMap<(String, Vec<String>), Help>,
}

impl Helps {
    fn get(&mut self, bin: &str, path: &[String]) -> &Help {
        self.seen
            .entry((bin.to_owned(), path.to_vec()))
            .or_insert_with(|| {
                let output = Command::new(binary(bin))
                    .args(path)
                    .arg("--help")
                    .output()
                    .unwrap_or_else(|e| panic!("{bin} {path:?} --help: {e}"));
                assert!(
                    output.status.success(),
                    "{bin} {} --help: {}",
                    path.join(" "),
                    String::from_utf8_lossy(&output.stderr)
                );
                parse_help(&String::from_utf8_lossy(&output.stdout))
            })
    }
}

/// The arguments as a reader types them: `[--archive]` is `--archive`; `...` and `|` are not
/// arguments.
fn placeholders_dropped(args: &[String]) -> Vec<String> {
    args.iter()
        .map(|a| a.trim_matches(|c| c == '[' || c == ']').to_owned())
        .filter(|a| !a.is_empty() && a != "..." && a != "|")
        .collect()
}

fn is_flag(arg: &str) -> bool {
    arg.len() > 1 && arg.starts_with('-') && !arg[1..].starts_with(|c: char| c.is_ascii_digit())
}

/// The problems of `bin args`: unknown subcommands and flags.
fn check_binary(helps: &mut Helps, bin: &str, args: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut path: Vec<String> = Vec::new();
    // Flags of every level on the way (global flags are accepted further down).
    let mut flags = BTreeSet::new();
    let mut valued = BTreeSet::new();
    let mut subcommands = BTreeSet::new();
    let mut required = Vec::new();
    let mut descend = true;
    let given = placeholders_dropped(args);
    let mut args = given.clone().into_iter();
    loop {
        if descend {
            let help = helps.get(bin, &path);
            flags.extend(help.flags.iter().cloned());
            valued.extend(help.valued.iter().cloned());
            subcommands = help.subcommands.clone();
            required.extend(help.required.iter().cloned());
            descend = false;
        }
        let Some(arg) = args.next() else {
            break;
        };
        if arg == "--" {
            break;
        }
        if is_flag(&arg) {
            let flag = arg.split('=').next().unwrap_or(&arg).to_owned();
            if !flags.contains(&flag) {
                problems.push(format!("`{bin} {}` has no flag {flag}", path.join(" ")));
            } else if valued.contains(&flag) && !arg.contains('=') {
                args.next();
            }
            continue;
        }
        if subcommands.is_empty() {
            continue;
        }
        if subcommands.contains(&arg) {
            path.push(arg);
            descend = true;
        } else {
            problems.push(format!(
                "`{bin} {}` has no subcommand {arg:?} (it has {subcommands:?})",
                path.join(" ")
            ));
            break;
        }
    }
    // A command that is run (not only named, not asking for help) gives every required flag.
    let runs = !given.is_empty() && !given.iter().any(|a| a == "--help" || a == "-h");
    for choices in required.iter().filter(|_| runs) {
        let flag = |a: &String| a.split('=').next().unwrap_or(a).to_owned();
        if !given.iter().any(|a| choices.contains(&flag(a))) {
            problems.push(format!(
                "`{bin} {}` needs one of {choices:?}",
                path.join(" ")
            ));
        }
    }
    problems
}

/// A script's own flags (`--flag)` arms of its argument loop) and subcommands (`usage: $0
/// a|b|c`).
fn script_words(script: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(repo().join(script)).expect("the script");
    let mut flags = BTreeSet::new();
    let mut subcommands = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some((arms, _)) = line.split_once(')') {
            if arms.starts_with("--") {
                for arm in arms.split('|') {
                    flags.insert(arm.trim_end_matches("=*").to_owned());
                }
            }
        }
        if let Some(usage) = line.split("usage: $0 ").nth(1) {
            let names = usage.split_whitespace().next().unwrap_or_default();
            subcommands.extend(names.split('|').map(str::to_owned));
        }
    }
    (flags, subcommands)
}

fn check_script(helps: &mut Helps, script: &str, args: &[String]) -> Vec<String> {
    let path = repo().join(script);
    let executable = std::fs::metadata(&path)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
        .unwrap_or(false);
    if !executable {
        return vec![format!("{script}: missing or not executable")];
    }
    if args.is_empty() {
        // Named, not run: that it exists is all there is to check.
        return Vec::new();
    }
    let (own_flags, subcommands) = script_words(script);
    let passes_to = SCRIPTS
        .iter()
        .find(|(s, _)| *s == script)
        .and_then(|(_, to)| *to);
    let mut args = placeholders_dropped(args);
    if !subcommands.is_empty() {
        let Some(first) = args.first().cloned() else {
            return vec![format!("{script}: needs one of {subcommands:?}")];
        };
        if !subcommands.contains(&first) {
            return vec![format!("{script}: no subcommand {first:?}")];
        }
        args.remove(0);
        match first.as_str() {
            "stockctl" => return check_binary(helps, "stockctl", &args),
            "exec" => return Vec::new(),
            _ => {}
        }
    }
    let mut problems = Vec::new();
    let mut forwarded = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let flag = arg.split('=').next().unwrap_or(&arg).to_owned();
        if own_flags.contains(&flag) {
            // The script takes it, and may pass it on with its value.
            if arg == flag && passes_to.is_none() {
                args.next();
            }
            continue;
        }
        forwarded.push(arg);
    }
    match passes_to {
        Some(bin) => problems.extend(check_binary(helps, bin, &forwarded)),
        None => {
            for arg in forwarded.iter().filter(|a| a.starts_with("--")) {
                problems.push(format!("{script}: no flag {arg}"));
            }
        }
    }
    problems
}

/// The workspace's package names.
fn packages() -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let members = manifest.split("members = [").nth(1).unwrap();
    let members = members.split(']').next().unwrap();
    members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|member| {
            let text = std::fs::read_to_string(repo().join(member).join("Cargo.toml")).unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with("name = "))
                .expect("a package name");
            line["name = ".len()..].trim_matches('"').to_owned()
        })
        .collect()
}

#[test]
fn every_documented_command_parses() {
    let packages = packages();
    let mut helps = Helps::default();
    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in DOCS {
        let text = std::fs::read_to_string(repo().join(doc)).expect("the document");
        for found in commands_of(doc, &text) {
            if NOT_COMMANDS.iter().any(|n| found.text.starts_with(n)) {
                continue;
            }
            let Some(ours) = ours(&found.words) else {
                continue;
            };
            let found_problems = match &ours {
                Ours::Binary(bin, args) => check_binary(&mut helps, bin, args),
                Ours::Script(script, args) => check_script(&mut helps, script, args),
                Ours::Cargo { package, bin } => {
                    let mut found_problems = Vec::new();
                    if let Some(package) = package {
                        if !packages.contains(package) {
                            found_problems.push(format!("no package {package}"));
                        }
                    }
                    if let Some(bin) = bin {
                        if !BINARIES.contains(&bin.as_str()) {
                            found_problems.push(format!("no binary {bin}"));
                        }
                    }
                    found_problems
                }
            };
            checked += 1;
            println!("{}:{}: {:?}", found.doc, found.line, ours);
            problems.extend(
                found_problems
                    .into_iter()
                    .map(|p| format!("{}:{}: `{}`: {p}", found.doc, found.line, found.text)),
            );
        }
    }
    println!("{checked} commands checked");
    assert!(
        checked >= 30,
        "only {checked} commands found: is the extraction broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_extraction_sees_what_a_reader_sees() {
    let text = "Run `stockctl cluster status` or:\n\
                ```\n\
                $ stockctl buy tee 2 \\\n    --key k1   # a comment\n\
                ORDER  PRODUCT\n\
                $ FOO=1 ./deploy/run-local.sh --dir /tmp/x && stockctl --help | head\n\
                ```\n\
                ```toml\n\
                stockctl = 1\n\
                ```\n";
    let found: Vec<Vec<String>> = commands_of("doc", text)
        .into_iter()
        .map(|f| f.words)
        .collect();
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        found,
        vec![
            words("stockctl cluster status"),
            words("stockctl buy tee 2 --key k1"),
            words("FOO=1 ./deploy/run-local.sh --dir /tmp/x"),
            words("stockctl --help"),
            words("head"),
        ]
    );
    assert_eq!(
        ours(&words(
            "cargo run --release -p flashstock-client --bin stockctl -- cluster status"
        )),
        Some(Ours::Binary("stockctl".into(), words("cluster status")))
    );
    let help = parse_help(
        "Usage: x [OPTIONS] <COMMAND>\n\nCommands:\n  status  Show\n  add-learner  Add\n\n\
         Options:\n  -o, --output <OUTPUT>  Format\n      --all  Every one\n",
    );
    assert_eq!(
        help.subcommands,
        ["add-learner", "status"].map(String::from).into()
    );
    assert_eq!(
        help.flags,
        ["--all", "--output", "-o"].map(String::from).into()
    );
    assert_eq!(help.valued, ["--output", "-o"].map(String::from).into());
    assert_eq!(
        required_choices("loadgen [OPTIONS] <--url <URL>|--local>"),
        vec![vec!["--url".to_owned(), "--local".to_owned()]]
    );
}
