//! `seed`: the example project's Rust task (see `lumo.config.example.js`). It runs on the first
//! deploy of an environment and reports the reference data it would load: the `.sql` files
//! that `copyAssets` put under `migrations/` in its bundle.

use std::fs;
use std::path::Path;

use lumo_task::{TaskContext, TaskResult, json};

async fn run(ctx: TaskContext) -> Result<TaskResult, String> {
    let dir = Path::new(&ctx.working_directory).join("migrations");
    let entries =
        fs::read_dir(&dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "sql") {
            files.push(path);
        }
    }
    files.sort();
    for file in &files {
        // The task's output: shown live by `lumo deploy`, kept by `lumo logs`.
        let shown = file.strip_prefix(&ctx.working_directory).unwrap_or(file);
        println!("reference data from {}", shown.display());
    }
    let environment = ctx.deployment.environment;
    Ok(TaskResult::ok(format!(
        "seeded {environment} from {} SQL file(s)",
        files.len()
    ))
    .with_data(json!({ "environment": environment, "files": files.len() })))
}

lumo_task::main!(run);
