//! tasks-core is built in layers (its `lib.rs` lists them): each module imports only modules of
//! its own layer or of the layers before it, and no module imports one that imports it back.
//! This reads the `crate::` paths of every source file (a test module at a file's end may also
//! use the `testing` adapters) and checks both. Run by `make lint`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, in order: each may import only itself and those before it.
const LAYERS: [&str; 11] = [
    "config",
    "model",
    "request",
    "contracts",
    "delivery",
    "ports",
    "support",
    "rules",
    "flow",
    "metrics",
    "testing",
];

/// Every source file's module path (`flow::start`), with its text, `lib.rs` left out.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &str, found: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("the source folder") {
            let path = entry.expect("a source entry").path();
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            let name = if prefix.is_empty() {
                stem.clone()
            } else {
                format!("{prefix}::{stem}")
            };
            if path.is_dir() {
                walk(&path, &name, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") && name != "lib" {
                let module = name.strip_suffix("::mod").unwrap_or(&name).to_string();
                found.insert(module, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut found = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut found,
    );
    found
}

/// The code the layering applies to: without comments, and without the test module that ends a
/// file (tests may use the `testing` adapters of any layer).
fn checked_code(text: &str) -> String {
    let code = match text.find("#[cfg(test)]\nmod tests {") {
        Some(tests) => &text[..tests],
        None => text,
    };
    code.lines()
        .map(|line| match line.find("//") {
            Some(comment) => &line[..comment],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `code` names through `crate::` paths, each resolved to the longest module path
/// that is a file: `use crate::{a::b, c}` groups are opened.
fn imports(code: &str, modules: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(start) = rest.find("crate::") {
        rest = &rest[start + "crate::".len()..];
        if rest.starts_with('{') {
            let group = &rest[1..rest.find("};").unwrap_or(rest.len())];
            paths.extend(group.split(',').map(|item| item.trim().to_string()));
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            paths.push(rest[..end].to_string());
        }
    }
    paths
        .iter()
        .filter_map(|path| {
            let parts: Vec<&str> = path.split("::").filter(|part| !part.is_empty()).collect();
            (1..=parts.len())
                .rev()
                .map(|len| parts[..len].join("::"))
                .find(|module| modules.contains_key(module))
        })
        .collect()
}

fn layer(module: &str) -> usize {
    let top = module.split("::").next().unwrap();
    LAYERS
        .iter()
        .position(|layer| *layer == top)
        .unwrap_or_else(|| panic!("{module} is in no layer: add it to lib.rs and LAYERS"))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    modules
        .iter()
        .map(|(module, text)| {
            let mut named = imports(&checked_code(text), &modules);
            named.remove(module);
            (module.clone(), named)
        })
        .collect()
}

#[test]
fn every_module_imports_only_its_own_layer_and_those_before_it() {
    let mut wrong = Vec::new();
    for (module, named) in graph() {
        for import in named {
            if layer(&import) > layer(&module) {
                wrong.push(format!("{module} imports {import}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = graph();
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|seen| seen == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_string());
            cycles.push(cycle.join(" -> "));
            return;
        }
        if !done.insert(module.to_string()) {
            return;
        }
        path.push(module.to_string());
        for next in &graph[module] {
            visit(next, graph, path, done, cycles);
        }
        path.pop();
    }
    let (mut done, mut cycles) = (BTreeSet::new(), Vec::new());
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_check_sees_the_imports_it_checks() {
    let graph = graph();
    assert!(graph["flow::start"].contains("contracts"));
    assert!(graph["flow::cron"].contains("flow::claim"));
    assert!(graph["ports"].contains("model::task"));
}
