//! lumo's runner: the task contract, and (feature `executor`) the code that runs one task bundle
//! under that contract. The CLI's `local` provider and the Lambda bootstrap both call
//! [`run_bundle`], so a task behaves the same wherever it runs.

pub mod contract;
