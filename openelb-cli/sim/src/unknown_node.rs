//! A node name an event gives that the simulation does not have (a typo, usually), told with the names it has.

#[derive(Debug, thiserror::Error)]
#[error("no node {name:?} (nodes: {known})")]
pub struct UnknownNode {
    pub name: String,
    /// The known names, comma-separated.
    pub known: String,
}

impl UnknownNode {
    pub fn new<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Self {
        UnknownNode { name: name.to_string(), known: known.into_iter().collect::<Vec<_>>().join(", ") }
    }
}
