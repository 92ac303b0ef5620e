//! `lumo`: parse, dispatch, print the error chain, map to an exit code.
#![allow(dead_code)]

mod config;
mod suggest;

fn main() {}
