//! `lumo lock` / `lumo unlock`: take or release an environment's lock by hand.

use super::{CommandResult, Context};
use crate::args::{LockArgs, UnlockArgs};
use crate::error::CliError;

pub async fn lock(_args: LockArgs, _ctx: &Context) -> CommandResult {
    Err(CliError::invalid(
        "environment locks are not implemented yet",
    ))
}

pub async fn unlock(_args: UnlockArgs, _ctx: &Context) -> CommandResult {
    Err(CliError::invalid(
        "environment locks are not implemented yet",
    ))
}
