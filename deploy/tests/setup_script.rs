//! `deploy/setup.sh`'s libclang detection, run against fake root directories: it must find what
//! bindgen (through clang-sys) loads, and nothing else. A fresh Debian image ships
//! `libclang-cpp.so.14` without libclang itself; taking one for the other once cost a newcomer a
//! failed RocksDB build.

use std::path::Path;
use std::process::Command;

/// Whether `flashstock_has_libclang ROOT` succeeds, with `LIBCLANG_PATH` set or not.
fn has_libclang(root: &Path, libclang_path: Option<&str>) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("setup.sh");
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(r#"source "$1" && flashstock_has_libclang "$2""#)
        .arg("bash")
        .arg(&script)
        .arg(root);
    command.env_remove("LIBCLANG_PATH");
    if let Some(path) = libclang_path {
        command.env("LIBCLANG_PATH", path);
    }
    let output = command.output().expect("run bash");
    match output.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!(
            "setup.sh failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn touch(root: &Path, file: &str) {
    let path = root.join(file.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"").unwrap();
}

#[test]
fn libclang_cpp_alone_is_not_libclang() {
    let root = tempfile::tempdir().unwrap();
    touch(root.path(), "/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14");
    touch(root.path(), "/usr/lib/llvm-14/lib/libclang-cpp.so.14");
    touch(root.path(), "/usr/lib/llvm-14/lib/libclangBasic.a");
    assert!(!has_libclang(root.path(), None));
}

#[test]
fn an_empty_machine_has_no_libclang() {
    let root = tempfile::tempdir().unwrap();
    assert!(!has_libclang(root.path(), None));
}

#[test]
fn each_name_bindgen_loads_is_found_where_it_looks() {
    // Debian's libclang1-14 and libclang-14-dev, and the unversioned name of other systems.
    for file in [
        "/usr/lib/llvm-14/lib/libclang.so.1",
        "/usr/lib/x86_64-linux-gnu/libclang-14.so.14",
        "/usr/lib/llvm-16/lib/libclang.so",
        "/usr/lib64/libclang-17.so",
        "/usr/local/lib/libclang.so",
    ] {
        let root = tempfile::tempdir().unwrap();
        touch(root.path(), "/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14");
        touch(root.path(), file);
        assert!(has_libclang(root.path(), None), "{file} was not found");
    }
}

#[test]
fn libclang_path_is_searched_too() {
    let root = tempfile::tempdir().unwrap();
    touch(root.path(), "/opt/clang/lib/libclang.so.18");
    assert!(!has_libclang(root.path(), None));
    assert!(has_libclang(root.path(), Some("/opt/clang/lib")));
}
