//! Loading `lumo.config.js`: evaluation in an embedded JS engine, then validation into
//! [`ProjectConfig`].

mod model;

pub use model::*;
