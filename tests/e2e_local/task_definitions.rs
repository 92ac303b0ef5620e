//! Task definitions: `copyAssets` indexes and overlaps, name collisions with command tasks,
//! symlinks out of the project, non-executable entry points, scripts without a shebang, and
//! arg defaults on deployment runs.

use std::fs;

use crate::support::local::{OBSERVER, assert_invalid, context, with_task};
use crate::support::{TestProject, parse_env_dump};

/// Regression: the bundler numbered `copyAssets` after validation had dropped the invalid
/// entries, so `{ from: 'nope' }` at [2] was reported as `copyAssets[1].from`.
#[test]
fn copy_assets_errors_name_the_index_the_user_wrote() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.write("migrations/0001.sql", "select 1;").config(
        "export default { projectName: 'p', tasks: { a: { copyAssets: [
           { from: '../x' }, { from: 'migrations', to: 'm' }, { from: 'nope' },
         ] } } };",
    );
    assert_invalid(
        &p,
        &[
            "`tasks.a.copyAssets[0].from`",
            "`tasks.a.copyAssets[2].from`: `nope` does not exist",
        ],
    );
    let out = p.lumo(&["deploy", "--env", "dev"]).code(2).clone();
    assert!(!out.stderr.contains("copyAssets[1]"), "{}", out.show());
}

/// Regression: two assets with the same `to` were merged into one directory of the bundle;
/// PRODUCT.md §8 makes "two assets writing the same `to`" an error, and a `to` inside another
/// asset's is the same mix.
#[test]
fn copy_assets_sharing_or_nesting_a_to_are_refused() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.write("migrations/0001.sql", "select 1;")
        .write("data/seed.json", "{}")
        .write("extra/x.txt", "x")
        .config(
            "export default { projectName: 'p', tasks: { a: { copyAssets: [
               { from: 'migrations', to: 'm' }, { from: 'data', to: './m/' },
               { from: 'extra', to: 'm/extra' },
             ] } } };",
        );
    assert_invalid(
        &p,
        &[
            "`tasks.a.copyAssets[1].to`: `./m/` is the same place as `m`, the `to` of `copyAssets[0]`",
            "`tasks.a.copyAssets[2].to`: `m/extra` overlaps `m`, the `to` of `copyAssets[0]`",
        ],
    );
}

/// Regression: names are unique after folding case and `_`/`-` (PRODUCT.md §2), but only
/// files were compared: a `command:` task `A` beside `functions/tasks/a.sh`, or command tasks
/// `b_c` and `B-c`, were listed and run as separate tasks.
#[test]
fn a_command_task_may_not_collide_with_another_task() {
    let p = TestProject::new();
    with_task(&p, "a");
    p.config(
        "export default { projectName: 'p', tasks: {
           A: { command: 'echo A' }, b_c: { command: 'echo 1' }, 'B-c': { command: 'echo 2' },
         } };",
    );
    assert_invalid(
        &p,
        &[
            "`tasks.A`: task name `A` collides with `a` from `functions/tasks/a.sh`",
            "`tasks.B-c`: task name `B-c` collides with `b_c` from the command task `tasks.b_c`",
        ],
    );
    p.lumo(&["tasks"])
        .code(2)
        .stderr_has(&["`tasks.A`", "`tasks.B-c`"]);
}

/// Regression: a task file linked to a file outside the project was bundled and run, though
/// `copyAssets` refuses the same link (PRODUCT.md §8). A link inside the project is fine.
#[test]
fn a_task_symlinked_outside_the_project_is_refused() {
    use std::os::unix::fs::PermissionsExt;

    let p = TestProject::new();
    let outside = p.tmp().join("elsewhere/x.sh");
    fs::create_dir_all(outside.parent().unwrap()).unwrap();
    let script = format!("#!/bin/sh\necho ran > {}/linkout\n", p.out().display());
    fs::write(&outside, script).unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    p.executable(
        "scripts/inside.sh",
        "#!/bin/sh\necho inside > @OUT@/inside\n",
    );
    fs::create_dir_all(p.root().join("functions/tasks")).unwrap();
    std::os::unix::fs::symlink(&outside, p.root().join("functions/tasks/linkout.sh")).unwrap();
    std::os::unix::fs::symlink(
        p.root().join("scripts/inside.sh"),
        p.root().join("functions/tasks/linkin.sh"),
    )
    .unwrap();
    p.config("export default { projectName: 'p', tasks: { linkout: {}, linkin: {} } };");
    assert_invalid(
        &p,
        &[
            "`functions/tasks/linkout.sh`: resolves to",
            "outside the project root",
        ],
    );
    let out = p.lumo(&["deploy", "--env", "dev"]).code(2).clone();
    assert!(!out.stderr.contains("no task file"), "{}", out.show());

    // Without the outside link, the inside one deploys.
    fs::remove_file(p.root().join("functions/tasks/linkout.sh")).unwrap();
    p.config("export default { projectName: 'p', tasks: { linkin: {} } };");
    p.deploy(&[], 0);
    assert_eq!(p.read_out("inside").trim(), "inside");
}

/// Regression: a task directory whose `run` lacks its `x` bit read "no task file", not the
/// `chmod +x` hint the README promises.
#[test]
fn a_task_directory_with_a_non_executable_run_says_chmod() {
    let p = TestProject::new();
    p.write("functions/tasks/warm/run.sh", "#!/bin/sh\necho warm\n")
        .config("export default { projectName: 'p', tasks: { warm: {} } };");
    assert_invalid(
        &p,
        &[
            "`tasks.warm`: `functions/tasks/warm/run.sh` is not executable",
            "chmod +x functions/tasks/warm/run.sh",
        ],
    );
}

/// Regression: a deployment handed tasks no args at all, so declared defaults never reached a
/// task running on deploy (`ctx.args` was `{}`, no `LUMO_ARG_MODE`). A required arg binds
/// manual runs only (PRODUCT.md §3: "for manual runs"): a deployment runs the task without it.
#[test]
fn deployment_runs_get_arg_defaults() {
    let p = TestProject::new();
    p.config(
        "export default { projectName: 'p', tasks: {
           once: { runOn: ['deploy'], args: { target: { required: true }, mode: { default: 'soft' } } },
         } };",
    )
    .task("once", OBSERVER);
    p.deploy(&[], 0);
    let ctx = context(&p, "deploy");
    assert_eq!(
        ctx.args.into_iter().collect::<Vec<_>>(),
        [("mode".to_string(), "soft".to_string())]
    );
    let env = parse_env_dump(&p.read_out("deploy.env"));
    assert_eq!(env["LUMO_ARG_MODE"], "soft");
    assert!(!env.contains_key("LUMO_ARG_TARGET"), "{env:?}");
}

/// Regression: a script without a `#!` line failed with "Exec format error (os error 8)" and
/// no word of what to do; since pre-flight it is refused before any task runs (PRODUCT.md §8),
/// so the task before it in the deploy never starts.
#[test]
fn a_script_without_a_shebang_fails_saying_to_add_one() {
    let p = TestProject::new();
    p.config("export default { projectName: 'no-shebang', tasks: { first: {}, plain: {} } };");
    p.task("first", "touch @OUT@/first-ran");
    p.executable("functions/tasks/plain.sh", "echo hi\n");
    let out = p.lumo(&["deploy", "--env", "dev"]).code(2).clone();
    out.stderr_has(&[
        "1 task(s) could not start, so nothing was run",
        "`tasks.plain`",
        "`plain.sh` has no `#!` line",
        "`#!/bin/sh`",
    ]);
    assert!(!p.has_out("first-ran"), "no task ran: {}", out.show());
    let error = p
        .lumo(&["deploy", "--env", "dev", "--json"])
        .code(2)
        .json_error();
    assert_eq!(error.kind, "invalid");
}

/// Regression (issue 10, defect 4): a task file named with a newline was discovered and run;
/// its name split CI log lines and no config key could name it. It is now refused, naming the
/// file (escaped, on one line), before anything runs; a `_`-prefixed helper stays ignored.
#[test]
fn a_task_file_whose_name_no_config_key_can_name_is_refused() {
    let p = TestProject::new();
    p.config("export default { projectName: 'p', tasks: {} };")
        .executable(
            "functions/tasks/ok.sh",
            "#!/bin/sh\necho \"ran\" > \"@OUT@/ok\"\n",
        )
        .executable(
            "functions/tasks/two\nlines.sh",
            "#!/bin/sh\necho \"ran\" > \"@OUT@/two\"\n",
        )
        .executable("functions/tasks/_odd helper.sh", "#!/bin/sh\n");
    assert_invalid(
        &p,
        &[
            "`functions/tasks/two\\nlines.sh`",
            "no config key can name",
            "rename the file",
        ],
    );
    assert!(!p.has_out("ok") && !p.has_out("two"), "nothing ran");
}
