//! The README's diesel example is `examples/diesel_readme.rs`, word for
//! word, and it runs.

#[path = "../examples/diesel_readme.rs"]
mod example;

/// The ```rust block under "Migrating from diesel's r2d2" in README.md.
fn readme_block() -> String {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Migrating from diesel's r2d2")
        .nth(1)
        .expect("README has a \"Migrating from diesel's r2d2\" section");
    let start = section
        .find("```rust")
        .expect("a rust block in the section");
    let body = &section[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

#[test]
fn the_readme_shows_the_example_file() {
    let example = include_str!("../examples/diesel_readme.rs");
    // The file's first lines are its `//!` docs, which the README leaves out.
    let code: String = example
        .lines()
        .skip_while(|l| l.starts_with("//!") || l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        readme_block(),
        code,
        "README.md and examples/diesel_readme.rs differ"
    );
}

#[test]
fn the_readme_example_runs() {
    example::main().expect("the README's diesel example");
}
