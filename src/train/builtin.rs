//! The text `pretext train` learns from when no `--data` is given: the project's own
//! documentation, embedded in the binary, so a newcomer sees a model learn with nothing
//! to download.

/// The embedded documents, joined by blank lines (paragraph breaks).
pub fn text() -> String {
    [
        include_str!("../../README.md"),
        include_str!("../../tests/fixtures/hf/NOTES.md"),
    ]
    .join("\n\n")
}
