//! The layers of the crate, checked: each top-level module may import only from the
//! layers below its own, so that data flows one way (kernel → snapshot → diff → watch →
//! poll → report → modes and the view) and nothing low knows what is built on it.
//!
//! The check reads the source files' `use crate::…` and `crate::…::` paths as text; it
//! runs with the unit tests (the module is built for them only).

/// The layers from the ground up; modules of one layer may not import each other.
const LAYERS: &[&[&str]] = &[
    &["tcp", "text"],
    &["snapshot"],
    &["filter", "diff", "group"],
    &["kernel"],
    &["watch"],
    &["record"],
    &["poll"],
    &["report", "cli"],
    &["modes"],
    &["tui"],
];

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};

    use super::LAYERS;

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }

    /// The top-level modules a file's code names through `crate::`; comments (links
    /// in documentation) do not count.
    fn imported_modules(text: &str) -> Vec<String> {
        let mut modules = Vec::new();
        for line in text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
        {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    modules.push(name);
                }
            }
        }
        modules
    }

    #[test]
    fn every_module_imports_only_from_the_layers_below_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut wrong = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(&src).unwrap_or(file);
            let Some(first) = relative.components().next() else {
                continue;
            };
            let own = first.as_os_str().to_string_lossy();
            let own = own.trim_end_matches(".rs");
            let Some(own_layer) = layer_of(own) else {
                continue;
            };
            let text = fs::read_to_string(file).unwrap_or_default();
            // Unit tests may reach anywhere for their fixtures.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for module in imported_modules(code) {
                let Some(layer) = layer_of(&module) else {
                    continue;
                };
                if module != own && layer >= own_layer {
                    wrong.push(format!("{} imports crate::{module}", relative.display()));
                }
            }
        }
        wrong.sort();
        wrong.dedup();
        assert!(
            wrong.is_empty(),
            "imports that run up or across the layers: {wrong:#?}"
        );
    }

    #[test]
    fn every_top_level_module_has_a_layer() {
        let lib = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
            .unwrap_or_default();
        for line in lib.lines() {
            if let Some(module) = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))
                .and_then(|rest| rest.strip_suffix(';'))
                && module != "layering"
            {
                assert!(
                    layer_of(module).is_some(),
                    "{module} has no layer in LAYERS"
                );
            }
        }
    }

    #[test]
    fn an_import_is_found_in_a_use_line_and_in_a_path() {
        let text =
            "use crate::poll::Update;\n/// [`crate::tui`]\nlet x = crate::watch::leaks::f();";
        assert_eq!(imported_modules(text), ["poll", "watch"]);
    }
}
