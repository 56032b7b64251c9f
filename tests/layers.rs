//! The layering written in `src/lib.rs` holds: every `crate::` path in a module's code (its
//! tests and comments aside) names a module of a lower layer, so the modules form no cycle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layer of each top-level module, from the table in `src/lib.rs`.
fn layers(lib: &str) -> BTreeMap<String, u32> {
    let mut layers = BTreeMap::new();
    for line in lib.lines() {
        let cells: Vec<&str> = line
            .trim_start_matches("//!")
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() < 4 {
            continue;
        }
        let Ok(layer) = cells[1].parse::<u32>() else {
            continue;
        };
        for module in cells[2].split(',') {
            layers.insert(module.trim().trim_matches('`').to_owned(), layer);
        }
    }
    layers
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a source file without its comments and its test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`.
fn used(code: &str, modules: &BTreeMap<String, u32>) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())]
                .split(',')
                .map(|item| item.trim().split("::").next().unwrap_or("").trim())
                .collect(),
            None => vec![
                rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or(""),
            ],
        };
        out.extend(
            names
                .into_iter()
                .filter(|name| modules.contains_key(*name))
                .map(str::to_owned),
        );
    }
    out
}

#[test]
fn every_module_uses_only_lower_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(root.join("lib.rs")).unwrap();
    let layers = layers(&lib);
    let declared: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect();
    for module in &declared {
        assert!(
            layers.contains_key(module),
            "module `{module}` is missing from the layer table in src/lib.rs"
        );
    }
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        let Some(&layer) = layers.get(&module) else {
            continue; // lib.rs and main.rs sit above every layer.
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for target in used(&code(&text), &layers) {
            if target != module && layers[&target] >= layer {
                wrong.push(format!(
                    "{} (`{module}`, layer {layer}) uses `{target}` (layer {})",
                    relative.display(),
                    layers[&target]
                ));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "edges against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_a_wrong_way_edge() {
    let layers = layers("//! | 1 | `a`, `b` |\n//! | 0 | `model` |");
    assert_eq!(layers["a"], 1);
    assert_eq!(
        used(
            "use crate::{model::X, a::Y};\nlet _ = crate::b::f();",
            &layers
        ),
        ["model", "a", "b"]
    );
    assert_eq!(
        used(
            &code("// crate::a\nfn f() {}\n#[cfg(test)]\nmod tests {\n use crate::b;\n}"),
            &layers
        ),
        Vec::<String>::new()
    );
}
