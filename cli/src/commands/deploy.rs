//! `lumo deploy`: bundle every task of the environment, then hand the deployment to its
//! lifecycle ([`crate::deployment`]): upload, run the tasks this deployment calls for
//! (PRODUCT.md §5), record the deployment and every run.

use std::sync::Arc;

use super::{CommandResult, Context, Outcome, blocking};
use crate::access::Standing;
use crate::args::DeployArgs;
use crate::bundle;
use crate::deployment::{self, Release};
use crate::error::CliError;
use crate::project::Project;
use crate::suggest;
use crate::task::Task;
use crate::version;

pub async fn run(args: DeployArgs, ctx: &Context) -> CommandResult {
    let printer = &ctx.printer;
    let project = Arc::new(ctx.project()?);
    let env = project.resolve_env(args.env.env.as_deref())?;
    let tasks: Vec<&Task> = project.tasks_in(&env).collect();
    check_only(&args.only, &tasks, &project, &env)?;
    let deploy_version = args
        .deploy_version
        .as_deref()
        .map(version::parse)
        .transpose()?;
    if let Some(path) = &args.junit {
        crate::report::check_junit_path(path)?;
    }
    let secrets = project.secret_values()?;
    // Before bundling: a provider that cannot be opened would waste the build.
    ctx.backend_ready(&project).await?;

    let spinner = printer.spinner(format!("Bundling {} task(s)", tasks.len()));
    // A dry run bundles too (`runOn: 'change'` needs the hashes), but leaves no trace.
    let scratch = if args.dry_run {
        Some(tempfile::tempdir().map_err(|e| {
            CliError::new(crate::error::ExitKind::Backend, e)
                .hint("a dry run bundles into a temporary directory; check TMPDIR")
        })?)
    } else {
        None
    };
    let bundles_dir = match &scratch {
        Some(dir) => dir.path().to_path_buf(),
        None => project.lumo_dir().join("bundles"),
    };
    // On a thread of its own: a deploy runs on one thread (its tasks' output, their timeouts,
    // the lock and Ctrl-C/SIGTERM all wait on it), and bundling checks for a stop between
    // blocks.
    let built = {
        let (project, env, bundles_dir) = (Arc::clone(&project), env.clone(), bundles_dir.clone());
        let (build, cancel) = (ctx.build(&project), bundle::Cancel::on(&ctx.stop));
        let dry_run = scratch.is_some();
        blocking(move || {
            let tasks: Vec<&Task> = project.tasks_in(&env).collect();
            let root = project.root();
            if dry_run {
                // What the project's store already holds for unchanged inputs is taken from
                // there, untouched; the rest is built into the scratch store.
                let project_store = project.lumo_dir().join("bundles");
                bundle::build_for_preview(
                    root,
                    &project_store,
                    &bundles_dir,
                    &tasks,
                    build,
                    &cancel,
                )
            } else {
                bundle::build_all_cancellable(root, &bundles_dir, &tasks, build, &cancel)
            }
        })
        .await?
    };
    spinner.finish();
    let built = built.map_err(|e| CliError::bundle(e, &project.config.path))?;
    let planned = built.iter().map(|b| crate::preflight::PlannedBundle {
        task: &b.task,
        zip: &b.path,
        entry: b.entry.as_ref(),
    });
    // A dry run writes nothing into the project, not even what pre-flight learnt.
    let lumo_dir = scratch.is_none().then(|| project.lumo_dir());
    crate::preflight::check(planned, project.config.provider, lumo_dir.as_deref())?;
    let release = Release {
        tasks: &tasks,
        built: &built,
        version: version::resolve(deploy_version, project.root(), &built),
        secrets,
        only: &args.only,
        concurrency: usize::from(args.concurrency),
    };

    if args.dry_run {
        let backend = ctx.connect_read_only(&project).await?;
        let standing = Standing::of(&project.config, &env, &ctx.actor(&project, &backend));
        let report = deployment::dry_run(&backend, &project, &env, &release, standing).await?;
        return Ok(Outcome::report(report));
    }
    let op = ctx.operation(&project, &env).await?;
    let deployed = deployment::deploy(&op, release, args.wait).await?;
    if let Some(subject) = crate::report::Subject::deployment(&deployed.report) {
        crate::report::publish(printer, args.junit.as_deref(), &subject);
    }
    let succeeded = deployed.succeeded();
    Ok(Outcome::report(deployed.report).ended(succeeded, deployed.stopped))
}

/// Every `--only` name must be a task of this environment.
fn check_only(
    only: &[String],
    tasks: &[&Task],
    project: &Project,
    env: &str,
) -> Result<(), CliError> {
    for name in only {
        if tasks.iter().any(|t| &t.name == name) {
            continue;
        }
        if project.tasks.iter().any(|t| &t.name == name) {
            return Err(CliError::invalid(format!(
                "`--only {name}`: task `{name}` does not exist in environment `{env}`"
            )));
        }
        return Err(CliError::invalid(format!(
            "`--only {name}`: unknown task{}",
            suggest::hint_suffix(name, tasks.iter().map(|t| t.name.as_str()))
        ))
        .hint("`lumo tasks` lists the project's tasks"));
    }
    Ok(())
}
