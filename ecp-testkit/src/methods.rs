//! The public methods of a type, read from its source: the denial tests list every mutating
//! method of a scoped handle, and check that list against the source so that a new method cannot
//! be added without a case.

/// The names of the `pub fn` and `pub async fn` methods of every `impl {ty} {` block in `sources`
/// (the block ends at the first line that is `}`), sorted and without duplicates.
pub fn public_methods(ty: &str, sources: &[&str]) -> Vec<String> {
    let header = format!("impl {ty} {{");
    let mut names = Vec::new();
    for source in sources {
        let mut inside = false;
        for line in source.lines() {
            if line == header {
                inside = true;
            } else if inside && line == "}" {
                inside = false;
            } else if inside {
                let rest = line.trim_start();
                let rest = rest.strip_prefix("pub async fn ").or_else(|| rest.strip_prefix("pub fn "));
                if let Some(rest) = rest
                    && line.starts_with("    pub")
                {
                    let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    names.push(name);
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_public_methods_of_one_type() {
        let src = "impl Other {\n    pub fn no(&self) {}\n}\n\nimpl Handle {\n    /// Docs.\n    pub async fn change(&self) -> u8 {\n        0\n    }\n\n    fn private(&self) {}\n\n    pub fn read<T>(&self) {}\n}\n";
        assert_eq!(public_methods("Handle", &[src, src]), vec!["change".to_owned(), "read".to_owned()]);
        assert!(public_methods("Missing", &[src]).is_empty());
    }
}
