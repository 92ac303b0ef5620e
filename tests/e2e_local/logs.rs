//! Reading a run's output back: `lumo logs RUN_ID` and `--tail N`.

use crate::support::{Logs, TestProject};

#[test]
fn logs_tail_shows_the_last_lines_in_text_and_json() {
    let p = TestProject::new();
    p.config("export default { projectName: 'logs', tasks: { talk: {} } };")
        .task("talk", "for i in 1 2 3 4 5; do echo \"line $i\"; done");
    p.deploy(&[], 0);
    let run_id = p.history()[0].id.clone();

    let whole = p.lumo(&["logs", &run_id]).code(0).clone();
    assert_eq!(whole.stdout, "line 1\nline 2\nline 3\nline 4\nline 5\n");

    let tail = p.lumo(&["logs", &run_id, "--tail", "2"]).code(0).clone();
    assert_eq!(tail.stdout, "line 4\nline 5\n", "{}", tail.show());

    let more_than_there_are = p.lumo(&["logs", &run_id, "--tail", "50"]).code(0).clone();
    assert_eq!(more_than_there_are.stdout, whole.stdout);

    let json: Logs = p
        .lumo(&["logs", &run_id, "--tail", "1", "--json"])
        .code(0)
        .json();
    assert_eq!(json.output.as_deref(), Some("line 5\n"));

    let not_a_number = p.lumo(&["logs", &run_id, "--tail", "some"]).code(2).clone();
    not_a_number.stderr_has(&["--tail"]);
}
